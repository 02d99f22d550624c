"""Sending as a shared mailbox (docs/microsoft-graph.md §4): ``sendMail`` (JSON or base64 MIME), ``reply``/``replyAll``/
``forward`` (202), ``createReply``/``createReplyAll``/``createForward`` (201 draft) and ``send`` of a draft.

Rights: Send As → ``from == sender`` = the shared mailbox; Send on Behalf only → ``sender`` = the signed-in
user, ``from`` = the shared mailbox; neither → 403 ``ErrorSendAsDenied``. ``/users/{shared}/sendMail`` also needs
Full Access. The sent copy goes to the Sent Items of the mailbox in the path (``/me`` → the signed-in user), unless
``saveToSentItems`` is false. Every sent message is recorded in ``state.extra["mail_sent"]``.
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import email
import email.policy
import email.utils
import html

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import mail_bounce
from .auth import GraphDenied, resolve_mailbox
from .errors import graph_error
from .mail_paging import Prefer, action_parameters, bad_request
from .mail_store import (RenderContext, add_message, address, conversation_index, default_headers,
                         deliver_inbound, find_message, mailbox_address, make_attachment, move_message,
                         new_attachment_id, new_change_key, new_immutable_id, new_internet_message_id,
                         new_message_id, notify, render_message, well_known)
from .state import Message, SandboxState, User, iso
from .throttle import odata

SEND_AS_DENIED = ("ErrorSendAsDenied", "The user account which was used to submit this request does not have the "
                  "right to send mail on behalf of the specified sending account. Cannot submit message.")


def _routes(paths: list[str], handler) -> list[Route]:
    return [Route(prefix + path, handler, methods=["POST"]) for path in paths
            for prefix in ("/v1.0/me", "/v1.0/users/{mailbox}")]


def sending_identity(state: SandboxState, token, from_value, default: User) -> tuple[dict, dict]:
    """(from, sender) for a message the signed-in user sends as ``from_value`` (or ``default``)."""
    signed_in = state.users[token.user_id]
    if from_value:
        wanted = address(from_value)["address"].lower()
        owner = state.user_by_ref(wanted, tenant_id=token.tenant_id)
        if owner is None:
            raise GraphDenied(graph_error(403, *SEND_AS_DENIED))
    else:
        owner = default
    resolve_mailbox(state, token, "me" if owner.id == signed_in.id else owner.id, "send")
    if owner.id == signed_in.id:
        return mailbox_address(signed_in), mailbox_address(signed_in)
    perm = state.permission(owner.id, signed_in.id)
    if perm and perm.send_as:
        return mailbox_address(owner), mailbox_address(owner)
    return mailbox_address(owner), mailbox_address(signed_in)


def _from_mime(raw: bytes) -> dict:
    """A MIME message sent as base64 text (``Content-Type: text/plain``) -> a Graph-shaped message dict."""
    try:
        mime = base64.b64decode(b"".join(raw.split()), validate=True)
        if not mime:
            raise ValueError("empty")
    except (binascii.Error, ValueError):
        raise bad_request("ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content.") from None
    parsed = email.message_from_bytes(mime, policy=email.policy.default)

    def addrs(header: str) -> list[dict]:
        return [{"emailAddress": {"name": n or a, "address": a}}
                for n, a in email.utils.getaddresses(parsed.get_all(header, []))]

    part = parsed.get_body(("html", "plain"))
    content = part.get_content() if part is not None else ""
    attachments = [{"name": a.get_filename() or "attachment", "content_type": a.get_content_type(),
                    "content": a.get_payload(decode=True) or b""} for a in parsed.iter_attachments()]
    message = {"subject": str(parsed.get("Subject", "")),
               "body": {"contentType": "html" if part is not None and part.get_content_subtype() == "html"
                        else "text", "content": content},
               "toRecipients": addrs("To"), "ccRecipients": addrs("Cc"), "bccRecipients": addrs("Bcc"),
               "_attachments": attachments}
    if parsed.get("From"):
        message["from"] = addrs("From")[0]
    # Exchange keeps a MIME message's own Message-ID and threading headers; X- headers stay readable through
    # internetMessageHeaders.
    if parsed.get("Message-ID"):
        message["_internet_message_id"] = str(parsed["Message-ID"]).strip()
    if parsed.get("In-Reply-To"):
        message["_in_reply_to"] = str(parsed["In-Reply-To"]).strip()
    if parsed.get("References"):
        message["_references"] = str(parsed["References"]).split()
    message["internetMessageHeaders"] = [{"name": name, "value": str(value)} for name, value in parsed.items()
                                         if name.lower().startswith("x-")]
    return message


def record_and_deliver(state: SandboxState, token, msg: Message, route: str, copy_saved: bool) -> None:
    """Remember a sent message for the control plane, and deliver it to sandbox mailboxes among the recipients."""
    state.extra.setdefault("mail_sent", []).append({
        "from": msg.from_addr, "sender": msg.sender_addr, "to": msg.to, "cc": msg.cc, "bcc": msg.bcc,
        "replyTo": msg.reply_to, "subject": msg.subject, "body": {"contentType": msg.body_content_type,
                                                                  "content": msg.body},
        "internetMessageId": msg.internet_message_id, "inReplyTo": msg.in_reply_to,
        "conversationId": msg.conversation_id, "route": route, "clientId": token.client_id,
        "signedInUser": state.users[token.user_id].upn, "sentDateTime": iso(msg.sent),
        "attachments": [a.name for a in msg.attachments],
        "sentCopy": {"mailbox": state.users[msg.mailbox_id].upn, "id": msg.id,
                     "immutableId": msg.immutable_id} if copy_saved else None})
    # Refused recipients: Exchange's NDR comes back into the sending mailbox (mail_bounce.py).
    mail_bounce.bounce_sent(state, msg)
    if not state.settings.get("deliver_internal", True):
        return
    for rcpt in msg.to + msg.cc + msg.bcc:
        target = state.user_by_ref(rcpt.get("address", ""))
        if target is not None:
            deliver_inbound(state, target.id, from_addr=msg.from_addr, subject=msg.subject, body_html=msg.body,
                            to=msg.to, cc=msg.cc, in_reply_to=msg.in_reply_to,
                            internet_message_id=msg.internet_message_id)


def build_message(state: SandboxState, mailbox: User, folder_name: str, spec: dict, from_addr: dict,
                  sender_addr: dict, *, parent: Message | None = None, draft: bool = False) -> Message:
    now = state.now()
    body = spec.get("body") or {}
    if parent is None and spec.get("_in_reply_to"):
        # A MIME reply: Exchange threads it with the message it answers, when the mailbox holds that message.
        parent = next((m for m in state.messages.values() if m.mailbox_id == mailbox.id
                       and m.internet_message_id == spec["_in_reply_to"]), None)
    conv = parent.conversation_id if parent else "AAQkAGI2" + new_change_key()[10:] + "="
    refs = (parent.references + [parent.internet_message_id]) if parent else list(spec.get("_references") or [])
    msg = Message(
        id=new_message_id(), immutable_id=new_immutable_id(), mailbox_id=mailbox.id,
        folder_id=well_known(state, mailbox.id, folder_name).id,
        internet_message_id=spec.get("_internet_message_id")
        or new_internet_message_id(from_addr["address"].rpartition("@")[2] or "sandbox.local"),
        conversation_id=conv, subject=spec.get("subject") or "",
        body_content_type=(body.get("contentType") or "text").lower(), body=body.get("content") or "",
        from_addr=from_addr, sender_addr=sender_addr,
        to=[address(a) for a in spec.get("toRecipients") or []],
        cc=[address(a) for a in spec.get("ccRecipients") or []],
        bcc=[address(a) for a in spec.get("bccRecipients") or []],
        reply_to=[address(a) for a in spec.get("replyTo") or []],
        received=now, sent=None if draft else now, created=now, modified=now, is_read=True, is_draft=draft,
        in_reply_to=parent.internet_message_id if parent else spec.get("_in_reply_to"), references=refs,
        attachments=[make_attachment(a, now) for a in spec.get("_attachments") or []]
        + [make_attachment({"name": a.get("name", "attachment"), "content_type": a.get("contentType"),
                            "content": base64.b64decode(a.get("contentBytes") or ""),
                            "is_inline": a.get("isInline", False), "content_id": a.get("contentId")}, now)
           for a in spec.get("attachments") or []],
        change_key=new_change_key(), conversation_index=conversation_index(conv, len(refs)),
        importance=(spec.get("importance") or "normal").lower())
    msg.internet_headers = default_headers(msg) + [h for h in spec.get("internetMessageHeaders") or []]
    return msg


def reply_parameters(raw: bytes, mode: str, draft: bool = False) -> dict:
    """The parameters of ``reply``/``replyAll``/``forward`` (``mode``) or, ``draft``, of its ``create…`` action."""
    action = "create" + mode[0].upper() + mode[1:] if draft else mode
    return action_parameters(raw, action, ("comment", "message") + (("toRecipients",) if mode == "forward" else ()))


def _reply_spec(parent: Message, data: dict, mode: str, mailbox: User) -> dict:
    """The message a ``reply``/``replyAll``/``forward`` (or its ``create…`` draft) sends."""
    message = dict(data.get("message") or {})
    if "comment" in data and (message.get("body") or {}).get("content") is not None:
        raise bad_request("ErrorInvalidRequest", "Specify either comment or message.body, not both.")
    if "body" not in message:
        quoted = (f"<hr><div><b>From:</b> {html.escape(parent.from_addr.get('name', ''))} "
                  f"&lt;{html.escape(parent.from_addr.get('address', ''))}&gt;<br><b>Subject:</b> "
                  f"{html.escape(parent.subject)}</div>")
        comment = html.escape(data.get("comment") or "")
        message["body"] = {"contentType": "html", "content": f"<html><body><div>{comment}</div>{quoted}"
                           f"<blockquote>{parent.body}</blockquote></body></html>"}
    prefix = "FW: " if mode == "forward" else "RE: "
    message.setdefault("subject", parent.subject if parent.subject.upper().startswith(prefix.strip())
                       else prefix + parent.subject)
    if mode == "forward":
        if data.get("toRecipients"):
            message["toRecipients"] = data["toRecipients"]
        message["_attachments"] = [dataclasses.replace(a, id=new_attachment_id()) for a in parent.attachments]
    elif not message.get("toRecipients"):
        to = list(parent.reply_to or [parent.from_addr])
        cc = []
        if mode == "replyAll":
            own = {mailbox.upn.lower()} | {a["address"].lower() for a in to}
            to += [a for a in parent.to if a.get("address", "").lower() not in own]
            cc = [a for a in parent.cc if a.get("address", "").lower() not in own]
        message["toRecipients"] = [{"emailAddress": a} for a in to]
        message.setdefault("ccRecipients", [{"emailAddress": a} for a in cc])
    return message


def routes(state: SandboxState, endpoint) -> list:
    @endpoint
    async def send_mail(request: Request, token):
        ref = request.path_params.get("mailbox", "me")
        path_mailbox = resolve_mailbox(state, token, ref, "send")
        if path_mailbox.id != token.user_id:
            resolve_mailbox(state, token, ref, "read")   # /users/{shared}/sendMail also needs Full Access
        raw = await request.body()
        if request.headers.get("content-type", "").split(";")[0].strip().lower() == "text/plain":
            spec, save = _from_mime(raw), True
        else:
            data = action_parameters(raw, "sendMail", ("message", "saveToSentItems"))
            spec = data.get("message")
            if not isinstance(spec, dict):
                raise bad_request("ErrorInvalidParameter", "The message parameter is required.")
            save = data.get("saveToSentItems", True) not in (False, "false", "False")
        if not (spec.get("toRecipients") or spec.get("ccRecipients") or spec.get("bccRecipients")):
            raise bad_request("ErrorInvalidRecipients", "At least one recipient isn't valid., A message can't be "
                              "sent because it contains no recipients.")
        from_addr, sender_addr = sending_identity(state, token, spec.get("from"), path_mailbox)
        msg = build_message(state, path_mailbox, "sentitems", spec, from_addr, sender_addr)
        if save:
            add_message(state, msg)
        record_and_deliver(state, token, msg, f"/users/{ref}/sendMail", save)
        return Response(status_code=202)

    return _routes(["/sendMail"], send_mail)


def message_routes(state: SandboxState, endpoint, prefix: str) -> list:
    def original(request: Request, token, need: str):
        mailbox = resolve_mailbox(state, token, request.path_params.get("mailbox", "me"), need)
        msg = find_message(state, mailbox.id, request.path_params["message"])
        if msg is None:
            raise GraphDenied(graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store."))
        return mailbox, msg

    def sender(mode: str):
        @endpoint
        async def send_now(request: Request, token):       # reply, replyAll, forward: 202
            mailbox, parent = original(request, token, "read")
            spec = _reply_spec(parent, reply_parameters(await request.body(), mode), mode, mailbox)
            if not spec.get("toRecipients"):
                raise bad_request("ErrorInvalidRecipients", "A message can't be sent because it contains no "
                                  "recipients.")
            from_addr, sender_addr = sending_identity(state, token, spec.get("from"), mailbox)
            msg = build_message(state, mailbox, "sentitems", spec, from_addr, sender_addr, parent=parent)
            add_message(state, msg)
            record_and_deliver(state, token, msg, mode, True)
            return Response(status_code=202)
        return send_now

    def drafter(mode: str):
        @endpoint
        async def create_draft(request: Request, token):   # createReply, createReplyAll, createForward: 201
            mailbox, parent = original(request, token, "write")
            spec = _reply_spec(parent, reply_parameters(await request.body(), mode, draft=True), mode, mailbox)
            owner = address(spec["from"]) if spec.get("from") else mailbox_address(mailbox)
            msg = build_message(state, mailbox, "drafts", spec, owner, owner, parent=parent, draft=True)
            add_message(state, msg)
            prefer = Prefer(request)
            ctx = RenderContext(None, prefer.immutable, prefer.body_type)
            return odata({"@odata.context": f"{request.url.scheme}://{request.url.netloc}/v1.0/$metadata#users"
                          f"('{mailbox.id}')/messages/$entity", **render_message(state, msg, ctx)}, status=201,
                         headers=prefer.applied())
        return create_draft

    @endpoint
    async def send_draft(request: Request, token):
        mailbox, draft = original(request, token, "read")
        if not draft.is_draft:
            raise bad_request("ErrorInvalidOperation", "Only a draft message can be sent.")
        from_addr, sender_addr = sending_identity(state, token, {"emailAddress": draft.from_addr}
                                                  if draft.from_addr else None, mailbox)
        if not (draft.to or draft.cc or draft.bcc):
            raise bad_request("ErrorInvalidRecipients", "A message can't be sent because it contains no recipients.")
        with state.lock:
            draft.from_addr, draft.sender_addr = from_addr, sender_addr
            draft.is_draft, draft.sent = False, state.now()
            draft.received = draft.sent
        move_message(state, draft, well_known(state, mailbox.id, "sentitems"))
        notify(state, draft, "updated")
        record_and_deliver(state, token, draft, "send", True)
        return Response(status_code=202)

    return [Route(p + prefix + path, handler, methods=["POST"])
            for path, handler in (("/messages/{message}/reply", sender("reply")),
                                  ("/messages/{message}/replyAll", sender("replyAll")),
                                  ("/messages/{message}/forward", sender("forward")),
                                  ("/messages/{message}/createReply", drafter("reply")),
                                  ("/messages/{message}/createReplyAll", drafter("replyAll")),
                                  ("/messages/{message}/createForward", drafter("forward")),
                                  ("/messages/{message}/send", send_draft))
            for p in ("/v1.0/me", "/v1.0/users/{mailbox}")]
