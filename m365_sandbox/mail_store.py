"""Mail storage helpers shared by the Graph mail modules: ids, indexes, the delta change log, message
rendering (the Graph ``message`` resource, contract §3.3), and the mutations other rooms call.

Room-private data lives in ``state.extra`` (cleared by ``state.reset()``):

* ``mail_version``: bumped by every mutation; list caches key on it;
* ``mail_index``: mutable id -> immutable id;
* ``mail_delta_log``: folder id -> append-only list of ``(kind, immutable_id, changed_props, timestamp)``;
* ``mail_sent``: every message sent through Graph (for ``GET /control/mail/sent``);
* ``on_mail_change``: callbacks ``(state, message, change_type)`` (subscriptions room).
"""
from __future__ import annotations

import base64
import copy
import datetime as dt
import email.message
import email.policy
import email.utils
import hashlib
import html
import re
import secrets
import urllib.parse

from .state import Attachment, Folder, Message, SandboxState, User, iso

CHANGE_CALLBACKS = "on_mail_change"


# ------------------------------------------------------------------------------------------------------
# ids
# ------------------------------------------------------------------------------------------------------

def new_message_id() -> str:
    """A mutable REST id (``AAMkA…=``); a new one is minted on every folder move."""
    return "AAMkAGI2" + secrets.token_urlsafe(42) + "AAA="


def new_immutable_id() -> str:
    return "AAkALgAAAAAAHYQDEapmEc2byACqAC-EWg0A" + secrets.token_urlsafe(30) + "AAA="


def new_attachment_id() -> str:
    return "AAMkAGI2Att" + secrets.token_urlsafe(30) + "="


def new_change_key() -> str:
    return "CQAAABYAAA" + secrets.token_urlsafe(18)


def new_internet_message_id(domain: str) -> str:
    return f"<{secrets.token_hex(12)}@{domain}>"


def conversation_index(conversation_id: str, depth: int) -> str:
    """Outlook's thread index: a 22-byte header derived from the conversation, plus 5 bytes per reply."""
    head = hashlib.sha256(conversation_id.encode()).digest()[:22]
    return base64.b64encode(head + b"\x00\x00\x00\x00\x01" * depth).decode()


# ------------------------------------------------------------------------------------------------------
# indexes and caches
# ------------------------------------------------------------------------------------------------------

def bump(state: SandboxState) -> None:
    state.extra["mail_version"] = state.extra.get("mail_version", 0) + 1


def version(state: SandboxState) -> tuple:
    return state.extra.get("mail_version", 0), len(state.messages)


def _index(state: SandboxState) -> dict:
    with state.lock:
        idx = state.extra.get("mail_index")
        if idx is None or idx.get("__len__") != len(state.messages):
            idx = {m.id: m.immutable_id for m in state.messages.values()}
            idx["__len__"] = len(state.messages)
            state.extra["mail_index"] = idx
        return idx


def _index_put(state: SandboxState, msg: Message, old_id: str | None = None, idx: dict | None = None) -> None:
    """Index ``msg`` under its mutable id; ``idx``: the index as it was before ``msg`` joined ``state.messages``
    (else the changed count would make :func:`_index` rebuild it from every message)."""
    idx = _index(state) if idx is None else idx
    if old_id:
        idx.pop(old_id, None)
    idx[msg.id] = msg.immutable_id
    idx["__len__"] = len(state.messages)


def find_message(state: SandboxState, mailbox_id: str, ref: str) -> Message | None:
    """A message of ``mailbox_id`` by immutable or mutable id (both forms are accepted, contract §3.4)."""
    msg = state.messages.get(ref)
    if msg is None:
        imm = _index(state).get(ref)
        msg = state.messages.get(imm) if imm else None
    if msg is None or msg.mailbox_id != mailbox_id:
        return None
    return msg


def sorted_messages(state: SandboxState, mailbox_id: str, folder_id: str | None) -> list[Message]:
    """Messages of a folder (or the whole mailbox), newest first; cached until the next mutation."""
    cache = state.extra.setdefault("mail_sorted_cache", {})
    key = (mailbox_id, folder_id, version(state))
    hit = cache.get(key)
    if hit is not None:
        return hit
    if len(cache) > 64:
        cache.clear()
    with state.lock:
        if folder_id:
            msgs = [m for m in state.messages.values() if m.folder_id == folder_id]
        else:
            msgs = [m for m in state.messages.values() if m.mailbox_id == mailbox_id]
    epoch = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    msgs.sort(key=lambda m: (m.received or epoch, m.immutable_id), reverse=True)
    cache[key] = msgs
    return msgs


def folder_counts(state: SandboxState, folder_id: str, mailbox_id: str) -> tuple[int, int]:
    msgs = sorted_messages(state, mailbox_id, folder_id)
    return len(msgs), sum(1 for m in msgs if not m.is_read)


def well_known(state: SandboxState, mailbox_id: str, name: str) -> Folder:
    """The mailbox's folder of well-known ``name``: a default folder (added if the mailbox lacks it), or a folder
    of that name under msgfolderroot, made on first use (``generate_mail(folder=…)``)."""
    folder = state.folder_by_ref(mailbox_id, name)
    if folder is None:
        state.add_default_folders(mailbox_id)
        folder = state.folder_by_ref(mailbox_id, name)
    if folder is None:
        root = state.folder_by_ref(mailbox_id, "msgfolderroot")
        folder = state.add_folder(Folder(id="AAMkF" + secrets.token_urlsafe(30), mailbox_id=mailbox_id,
                                         display_name=name, well_known_name=name, parent_id=root.id))
    return folder


# ------------------------------------------------------------------------------------------------------
# change log and notifications
# ------------------------------------------------------------------------------------------------------

def log_change(state: SandboxState, folder_id: str, kind: str, msg: Message, props: tuple = ()) -> None:
    """Append to the folder's delta log: ``created``, ``updated`` (with the changed props) or ``removed`` (with
    the mutable id the message had in this folder)."""
    if kind == "removed":
        props = (msg.id,)
    state.extra.setdefault("mail_delta_log", {}).setdefault(folder_id, []).append(
        (kind, msg.immutable_id, props, state.now().timestamp()))


def notify(state: SandboxState, msg: Message, change_type: str) -> None:
    for callback in list(state.extra.setdefault(CHANGE_CALLBACKS, [])):
        callback(state, msg, change_type)


def touch(state: SandboxState, msg: Message) -> None:
    msg.modified = state.now()
    msg.change_key = new_change_key()


def add_message(state: SandboxState, msg: Message, *, notify_change: bool = True) -> Message:
    with state.lock:
        idx = _index(state)
        state.messages[msg.immutable_id] = msg
        _index_put(state, msg, idx=idx)
        log_change(state, msg.folder_id, "created", msg)
        bump(state)
    if notify_change:
        notify(state, msg, "created")
    return msg


def update_message(state: SandboxState, msg: Message, props: tuple) -> None:
    with state.lock:
        touch(state, msg)
        log_change(state, msg.folder_id, "updated", msg, tuple(props) + ("lastModifiedDateTime", "changeKey"))
        bump(state)
    notify(state, msg, "updated")


def move_message(state: SandboxState, msg: Message, folder: Folder) -> Message:
    """Move to ``folder``: a new mutable id, the immutable id stays (contract §3.4)."""
    if folder.id == msg.folder_id:
        return msg
    before = copy.copy(msg)
    with state.lock:
        log_change(state, msg.folder_id, "removed", msg)
        old_id = msg.id
        msg.id, msg.folder_id = new_message_id(), folder.id
        touch(state, msg)
        _index_put(state, msg, old_id)
        log_change(state, folder.id, "created", msg)
        bump(state)
    notify(state, before, "deleted")
    notify(state, msg, "created")
    return msg


def delete_message(state: SandboxState, msg: Message, *, permanent: bool = False) -> None:
    """Graph's DELETE moves the message to Deleted Items; ``permanent`` (or a delete there) removes it."""
    deleted_items = well_known(state, msg.mailbox_id, "deleteditems")
    if not permanent and msg.folder_id != deleted_items.id:
        move_message(state, msg, deleted_items)
        return
    with state.lock:
        log_change(state, msg.folder_id, "removed", msg)
        state.messages.pop(msg.immutable_id, None)
        _index(state).pop(msg.id, None)
        state.extra["mail_index"]["__len__"] = len(state.messages)
        bump(state)
    notify(state, msg, "deleted")


# ------------------------------------------------------------------------------------------------------
# building messages
# ------------------------------------------------------------------------------------------------------

def address(addr) -> dict:
    """``"a@b"``, ``{"address": …}`` or Graph's ``{"emailAddress": {…}}`` -> ``{"name", "address"}``."""
    if isinstance(addr, str):
        return {"name": addr, "address": addr}
    if "emailAddress" in addr:
        addr = addr["emailAddress"] or {}
    return {"name": addr.get("name") or addr.get("address", ""), "address": addr.get("address", "")}


def mailbox_address(user: User) -> dict:
    return {"name": user.display_name, "address": user.upn}


def resolve_mailbox_ref(state: SandboxState, ref: str) -> User:
    user = state.users.get(ref) or state.user_by_ref(ref)
    if user is None:
        raise KeyError(f"unknown mailbox {ref!r}")
    return user


def deliver_inbound(state: SandboxState, mailbox_ref: str, *, from_addr, subject: str, body_html: str,
                    to=None, cc=None, attachments=None, in_reply_to: str | None = None,
                    received: dt.datetime | None = None, internet_message_id: str | None = None,
                    headers: list | None = None) -> Message:
    """Deliver a message from outside into ``mailbox_ref``'s Inbox (logs a delta change, notifies).

    ``attachments``: :class:`Attachment` objects or dicts ``{name, content_type, content (bytes or str),
    is_inline?, content_id?}``. ``in_reply_to``: the parent's internet message id; the message joins the parent's
    conversation when the sandbox knows it. ``headers``: more ``internetMessageHeaders`` (``[{name, value}]``).
    """
    with state.lock:
        mailbox = resolve_mailbox_ref(state, mailbox_ref)
        inbox = well_known(state, mailbox.id, "inbox")
        now = received or state.now()
        sender = address(from_addr)
        parent = None
        if in_reply_to:
            parent = next((m for m in state.messages.values()
                           if m.internet_message_id == in_reply_to and m.mailbox_id == mailbox.id), None)
        conv_id = parent.conversation_id if parent else "AAQkAGI2" + secrets.token_urlsafe(24) + "="
        refs = (parent.references + [parent.internet_message_id]) if parent else ([in_reply_to] if in_reply_to else [])
        domain = sender["address"].rpartition("@")[2] or "example.com"
        msg = Message(
            id=new_message_id(), immutable_id=new_immutable_id(), mailbox_id=mailbox.id, folder_id=inbox.id,
            internet_message_id=internet_message_id or new_internet_message_id(domain), conversation_id=conv_id,
            subject=subject, body_content_type="html", body=body_html, from_addr=sender, sender_addr=dict(sender),
            to=[address(a) for a in (to or [mailbox_address(mailbox)])], cc=[address(a) for a in (cc or [])],
            received=now, sent=now, created=now, modified=now, in_reply_to=in_reply_to, references=refs,
            attachments=[make_attachment(a, now) for a in (attachments or [])],
            change_key=new_change_key(), conversation_index=conversation_index(conv_id, len(refs)),
        )
        msg.internet_headers = default_headers(msg) + list(headers or [])
        add_message(state, msg, notify_change=False)
    notify(state, msg, "created")
    return msg


def deliver_many(state: SandboxState, mailbox_refs: list, **message) -> list[Message]:
    """One message from outside into the Inbox of each of ``mailbox_refs`` (:func:`deliver_inbound`'s keyword
    arguments, ``received`` excepted), all received at the same moment and added under one hold of the lock: a
    delta round sees all of them or none. Every mailbox is resolved first: an unknown one delivers nothing.

    :raise KeyError: an unknown mailbox.
    """
    with state.lock:
        mailboxes = [resolve_mailbox_ref(state, ref) for ref in mailbox_refs]
        received = state.now()
        return [deliver_inbound(state, mailbox.id, received=received, **message) for mailbox in mailboxes]


def make_attachment(spec, when: dt.datetime) -> Attachment:
    if isinstance(spec, Attachment):
        return spec
    content = spec.get("content", b"")
    if isinstance(content, str):
        content = content.encode()
    return Attachment(id=new_attachment_id(), name=spec["name"],
                      content_type=spec.get("content_type") or spec.get("contentType") or "application/octet-stream",
                      content=content, is_inline=bool(spec.get("is_inline", spec.get("isInline", False))),
                      content_id=spec.get("content_id") or spec.get("contentId"), kind=spec.get("kind", "file"),
                      last_modified=when)


def default_headers(msg: Message) -> list[dict]:
    headers = [{"name": "Message-ID", "value": msg.internet_message_id},
               {"name": "Subject", "value": msg.subject},
               {"name": "From", "value": f'"{msg.from_addr["name"]}" <{msg.from_addr["address"]}>'},
               {"name": "MIME-Version", "value": "1.0"}]
    if msg.in_reply_to:
        headers.append({"name": "In-Reply-To", "value": msg.in_reply_to})
    if msg.references:
        headers.append({"name": "References", "value": " ".join(msg.references)})
    return headers


# ------------------------------------------------------------------------------------------------------
# rendering (contract §3.3)
# ------------------------------------------------------------------------------------------------------

_TAG = re.compile(r"<(script|style)\b.*?</\1>|<[^>]+>", re.S | re.I)
_SPACE = re.compile(r"\s+")


def html_to_text(content: str) -> str:
    return _SPACE.sub(" ", html.unescape(_TAG.sub(" ", content))).strip()


def body_preview(state: SandboxState, msg: Message, _ctx=None) -> str:
    cache = state.extra.setdefault("mail_preview_cache", {})
    hit = cache.get(msg.immutable_id)
    if hit is not None and hit[0] is msg.body:
        return hit[1]
    text = html_to_text(msg.body) if msg.body_content_type == "html" else _SPACE.sub(" ", msg.body).strip()
    preview = text[:255]
    cache[msg.immutable_id] = (msg.body, preview)
    return preview


def _recips(items: list[dict]) -> list[dict]:
    return [{"emailAddress": {"name": a.get("name", ""), "address": a.get("address", "")}} for a in items]


def _body(state, msg, ctx) -> dict:
    want = ctx.body_type
    if want == "text" and msg.body_content_type == "html":
        return {"contentType": "text", "content": html_to_text(msg.body)}
    if want == "html" and msg.body_content_type == "text":
        return {"contentType": "html", "content": "<html><body><pre>" + html.escape(msg.body) + "</pre></body></html>"}
    return {"contentType": msg.body_content_type, "content": msg.body}


def _unique_body(state, msg, ctx) -> dict:
    body = _body(state, msg, ctx)
    content = body["content"]
    for marker in ('<div class="gmail_quote"', "<blockquote", "\n> "):
        cut = content.find(marker)
        if cut > 0:
            content = content[:cut]
    return {"contentType": body["contentType"], "content": content}


def _weblink(msg: Message, ctx) -> str:
    return ("https://outlook.office365.com/owa/?ItemID=" + urllib.parse.quote(ctx.msg_id(msg), safe="")
            + "&exvsurl=1&viewmodel=ReadMessageItem")


def _flag(msg: Message) -> dict:
    return msg.flag or {"flagStatus": "notFlagged"}


def has_attachments(msg: Message) -> bool:
    """False when the message has only inline attachments (contract §3.3)."""
    return any(not a.is_inline for a in msg.attachments)


RENDERERS = {
    "id": lambda s, m, c: c.msg_id(m),
    "createdDateTime": lambda s, m, c: iso(m.created or m.received),
    "lastModifiedDateTime": lambda s, m, c: iso(m.modified or m.received),
    "changeKey": lambda s, m, c: m.change_key,
    "categories": lambda s, m, c: list(m.categories),
    "receivedDateTime": lambda s, m, c: iso(m.received),
    "sentDateTime": lambda s, m, c: iso(m.sent or m.received),
    "hasAttachments": lambda s, m, c: has_attachments(m),
    "internetMessageId": lambda s, m, c: m.internet_message_id,
    "subject": lambda s, m, c: m.subject,
    "bodyPreview": body_preview,
    "importance": lambda s, m, c: m.importance,
    "parentFolderId": lambda s, m, c: m.folder_id,
    "conversationId": lambda s, m, c: m.conversation_id,
    "conversationIndex": lambda s, m, c: m.conversation_index or conversation_index(m.conversation_id, 0),
    "isDeliveryReceiptRequested": lambda s, m, c: False,
    "isReadReceiptRequested": lambda s, m, c: False,
    "isRead": lambda s, m, c: bool(m.is_read),
    "isDraft": lambda s, m, c: bool(m.is_draft),
    "webLink": lambda s, m, c: _weblink(m, c),
    "inferenceClassification": lambda s, m, c: "focused",
    "body": _body,
    "sender": lambda s, m, c: {"emailAddress": dict(m.sender_addr)} if m.sender_addr else None,
    "from": lambda s, m, c: {"emailAddress": dict(m.from_addr)} if m.from_addr else None,
    "toRecipients": lambda s, m, c: _recips(m.to),
    "ccRecipients": lambda s, m, c: _recips(m.cc),
    "bccRecipients": lambda s, m, c: _recips(m.bcc),
    "replyTo": lambda s, m, c: _recips(m.reply_to),
    "flag": lambda s, m, c: _flag(m),
    # only through $select:
    "uniqueBody": _unique_body,
    "internetMessageHeaders": lambda s, m, c: list(m.internet_headers),
}
SELECT_ONLY = ("uniqueBody", "internetMessageHeaders")
DEFAULT_PROPS = tuple(p for p in RENDERERS if p not in SELECT_ONLY)
PROP_BY_LOWER = {p.lower(): p for p in RENDERERS}


class RenderContext:
    """How to render: ``select`` (None = default set), ``immutable`` ids, preferred ``body_type``."""

    __slots__ = ("select", "immutable", "body_type", "props")

    def __init__(self, select: tuple | None = None, immutable: bool = False, body_type: str | None = None,
                 expand_attachments: bool = False):
        self.select, self.immutable, self.body_type = select, immutable, body_type
        props = DEFAULT_PROPS if select is None else ("id",) + tuple(p for p in select if p != "id")
        self.props = tuple((p, RENDERERS[p]) for p in props)
        if expand_attachments:
            self.props += (("attachments", lambda s, m, c: [render_attachment(a) for a in m.attachments]),)

    def msg_id(self, msg: Message) -> str:
        return msg.immutable_id if self.immutable else msg.id


def etag(msg: Message) -> str:
    return f'W/"{msg.change_key}"'


def render_message(state: SandboxState, msg: Message, ctx: RenderContext, props=None) -> dict:
    out = {"@odata.etag": etag(msg)}
    for name, fn in (props or ctx.props):
        out[name] = fn(state, msg, ctx)
    return out


def message_mime(msg: Message) -> bytes:
    """The message as RFC 5322 MIME (``GET …/messages/{id}/$value``): HTML body, inline parts, attachments."""
    mime = email.message.EmailMessage(policy=email.policy.SMTP)

    def fmt(addr: dict) -> str:
        return email.utils.formataddr((addr.get("name") or "", addr.get("address") or ""))
    mime["From"] = fmt(msg.from_addr)
    if msg.sender_addr and msg.sender_addr.get("address") != msg.from_addr.get("address"):
        mime["Sender"] = fmt(msg.sender_addr)
    if msg.to:
        mime["To"] = ", ".join(fmt(a) for a in msg.to)
    if msg.cc:
        mime["Cc"] = ", ".join(fmt(a) for a in msg.cc)
    mime["Subject"] = msg.subject
    mime["Date"] = email.utils.format_datetime(msg.sent or msg.received)
    mime["Message-ID"] = msg.internet_message_id
    if msg.in_reply_to:
        mime["In-Reply-To"] = msg.in_reply_to
    if msg.references:
        mime["References"] = " ".join(msg.references)
    mime["Thread-Index"] = msg.conversation_index or conversation_index(msg.conversation_id, 0)
    mime.set_content(msg.body, subtype="html" if msg.body_content_type == "html" else "plain")
    for att in msg.attachments:
        if att.kind == "reference":
            continue
        maintype, _, subtype = (att.content_type if att.kind == "file" else "message/rfc822").partition("/")
        if maintype == "message":
            maintype, subtype = "application", "octet-stream"
        if att.is_inline:
            mime.add_related(att.content, maintype=maintype, subtype=subtype or "octet-stream", filename=att.name,
                             cid=f"<{att.content_id}>" if att.content_id else None, disposition="inline")
        else:
            mime.add_attachment(att.content, maintype=maintype, subtype=subtype or "octet-stream",
                                filename=att.name)
    return mime.as_bytes()


def render_attachment(att: Attachment, with_content: bool = True) -> dict:
    kind = {"file": "fileAttachment", "item": "itemAttachment", "reference": "referenceAttachment"}[att.kind]
    out = {"@odata.type": f"#microsoft.graph.{kind}", "@odata.mediaContentType": att.content_type,
           "id": att.id, "lastModifiedDateTime": iso(att.last_modified) if att.last_modified else None,
           "name": att.name, "contentType": att.content_type, "size": len(att.content) + 180,
           "isInline": att.is_inline}
    if att.kind == "file":
        out["contentId"] = att.content_id
        out["contentLocation"] = None
        if with_content:
            out["contentBytes"] = base64.b64encode(att.content).decode()
    elif att.kind == "reference":
        out["sourceUrl"] = att.content.decode(errors="replace")
        out["providerType"] = "oneDriveBusiness"
        out["permission"] = "view"
        out["isFolder"] = False
    return out
