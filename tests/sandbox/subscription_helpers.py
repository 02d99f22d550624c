"""Shared pieces of the subscription tests: a real webhook receiver, a seeded tenant and a Graph client.

The receiver is a Starlette app served by uvicorn in a thread on 127.0.0.1 (http by default; https with a
certificate of its own CA for :func:`https_receiver`), playing the client's webhook endpoint.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import socket
import threading
import time
from dataclasses import dataclass

import pytest
import trustme
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from m365_sandbox.state import Message, new_guid, new_opaque

SERVICE_SCOPES = {"User.Read", "Mail.Read.Shared", "Mail.ReadWrite.Shared", "Mail.Send.Shared"}


class Receiver:
    """A webhook endpoint whose answers the test scripts; it records everything it is sent."""

    def __init__(self) -> None:
        self.base = ""
        self.reset()

    def reset(self) -> None:
        self.validation = "echo"        # echo | encoded | json | wrong | status500 | unquote
        self.validation_delay = 0.0
        self.statuses: list[int] = []   # answers to notification POSTs, in order; then 202
        self.delays: list[float] = []   # delays before answering notification POSTs, in order; then 0
        self.validations: list[dict] = []
        self.posts: list[dict] = []     # every notification POST: path, query, body, content_type, at

    def url(self, path: str = "/hook") -> str:
        return self.base + path

    async def handle(self, request: Request):
        raw_query = request.url.query
        if "validationToken" in request.query_params:
            token = request.query_params["validationToken"]
            body = await request.body()
            self.validations.append({"path": request.url.path, "raw_query": raw_query, "token": token,
                                     "content_type": request.headers.get("content-type"), "body": body})
            await asyncio.sleep(self.validation_delay)
            if self.validation == "echo":
                return PlainTextResponse(token)
            if self.validation == "encoded":
                return PlainTextResponse(raw_query.split("validationToken=", 1)[1].split("&")[0])
            if self.validation == "unquote":       # decodes %xx but keeps '+' (a classic mistake)
                from urllib.parse import unquote
                return PlainTextResponse(unquote(raw_query.split("validationToken=", 1)[1].split("&")[0]))
            if self.validation == "json":
                return JSONResponse({"validationToken": token})
            if self.validation == "status500":
                return PlainTextResponse(token, status_code=500)
            return PlainTextResponse(token + "x")
        body = await request.json()
        self.posts.append({"path": request.url.path, "query": raw_query, "body": body,
                           "content_type": request.headers.get("content-type"), "at": time.monotonic()})
        delay = self.delays.pop(0) if self.delays else 0.0
        status = self.statuses.pop(0) if self.statuses else 202
        await asyncio.sleep(delay)
        return Response(status_code=status)

    def notifications(self, path: str | None = None) -> list[dict]:
        return [n for post in self.posts if path is None or post["path"] == path for n in post["body"]["value"]]

    def wait_for(self, predicate, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.02)
        raise AssertionError(f"timed out; posts so far: {self.posts}")


def _serve(receiver: Receiver, ssl: dict | None = None):
    app = Starlette(routes=[Route("/{path:path}", receiver.handle, methods=["POST"])])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", **(ssl or {}))
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    scheme = "https" if ssl else "http"
    receiver.base = f"{scheme}://127.0.0.1:{sock.getsockname()[1]}"
    return server, thread


@pytest.fixture(scope="session")
def receiver_session():
    receiver = Receiver()
    server, thread = _serve(receiver)
    yield receiver
    server.should_exit = True
    thread.join(timeout=5)


@pytest.fixture
def receiver(receiver_session, sandbox):
    """An http webhook on loopback; the sandbox is told to accept http loopback URLs."""
    receiver_session.reset()
    sandbox.state.settings["allow_http_loopback_notification_urls"] = True
    sandbox.state.settings["delivery_batch_window_s"] = 0.3
    sandbox.state.settings["delivery_backoff_base_s"] = 0.1
    yield receiver_session
    receiver_session.reset()


@pytest.fixture(scope="session")
def https_receiver(tmp_path_factory):
    """An https webhook with a certificate from a CA of its own; ``.ca_path`` is that CA."""
    workdir = tmp_path_factory.mktemp("webhook-tls")
    ca = trustme.CA(organization_name="Webhook Test CA")
    cert = ca.issue_cert("127.0.0.1")
    ca_path, cert_path, key_path = workdir / "ca.pem", workdir / "cert.pem", workdir / "key.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    cert.private_key_pem.write_to_path(str(key_path))
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    receiver = Receiver()
    receiver.ca_path = str(ca_path)
    server, thread = _serve(receiver, {"ssl_certfile": str(cert_path), "ssl_keyfile": str(key_path)})
    yield receiver
    server.should_exit = True
    thread.join(timeout=5)


@dataclass
class World:
    state: object
    tenant: object
    app: object
    user: object
    shared: object
    token: str

    def other_token(self, client_id: str | None = None, user_id: str | None = None, scopes=None) -> str:
        access, _ = self.state.issue_tokens(client_id or self.app.client_id, user_id or self.user.id,
                                            scopes or SERVICE_SCOPES)
        return access.token


@pytest.fixture
def world(sandbox) -> World:
    """Tenant, app, service account and a shared mailbox it has Full Access to; a delegated token."""
    state = sandbox.state
    tenant = state.add_tenant("contoso.onmicrosoft.com")
    app = state.add_app(tenant.id, "Odoo connector", ["https://odoo.example/callback"])
    user = state.add_user(tenant.id, "svc-odoo@contoso.onmicrosoft.com", "Odoo Service")
    shared = state.add_user(tenant.id, "support@contoso.onmicrosoft.com", "Support", kind="shared")
    state.grant(shared.id, user.id, full_access=True, send_as=True)
    access, _ = state.issue_tokens(app.client_id, user.id, SERVICE_SCOPES)
    return World(state, tenant, app, user, shared, access.token)


class Graph:
    """A thin Graph client over the fixture's ``requests`` session."""

    def __init__(self, http, sandbox, token: str) -> None:
        self.http, self.base, self.token = http, sandbox.graph_base, token

    def call(self, method: str, path: str, token: str | None = None, **kwargs):
        headers = {"Authorization": f"Bearer {token or self.token}", **kwargs.pop("headers", {})}
        url = path if path.startswith("https://") else self.base + path
        return self.http.request(method, url, headers=headers, timeout=30, **kwargs)

    def create(self, receiver=None, token: str | None = None, headers: dict | None = None, **fields):
        body = {"changeType": "created,updated,deleted", "resource": "me/mailFolders('Inbox')/messages",
                "expirationDateTime": in_minutes(120), "clientState": "secret-state"}
        if receiver is not None:
            body["notificationUrl"] = receiver.url("/hook")
        body.update(fields)
        body = {key: value for key, value in body.items() if value is not None}
        return self.call("POST", "/subscriptions", token=token, json=body, headers=headers or {})


@pytest.fixture
def graph(http, sandbox, world) -> Graph:
    return Graph(http, sandbox, world.token)


def in_minutes(minutes: float) -> str:
    ts = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=minutes)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


def parse_graph_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def make_message(state, mailbox, folder: str = "inbox", subject: str = "Hello") -> Message:
    """A message in ``mailbox``'s ``folder``, stored in the state as the mail room would."""
    folder_obj = state.folder_by_ref(mailbox.id, folder)
    now = state.now()
    message = Message(
        id=new_opaque("AAMkAG", 40), immutable_id=new_opaque("AAkALg", 40), mailbox_id=mailbox.id,
        folder_id=folder_obj.id, internet_message_id=f"<{new_guid()}@example.com>",
        conversation_id=new_opaque("AAQk", 20), subject=subject, body_content_type="text", body="hi",
        from_addr={"name": "Customer", "address": "customer@example.com"},
        sender_addr={"name": "Customer", "address": "customer@example.com"},
        to=[{"emailAddress": {"name": mailbox.display_name, "address": mailbox.upn}}],
        received=now, sent=now, created=now, modified=now)
    with state.lock:
        state.messages[message.immutable_id] = message
    return message


def mail_changed(state, message, change_type: str) -> None:
    """What the mail room does on every change: run the ``on_mail_change`` callbacks."""
    for callback in list(state.extra.get("on_mail_change", [])):
        callback(state, message, change_type)


def control(http, sandbox, method: str, path: str, **kwargs):
    response = http.request(method, sandbox.control_base + path, timeout=30, **kwargs)
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


def drain(http, sandbox, timeout: float = 15) -> None:
    """Wait until the sandbox has no notification queued, gathering or in flight."""
    assert control(http, sandbox, "POST", "/subscriptions/drain", json={"timeout": timeout})["drained"]
