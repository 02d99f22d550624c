"""New drafts and large attachments (contract §4; learn.microsoft.com "Create message", "Attach large files to
Outlook messages or events", "attachment: createUploadSession", "uploadSession resource type").

    POST …/messages                     a new draft in Drafts: a JSON message, or a MIME message as base64 text
                                        (``Content-Type: text/plain``) whose Message-ID, In-Reply-To and References
                                        Exchange keeps -> 201 + the draft
    POST …/messages/{id}/attachments/createUploadSession
                                        {"AttachmentItem": {"attachmentType": "file", "name", "size",
                                        "contentType"?, "isInline"?, "contentId"?}} -> 201 uploadSession
                                        {uploadUrl, expirationDateTime, nextExpectedRanges: ["0"]}
    PUT  {uploadUrl}                    pre-authenticated: the ``authtoken`` in the URL is the credential (the docs
                                        say to send no ``Authorization`` header; one is ignored, as Kiota sends
                                        the Graph token to the sandbox's single host); ``Content-Range:
                                        bytes {a}-{b}/{size}``, up to
                                        4 MB, starting where ``nextExpectedRanges`` says -> 200 {expirationDateTime,
                                        nextExpectedRanges: ["{next}"]}; the last range -> 201, empty body,
                                        ``Location: …/Attachments('{id}')``
    DELETE {uploadUrl}                  cancels the session -> 204

The upload URL has Outlook's shape (``/api/v2.0/Users('…')/Messages('…')/AttachmentSessions('…')?authtoken=…``)
on the sandbox's Graph host. Sessions expire 15 minutes after their last range (each range extends them).
"""
from __future__ import annotations

import datetime as dt
import re
import secrets

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .errors import graph_error
from .mail_paging import Prefer, action_parameters, bad_request, json_body
from .mail_send import _from_mime, build_message
from .mail_store import (RenderContext, add_message, address, find_message, mailbox_address, make_attachment,
                         render_message, update_message)
from .state import SandboxState, iso
from .throttle import odata

SESSIONS = "upload_sessions"
MAX_RANGE = 4 * 1024 * 1024
MAX_SIZE = 150 * 1024 * 1024
SESSION_LIFETIME = dt.timedelta(minutes=15)
_RANGE_RE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")


def routes(state: SandboxState, endpoint) -> list:
    from .graph_mail import graph_base, mailbox_of, message_of   # graph_mail assembles this room's routes

    def mailbox_and_message(request: Request, token):
        return message_of(state, request, token, "write")

    @endpoint
    async def create_draft(request: Request, token):
        mailbox = mailbox_of(state, request, token, "write")
        raw = await request.body()
        if request.headers.get("content-type", "").split(";")[0].strip().lower() == "text/plain":
            spec = _from_mime(raw)
        else:
            spec = {key: value for key, value in json_body(raw).items() if not key.startswith("_")}
        owner = address(spec["from"]) if spec.get("from") else mailbox_address(mailbox)
        msg = build_message(state, mailbox, "drafts", spec, owner, owner, draft=True)
        add_message(state, msg)
        prefer = Prefer(request)
        ctx = RenderContext(None, prefer.immutable, prefer.body_type)
        return odata({"@odata.context": f"{graph_base(request)}/$metadata#users('{mailbox.id}')/messages/$entity",
                      **render_message(state, msg, ctx)}, status=201, headers=prefer.applied())

    @endpoint
    async def create_upload_session(request: Request, token):
        mailbox, msg = mailbox_and_message(request, token)
        params = action_parameters(await request.body(), "createUploadSession", ("AttachmentItem",))
        item = params.get("AttachmentItem")
        if not isinstance(item, dict) or not item.get("name"):
            raise bad_request("ErrorInvalidParameter", "The AttachmentItem parameter with a name is required.")
        if (item.get("attachmentType") or "file").lower() != "file":
            raise bad_request("ErrorInvalidParameter", "Only file attachments can be uploaded in a session.")
        try:
            size = int(item.get("size"))
        except (TypeError, ValueError):
            size = 0
        if not 0 < size <= MAX_SIZE:
            raise bad_request("ErrorAttachmentSizeLimitExceeded" if size > MAX_SIZE else "ErrorInvalidParameter",
                              "The attachment size must be between 1 byte and 150 MB.")
        session_id = secrets.token_urlsafe(18)
        expires = state.now() + SESSION_LIFETIME
        with state.lock:
            state.extra.setdefault(SESSIONS, {})[session_id] = {
                "mailbox_id": mailbox.id, "message_id": msg.immutable_id, "name": item["name"], "size": size,
                "content_type": item.get("contentType"), "is_inline": bool(item.get("isInline")),
                "content_id": item.get("contentId"), "data": bytearray(), "expires": expires,
                "authtoken": secrets.token_urlsafe(24)}
        session = state.extra[SESSIONS][session_id]
        upload_url = (f"{request.url.scheme}://{request.url.netloc}/api/v2.0/Users('{mailbox.id}')/Messages("
                      f"'{msg.immutable_id}')/AttachmentSessions('{session_id}')?authtoken={session['authtoken']}")
        return odata({"@odata.context": f"{request.url.scheme}://{request.url.netloc}/v1.0/$metadata#microsoft."
                      "graph.uploadSession", "uploadUrl": upload_url, "expirationDateTime": iso(expires),
                      "nextExpectedRanges": ["0"]}, status=201)

    async def upload_range(request: Request):
        session_id = request.path_params["session"]
        session = state.extra.get(SESSIONS, {}).get(session_id)
        if session is None or not secrets.compare_digest(request.query_params.get("authtoken", ""),
                                                         session["authtoken"]) \
                or session["expires"] < state.now():
            return graph_error(404, "ErrorItemNotFound", "The upload session was not found or has expired.")
        if request.method == "DELETE":
            state.extra[SESSIONS].pop(session_id, None)
            return Response(status_code=204)
        match = _RANGE_RE.match(request.headers.get("content-range", "").strip())
        body = await request.body()
        if not match:
            return graph_error(400, "ErrorInvalidRequest", "The Content-Range header is missing or malformed.")
        start, end, total = (int(group) for group in match.groups())
        if total != session["size"] or end < start or end >= total or len(body) != end - start + 1:
            return graph_error(400, "ErrorInvalidRequest", "The Content-Range does not match the session's size or "
                               "the request body.")
        if len(body) > MAX_RANGE:
            return graph_error(413, "ErrorRequestEntityTooLarge", "A range may hold at most 4 MB.")
        if start != len(session["data"]):
            return graph_error(416, "ErrorInvalidRange", f"The next expected range starts at {len(session['data'])}.")
        with state.lock:
            session["data"] += body
            session["expires"] = state.now() + SESSION_LIFETIME
        if len(session["data"]) < total:
            return JSONResponse({"expirationDateTime": iso(session["expires"]),
                                 "nextExpectedRanges": [str(len(session["data"]))]})
        state.extra[SESSIONS].pop(session_id, None)
        msg = find_message(state, session["mailbox_id"], session["message_id"])
        if msg is None:
            return graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        att = make_attachment({"name": session["name"], "content_type": session["content_type"],
                               "content": bytes(session["data"]), "is_inline": session["is_inline"],
                               "content_id": session["content_id"]}, state.now())
        msg.attachments.append(att)
        update_message(state, msg, ("hasAttachments",))
        location = (f"{request.url.scheme}://{request.url.netloc}/api/v2.0/Users('{session['mailbox_id']}')"
                    f"/Messages('{msg.immutable_id}')/Attachments('{att.id}')")
        return Response(status_code=201, headers={"Location": location})

    graph = []
    for prefix in ("", "/mailFolders/{folder}"):
        for root in ("/v1.0/me", "/v1.0/users/{mailbox}"):
            graph.append(Route(root + prefix + "/messages", create_draft, methods=["POST"]))
            graph.append(Route(root + prefix + "/messages/{message}/attachments/createUploadSession",
                               create_upload_session, methods=["POST"]))
    graph.append(Route("/api/v2.0/Users('{mailbox}')/Messages('{message}')/AttachmentSessions('{session}')",
                       upload_range, methods=["PUT", "DELETE"]))
    return graph
