"""JSON batching: ``POST /v1.0/$batch`` (docs/microsoft-graph.md §5).

At most 20 requests with unique ids (else 400); a ``body`` needs a ``Content-Type`` header (else 400). Each item is
dispatched in-process through the graph application itself (same handlers, same throttling: an item can get 429
with its own ``Retry-After`` inside the 200 envelope). Without ``dependsOn`` up to 4 items run at a time and the
responses come back shuffled; with ``dependsOn`` items run one at a time in dependency order, and dependents of a
failed item get 424. Setting ``batch_envelope_424`` (False) switches to the other reading: the envelope itself is
424 when an item failed a dependency.
"""
from __future__ import annotations

import asyncio
import base64
import json
import random
import uuid

from starlette.requests import Request
from starlette.routing import Route

from .auth import GraphDenied, require_token
from .errors import graph_error, graph_error_body
from .state import SandboxState
from .throttle import odata

MAX_ITEMS = 20
PARALLEL = 4
# item headers as Graph spells them (the ASGI layer lower-cases them)
ITEM_HEADERS = {"content-type": "Content-Type", "retry-after": "Retry-After", "location": "Location",
                "preference-applied": "Preference-Applied", "www-authenticate": "WWW-Authenticate"}


async def call_app(app, outer: Request, method: str, url: str, headers: dict, body: bytes) -> tuple:
    """Run one request through the ASGI ``app``; (status, headers, body bytes)."""
    path, _, query = url.partition("?")
    if not path.startswith("/"):
        path = "/" + path
    if not path.startswith("/v1.0/"):
        path = "/v1.0" + path
    raw_headers = [(b"host", outer.headers.get("host", "localhost").encode())]
    if "authorization" in outer.headers and not any(k.lower() == "authorization" for k in headers):
        raw_headers.append((b"authorization", outer.headers["authorization"].encode()))
    raw_headers += [(k.lower().encode(), str(v).encode()) for k, v in headers.items()]
    raw_headers.append((b"content-length", str(len(body)).encode()))
    from urllib.parse import unquote
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method.upper(),
             "scheme": outer.url.scheme, "server": outer.scope.get("server"), "client": outer.scope.get("client"),
             "root_path": "", "path": unquote(path), "raw_path": path.encode(), "query_string": query.encode(),
             "headers": raw_headers}
    sent = {"status": 500, "headers": [], "body": b""}
    delivered = False

    async def receive():
        nonlocal delivered
        if delivered:
            await asyncio.sleep(3600)
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            sent["status"], sent["headers"] = message["status"], message.get("headers", [])
        elif message["type"] == "http.response.body":
            sent["body"] += message.get("body", b"")

    await app(scope, receive, send)
    return sent["status"], {k.decode(): v.decode() for k, v in sent["headers"]}, sent["body"]


def _item_response(item_id: str, status: int, headers: dict, body: bytes) -> dict:
    keep = {ITEM_HEADERS[k.lower()]: v for k, v in headers.items() if k.lower() in ITEM_HEADERS}
    out = {"id": item_id, "status": status, "headers": keep}
    if body:
        ctype = headers.get("content-type", "")
        if "json" in ctype:
            out["body"] = json.loads(body)
        elif ctype.startswith("text/"):
            out["body"] = body.decode("utf-8", "replace")
        else:
            out["body"] = base64.b64encode(body).decode()
    return out


def _order(items: list[dict]) -> list[dict] | None:
    """Items in an order that honours ``dependsOn``; None on an unknown id or a cycle."""
    by_id = {it["id"]: it for it in items}
    done, ordered = set(), []
    while len(ordered) < len(items):
        ready = [it for it in items if it["id"] not in done
                 and all(dep in done for dep in it.get("dependsOn") or [])]
        if not ready:
            return None
        for it in ready:
            if any(dep not in by_id for dep in it.get("dependsOn") or []):
                return None
            done.add(it["id"])
            ordered.append(it)
    return ordered


def routes(state: SandboxState) -> list:
    async def run_batch(request: Request):
        client_request_id = request.headers.get("client-request-id")

        def invalid(message: str):
            return graph_error(400, "BadRequest", message, client_request_id=client_request_id)

        try:
            require_token(state, request)
        except GraphDenied as exc:
            return exc.response
        try:
            payload = json.loads(await request.body())
            items = payload["requests"]
            if not isinstance(items, list) or not all(isinstance(it, dict) for it in items):
                raise ValueError
            for it in items:
                it["id"], it["method"], it["url"] = str(it["id"]), str(it["method"]), str(it["url"])
        except (ValueError, KeyError, TypeError):
            return invalid("Invalid batch payload format.")
        if not items:
            return invalid("Invalid batch payload format.")
        if len(items) > MAX_ITEMS:
            return invalid(f"The number of batch requests exceeds the limit of {MAX_ITEMS}.")
        ids = [it["id"] for it in items]
        if len(set(ids)) != len(ids):
            return invalid("Batch request contains duplicate request ids.")
        for it in items:
            if "body" in it and not any(k.lower() == "content-type" for k in (it.get("headers") or {})):
                return invalid(f"Write request id : {it['id']} does not contain Content-Type header or body.")
        for it in items:
            if it["url"].lower().startswith(("http:", "https:")):
                return invalid(f"The url of request id {it['id']} must be relative, e.g. /me/messages.")
        ordered = _order(items)
        if ordered is None:
            return invalid("A dependsOn refers to an unknown request id or forms a cycle.")
        app = request.scope["app"]

        async def run(it: dict) -> dict:
            body = it.get("body")
            headers = {str(k): str(v) for k, v in (it.get("headers") or {}).items()}
            if body is None:
                raw = b""
            elif isinstance(body, (dict, list)):
                raw = json.dumps(body).encode()
            elif headers.get("Content-Type", headers.get("content-type", "")).startswith("text/plain"):
                raw = str(body).encode()
            else:
                raw = json.dumps(body).encode() if not isinstance(body, str) else body.encode()
            return _item_response(it["id"], *await call_app(app, request, it["method"], it["url"], headers, raw))

        results: dict = {}
        failed_dependency = False
        if any(it.get("dependsOn") for it in items):
            for it in ordered:
                if any(results[dep]["status"] >= 400 for dep in it.get("dependsOn") or []):
                    failed_dependency = True
                    results[it["id"]] = {"id": it["id"], "status": 424, "headers": {
                        "Content-Type": "application/json"}, "body": graph_error_body(
                        "FailedDependency", "The request could not be processed because a dependency failed.")}
                else:
                    results[it["id"]] = await run(it)
            responses = [results[i] for i in ids]
        else:
            gate = asyncio.Semaphore(PARALLEL)

            async def limited(it):
                async with gate:
                    return await run(it)
            responses = list(await asyncio.gather(*(limited(it) for it in items)))
            random.shuffle(responses)
        status = 424 if failed_dependency and state.settings.get("batch_envelope_424", False) else 200
        request_id = str(uuid.uuid4())
        return odata({"responses": responses}, status=status, headers={
            "request-id": request_id, "client-request-id": client_request_id or request_id})

    return [Route("/v1.0/$batch", run_batch, methods=["POST"])]
