"""Microsoft's two error shapes: Graph's envelope and the identity platform's OAuth error JSON."""
from __future__ import annotations

import datetime as dt
import uuid

from starlette.responses import JSONResponse

# Graph's ``WWW-Authenticate`` on 401 InvalidAuthenticationToken (docs/microsoft-graph.md §3.5).
GRAPH_WWW_AUTHENTICATE = ('Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/'
                          'authorize", client_id="00000003-0000-0000-c000-000000000000"')


def graph_error(status: int, code: str, message: str, headers: dict | None = None,
                client_request_id: str | None = None) -> JSONResponse:
    """Graph's error envelope: ``{"error": {"code", "message", "innerError": {...}}}`` (docs/microsoft-graph.md §6)."""
    request_id = str(uuid.uuid4())
    inner = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
             "request-id": request_id, "client-request-id": client_request_id or request_id}
    all_headers = {"request-id": request_id, "client-request-id": client_request_id or request_id}
    all_headers.update(headers or {})
    return JSONResponse({"error": {"code": code, "message": message, "innerError": inner}},
                        status_code=status, headers=all_headers)


def graph_error_body(code: str, message: str) -> dict:
    """The envelope as a dict, for ``$batch`` item bodies."""
    request_id = str(uuid.uuid4())
    return {"error": {"code": code, "message": message, "innerError": {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
        "request-id": request_id, "client-request-id": request_id}}}


def aad_error(error: str, aadsts: int, text: str, status: int = 400, suberror: str | None = None,
              claims: str | None = None) -> JSONResponse:
    """The identity platform's token-endpoint error JSON (docs/microsoft-graph.md §1.6)."""
    now = dt.datetime.now(dt.timezone.utc)
    trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
    timestamp = now.strftime("%Y-%m-%d %H:%M:%SZ")
    body = {
        "error": error,
        "error_description": (f"AADSTS{aadsts}: {text}\r\nTrace ID: {trace_id}\r\n"
                              f"Correlation ID: {correlation_id}\r\nTimestamp: {timestamp}"),
        "error_codes": [aadsts],
        "timestamp": timestamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": f"https://login.microsoftonline.com/error?code={aadsts}",
    }
    if suberror:
        body["suberror"] = suberror
    if claims:
        body["claims"] = claims
    return JSONResponse(body, status_code=status)
