"""The Graph edge every mail endpoint runs behind: bearer token, request ids, Outlook throttling per
(client app id, mailbox) (docs/microsoft-graph.md §5), injected faults, and request counters for the control plane.

Settings (``state.settings``): ``throttle_window_requests`` (10000), ``throttle_window_s`` (600),
``throttle_concurrency`` (4), ``throttle_concurrency_retry_after`` (2 s), ``throttle_upload_bytes``
(150 MB of PATCH/POST/PUT bodies) per ``throttle_upload_window_s`` (300).
``mailboxes_not_rest_enabled`` ([]): ids/UPNs answered 404 ``MailboxNotEnabledForRESTAPI``.
Faults (``state.faults["graph"]``): ``"429": N`` / ``"503": N`` / ``"504": N`` answer the next N requests with
that status; ``"retry_after": S`` is the Retry-After they carry (default 10); ``"429_code": "UnknownError"``
makes the injected 429s Outlook's other shape (``UnknownError``, empty message); ``"latency_ms": X`` delays every
request (inside the in-flight window, so concurrency limits bite); ``"401": N`` refuses the next N requests'
tokens with ``InvalidAuthenticationToken`` although they are valid, as Graph does when access is revoked
under continuous access evaluation.
"""
from __future__ import annotations

import asyncio
import collections
import datetime as dt
import functools
import inspect
import json
import math
import uuid

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .auth import GraphDenied, require_token
from .errors import GRAPH_WWW_AUTHENTICATE, graph_error
from .state import AccessToken, SandboxState


def too_many_requests(retry_after: int, client_request_id: str | None = None) -> JSONResponse:
    """The exact Outlook 429 of docs/microsoft-graph.md §5."""
    request_id = str(uuid.uuid4())
    body = {"error": {"code": "TooManyRequests", "innerError": {
        "code": "429", "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
        "message": "Please retry after", "request-id": request_id, "status": "429"},
        "message": "Please retry again later."}}
    return JSONResponse(body, status_code=429, headers={
        "Retry-After": str(int(retry_after)), "request-id": request_id,
        "client-request-id": client_request_id or request_id})


def _mailbox_key(state: SandboxState, token: AccessToken, ref: str) -> str:
    if ref.lower() == "me":
        return token.user_id
    user = state.user_by_ref(ref, tenant_id=token.tenant_id)
    return user.id if user else ref.lower()


class _Slot:
    """One request's place in the (app, mailbox) window and in-flight count."""

    def __init__(self, state: SandboxState, key: tuple):
        self.state, self.key = state, key
        throttle = state.extra.setdefault("mail_throttle", {"window": {}, "uploads": {},
                                                            "inflight": collections.Counter()})
        self.window = throttle["window"].setdefault(key, collections.deque())
        self.uploads = throttle["uploads"].setdefault(key, collections.deque())
        self.inflight = throttle["inflight"]

    def enter(self, upload_bytes: int = 0) -> int | None:
        """Take the slot, or return the Retry-After seconds of a 429."""
        settings = self.state.settings
        limit = settings.get("throttle_window_requests", 10000)
        span = settings.get("throttle_window_s", 600)
        upload_limit = settings.get("throttle_upload_bytes", 150 * 1024 * 1024)
        upload_span = settings.get("throttle_upload_window_s", 300)
        now = self.state.now().timestamp()
        with self.state.lock:
            while self.window and self.window[0] <= now - span:
                self.window.popleft()
            while self.uploads and self.uploads[0][0] <= now - upload_span:
                self.uploads.popleft()
            if len(self.window) >= limit:
                return max(1, math.ceil(self.window[0] + span - now))
            if upload_bytes and sum(n for _t, n in self.uploads) + upload_bytes > upload_limit:
                return max(1, math.ceil(self.uploads[0][0] + upload_span - now)) if self.uploads else upload_span
            if self.inflight[self.key] >= settings.get("throttle_concurrency", 4):
                return settings.get("throttle_concurrency_retry_after", 2)
            self.window.append(now)
            if upload_bytes:
                self.uploads.append((now, upload_bytes))
            self.inflight[self.key] += 1
        return None

    def leave(self) -> None:
        with self.state.lock:
            self.inflight[self.key] -= 1


def _count(state: SandboxState, token: AccessToken, mailbox_id: str) -> None:
    counts = state.extra.setdefault("mail_counts", {"mailboxes": collections.Counter(),
                                                    "apps": collections.Counter()})
    user = state.users.get(mailbox_id)
    counts["mailboxes"][user.upn if user else mailbox_id] += 1
    counts["apps"][token.client_id] += 1


def take_fault(state: SandboxState) -> tuple[int, int] | None:
    faults = state.faults.get("graph") or {}
    with state.lock:
        for status in ("401", "429", "503", "504"):
            left = faults.get(status) or 0
            if left > 0:
                faults[status] = left - 1
                return int(status), int(faults.get("retry_after", 10))
    return None


def fault_response(status: int, retry_after: int, client_request_id: str | None, variant: str | None = None
                   ) -> Response:
    if status == 401:
        return graph_error(401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid.",
                           headers={"WWW-Authenticate": GRAPH_WWW_AUTHENTICATE}, client_request_id=client_request_id)
    if status == 429 and variant == "UnknownError":      # [O] Outlook's other 429: UnknownError, empty message
        return graph_error(429, "UnknownError", "", headers={"Retry-After": str(retry_after)},
                           client_request_id=client_request_id)
    if status == 429:
        return too_many_requests(retry_after, client_request_id)
    if status == 503:
        return graph_error(503, "serviceNotAvailable", "The service is temporarily unavailable. Retry later.",
                           headers={"Retry-After": str(retry_after)}, client_request_id=client_request_id)
    return graph_error(504, "UnknownError", "The gateway did not receive a timely response.",
                       client_request_id=client_request_id)


def _check_rest_enabled(state: SandboxState, mailbox_id: str) -> None:
    """Mailboxes listed in ``state.settings["mailboxes_not_rest_enabled"]`` (ids or UPNs) are inactive,
    soft-deleted or on-premises: 404 ``MailboxNotEnabledForRESTAPI`` (docs/microsoft-graph.md §3.5)."""
    disabled = state.settings.get("mailboxes_not_rest_enabled") or ()
    if not disabled:
        return
    user = state.users.get(mailbox_id)
    if mailbox_id in disabled or (user and user.upn in {str(d).lower() for d in disabled}):
        raise GraphDenied(graph_error(404, "MailboxNotEnabledForRESTAPI",
                                      "The mailbox is either inactive, soft-deleted, or is hosted on-premise."))


def _echo_in_envelope(response: Response, client_request_id: str) -> None:
    """Put the client's ``client-request-id`` into the error envelope's ``innerError`` too (contract §6)."""
    try:
        body = json.loads(response.body)
        body["error"]["innerError"]["client-request-id"] = client_request_id
    except (ValueError, KeyError, TypeError, AttributeError):
        return
    response.body = json.dumps(body).encode()
    response.headers["content-length"] = str(len(response.body))


def graph_endpoint(state: SandboxState):
    """Decorator for ``handler(request, token)`` (sync or async) that returns a Starlette response."""
    def wrap(handler):
        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            client_request_id = request.headers.get("client-request-id")
            try:
                token = require_token(state, request)
                mailbox_id = _mailbox_key(state, token, request.path_params.get("mailbox", "me"))
                _check_rest_enabled(state, mailbox_id)
                _count(state, token, mailbox_id)
                slot = _Slot(state, (token.client_id, mailbox_id))
                upload = 0
                if request.method in ("POST", "PATCH", "PUT"):
                    upload = int(request.headers.get("content-length") or 0)
                retry_after = slot.enter(upload)
                if retry_after is not None:
                    response = too_many_requests(retry_after, client_request_id)
                else:
                    try:
                        latency = (state.faults.get("graph") or {}).get("latency_ms")
                        if latency:
                            await asyncio.sleep(latency / 1000)
                        fault = take_fault(state)
                        if fault:
                            response = fault_response(*fault, client_request_id,
                                                      (state.faults.get("graph") or {}).get("429_code"))
                        else:
                            response = handler(request, token)
                            if inspect.isawaitable(response):
                                response = await response
                    finally:
                        slot.leave()
            except GraphDenied as exc:
                response = exc.response
            request_id = response.headers.get("request-id") or str(uuid.uuid4())
            response.headers["request-id"] = request_id
            response.headers["client-request-id"] = client_request_id or response.headers.get(
                "client-request-id", request_id)
            if client_request_id and response.status_code >= 400:
                _echo_in_envelope(response, client_request_id)
            return response
        return endpoint
    return wrap


ODATA_JSON = ("application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;"
              "charset=utf-8")


def odata(body: dict, status: int = 200, headers: dict | None = None) -> Response:
    """A Graph JSON response (UTF-8, not ASCII-escaped, compact)."""
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Response(data, status_code=status, headers=headers, media_type=ODATA_JSON)
