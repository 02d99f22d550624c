"""Room: Graph v1.0 mail (users, mail folders, messages, attachments, delta, sending, ``$batch``) and its
control plane. Contract: ``shared/docs/graph-contract.md`` §3-§7.

Graph routes (each under ``/v1.0/me`` and ``/v1.0/users/{id|upn}``; errors in Graph's envelope; every response
carries ``request-id`` and ``client-request-id``; throttled per (app id, mailbox), see ``throttle.py``):

    GET    /me, /users/{m}                                     minimal user resource
    GET    …/mailFolders, …/mailFolders/{f}/childFolders       $top (10 by default) $skip $select $count,
                                                               includeHiddenFolders
    GET    …/mailFolders/{f}                                   f: an id or a well-known name (archive, junkemail,
                                                               outbox, …: state.DEFAULT_FOLDERS), in any case
    GET    …/messages, …/mailFolders/{f}/messages              $select $filter $orderby $top $skip $count $expand
    GET    …/mailFolders/{f}/messages/delta                    delta (mail_delta.py)
    GET    …/messages/{id}       PATCH …/messages/{id}         DELETE …/messages/{id}
    GET    …/messages/{id}/$value                              the message as MIME (text/plain, as Graph sends it)
    POST   …/messages/{id}/move {destinationId}
    POST   …/translateExchangeIds {inputIds (≤1000), sourceIdType, targetIdType: restId|restImmutableEntryId}
    GET    …/messages/{id}/attachments[/{aid}[/$value]]      POST …/messages/{id}/attachments (fileAttachment)
    POST   …/sendMail, …/messages/{id}/reply|replyAll|forward, …/messages/{id}/createReply|createReplyAll|
           createForward, …/messages/{id}/send                 (mail_send.py)
    POST   …/messages (new draft, JSON or MIME), …/messages/{id}/attachments/createUploadSession, PUT {uploadUrl}
                                                               (mail_drafts.py)
    POST   /v1.0/$batch                                        (batch.py)

The actions (move, translateExchangeIds, sendMail, reply…, create…, createUploadSession) take their parameters'
names in any letter case, as Graph does (the SDKs send ``DestinationId``, the docs show ``destinationId``), and
refuse an undeclared one with 400 ``RequestBodyRead``: ``mail_paging.action_parameters``. Every mailbox has
Exchange's default folders (``state.DEFAULT_FOLDERS``), addressed by id or well-known name.

Control routes (JSON, no auth; for tests, demos and benchmarks):

    POST /control/mail/deliver   {"mailbox", "from", "subject", "body_html", "to"?, "cc"?, "in_reply_to"?,
                                  "internet_message_id"? (the same mail delivered to several mailboxes),
                                  "headers"?: [{"name", "value"}] (more internetMessageHeaders),
                                  "attachments"?: [{"name", "content_type", "content_b64", "is_inline"?,
                                  "content_id"?}]}  -> 201 {"id", "immutable_id", "internetMessageId",
                                  "conversationId"}; delivers into the Inbox now (delta log + notifications).
    POST /control/mail/deliver-many {"mailboxes": [id or UPN, ...], "from", "subject"?, "body_html"?, "to"?,
                                  "cc"?} -> 201 {"value": [{"mailbox", "id", "immutable_id", "internetMessageId",
                                  "conversationId", "receivedDateTime"}], "delivered_at" (epoch seconds),
                                  "seconds" (the sandbox's time)}: one message into each Inbox, all received at
                                  the same moment; an unknown mailbox (404) delivers none.
    POST /control/mail/generate  {"mailbox", "count", "days"?: 30, "seed"?: 0, "folder"?: "inbox"}
                                  -> {"generated", "seconds"}; realistic bulk mail (mailgen.py).
    POST /control/mail/move      {"id", "folder"} (id: immutable or mutable; folder: well-known name or id)
                                  -> {"id", "immutable_id", "folder_id"}; the mutable id changes.
    POST /control/mail/delete    {"id", "permanent"?: false} -> {"deleted": true}; not permanent = to Deleted Items.
    GET  /control/mail/sent      -> {"value": [every message sent through Graph: from, sender, to, cc, bcc,
                                  subject, body, internetMessageId, inReplyTo, route, clientId, sentCopy...]}
    DELETE /control/mail/sent    forget them.
    GET  /control/mail/counts    -> {"mailboxes": {upn: requests}, "apps": {client_id: requests}}
    POST /control/mail/bounce, /control/mail/auto-reply: NDRs and automatic replies (mail_bounce.py; mail sent
                                  to a ``.invalid`` domain bounces by itself).
    POST /control/mail/delta/expire {"mode": "syncStateNotFound" | "410", "mailbox"?}
                                  every delta link issued so far (for that mailbox, or all) fails next time:
                                  400 syncStateNotFound, or 410 Gone + Location (a fresh delta URL).

Settings (``state.settings``, read with defaults): ``list_hidden_item_every`` (9: a hidden non-message item
every 9 messages, so ``$skip`` runs ahead of the page size), ``empty_pages`` (True: one empty page with a
nextLink in each paged list or initial delta sync), ``delta_replays`` (True: each delta page repeats the previous
page's last item), ``delta_delay_s`` (0: changes younger than this wait for a later delta round),
``gateway_timeout_top`` (None: a ``$top`` at least this large with full bodies → 504),
``deliver_internal`` (True: mail sent to a sandbox mailbox lands in its Inbox), ``batch_envelope_424`` (False:
the ``$batch`` envelope stays 200 when an item failed a dependency; True: 424), ``throttle_window_requests``
(10000) per ``throttle_window_s`` (600), ``throttle_concurrency`` (4), ``throttle_concurrency_retry_after`` (2),
``throttle_upload_bytes`` (150 MB) per ``throttle_upload_window_s`` (300), all per (app id, mailbox);
``mailboxes_not_rest_enabled`` ([]: ids or UPNs answered 404 ``MailboxNotEnabledForRESTAPI``).

Faults (``state.faults["graph"]``, applied per Graph request, ``$batch`` items included): ``"429": N``,
``"503": N``, ``"504": N`` (the next N requests), ``"retry_after": S`` (their Retry-After, default 10),
``"latency_ms": X`` (every request, inside the concurrency window).

Public functions for other rooms: :func:`deliver_inbound`, :func:`generate_mail` (change callbacks only for
batches of at most 100); callbacks registered in ``state.extra["on_mail_change"]`` get ``(state, message,
change_type)`` with ``created``/``updated``/``deleted`` on delivery, PATCH, move (``deleted`` for the old place,
then ``created``), delete, sent copies and sent drafts.
"""
from __future__ import annotations

import base64
import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route

from . import batch, mail_bounce, mail_delta, mail_drafts, mail_send
from .auth import GraphDenied, resolve_mailbox
from .errors import graph_error
from .mail_paging import (Filter, Prefer, action_parameters, bad_request, control_json, json_body, link,
                          parse_expand, parse_orderby, parse_select, parse_top, query_once, sign, unsign)
from .mail_store import (PROP_BY_LOWER, RenderContext, address, delete_message, deliver_inbound, deliver_many,
                         find_message, folder_counts, make_attachment, message_mime, move_message,
                         render_attachment, render_message, sorted_messages, update_message, version, well_known)
from .mailgen import generate_mail
from .state import WELL_KNOWN_NAMES, Folder, SandboxState, User, iso
from .throttle import graph_endpoint, odata

__all__ = ["routes", "deliver_inbound", "generate_mail"]

NOT_FOUND = ("ErrorItemNotFound", "The specified object was not found in the store.")


def not_found() -> GraphDenied:
    return GraphDenied(graph_error(404, *NOT_FOUND))


def graph_base(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}/v1.0"


def mailbox_of(state: SandboxState, request: Request, token, need: str = "read") -> User:
    return resolve_mailbox(state, token, request.path_params.get("mailbox", "me"), need)


def folder_of(state: SandboxState, mailbox: User, ref: str) -> Folder:
    folder = state.folder_by_ref(mailbox.id, ref)
    if folder is None:
        if ref.lower() in WELL_KNOWN_NAMES:
            return well_known(state, mailbox.id, ref.lower())
        raise not_found()
    return folder


def message_of(state: SandboxState, request: Request, token, need: str = "read"):
    mailbox = mailbox_of(state, request, token, need)
    msg = find_message(state, mailbox.id, request.path_params["message"])
    if msg is None:
        raise not_found()
    return mailbox, msg


def query_messages(state: SandboxState, mailbox_id: str, folder_id: str | None, flt: Filter,
                   order: list, key: tuple) -> list:
    """Filtered and ordered messages; cached per query until the next mutation."""
    base = sorted_messages(state, mailbox_id, folder_id)
    if not flt and (not order or order == [("received", True)]):
        return base
    cache = state.extra.setdefault("mail_query_cache", {})
    ckey = (mailbox_id, folder_id, key, version(state))
    hit = cache.get(ckey)
    if hit is not None:
        return hit
    if len(cache) > 32:
        cache.clear()
    msgs = [m for m in base if flt(m)] if flt else list(base)
    for attr, desc in reversed(order):     # stable sorts, least significant key first
        if attr in ("subject", "importance"):
            msgs.sort(key=lambda m, a=attr: getattr(m, a) or "", reverse=desc)
        else:
            msgs.sort(key=lambda m, a=attr: getattr(m, a) or m.received, reverse=desc)
    cache[ckey] = msgs
    return msgs


def _user_json(request: Request, user: User) -> dict:
    first, _, last = user.display_name.partition(" ")
    return {"@odata.context": graph_base(request) + "/$metadata#users/$entity", "businessPhones": [],
            "displayName": user.display_name, "givenName": first or None, "jobTitle": None, "mail": user.upn,
            "mobilePhone": None, "officeLocation": None, "preferredLanguage": None, "surname": last or None,
            "userPrincipalName": user.upn, "id": user.id}


FOLDER_PROPS = ("id", "displayName", "parentFolderId", "childFolderCount", "unreadItemCount", "totalItemCount",
                "sizeInBytes", "isHidden")
FOLDER_PROP_BY_LOWER = {p.lower(): p for p in FOLDER_PROPS}
FOLDER_QUERY = {"$select", "$top", "$skip", "$count"}


def _folder_json(state: SandboxState, folder: Folder, select: tuple | None = None) -> dict:
    total, unread = folder_counts(state, folder.id, folder.mailbox_id)
    children = sum(1 for f in state.mailbox_folders(folder.mailbox_id) if f.parent_id == folder.id)
    out = {"id": folder.id, "displayName": folder.display_name,
           "parentFolderId": folder.parent_id or "AAMkRoot" + folder.mailbox_id.replace("-", ""),
           "childFolderCount": children,
           "unreadItemCount": unread, "totalItemCount": total, "sizeInBytes": total * 4096, "isHidden": folder.hidden}
    return out if select is None else {"id": folder.id, **{p: out[p] for p in select}}


def _stream_skip(state: SandboxState, index: int) -> int:
    """``$skip`` counts hidden non-message items too (contract §3.1): one before the first message and one every
    ``list_hidden_item_every`` messages, so ``$skip`` is above the page size from page 1 on."""
    every = state.settings.get("list_hidden_item_every", 9)
    return index + -(-index // every) if every else index


def _index_of_skip(state: SandboxState, skip: int) -> int:
    every = state.settings.get("list_hidden_item_every", 9)
    if not every:
        return skip
    blocks, rest = divmod(skip, every + 1)
    return blocks * every + max(0, rest - 1)


ID_TYPES = ("restId", "restImmutableEntryId")
LIST_QUERY = {"$select", "$filter", "$orderby", "$top", "$skip", "$skiptoken", "$count", "$expand"}
LIST_OPTIONS = (("$select", "sel"), ("$filter", "flt"), ("$orderby", "ob"), ("$top", "top"), ("$expand", "exp"))


def routes(state: SandboxState) -> list:
    endpoint = graph_endpoint(state)

    # --- users and folders ------------------------------------------------------------------------
    @endpoint
    def me(request: Request, token):
        if not token.scopes & {"User.Read", "User.ReadBasic.All", "User.Read.All", "Directory.Read.All"}:
            raise GraphDenied(graph_error(403, "Authorization_RequestDenied",
                                          "Insufficient privileges to complete the operation."))
        return odata(_user_json(request, state.users[token.user_id]))

    @endpoint
    def user(request: Request, token):
        ref = request.path_params["mailbox"]
        target = state.user_by_ref(ref, tenant_id=token.tenant_id)
        if target is None:
            raise GraphDenied(graph_error(404, "Request_ResourceNotFound", f"Resource '{ref}' does not exist or "
                                          "one of its queried reference-property objects are not present."))
        own = target.id == token.user_id
        if not (own and "User.Read" in token.scopes) and not token.scopes & {
                "User.ReadBasic.All", "User.Read.All", "Directory.Read.All"}:
            raise GraphDenied(graph_error(403, "Authorization_RequestDenied",
                                          "Insufficient privileges to complete the operation."))
        return odata(_user_json(request, target))

    @endpoint
    def folders(request: Request, token):
        """``…/mailFolders`` (the children of msgfolderroot, "Top of Information Store") or
        ``…/mailFolders/{f}/childFolders``: by display name, hidden folders only with ``includeHiddenFolders=true``,
        10 a page unless ``$top`` says otherwise, the nextLink carrying ``$skip`` (learn.microsoft.com "List
        mailFolders", "List childFolders")."""
        mailbox = mailbox_of(state, request, token)
        parent = folder_of(state, mailbox, request.path_params.get("folder", "msgfolderroot"))
        params = query_once(request)
        unsupported = {k for k in params if k.startswith("$")} - FOLDER_QUERY
        if unsupported:
            raise bad_request("BadRequest", f"Query option(s) {', '.join(sorted(unsupported))} not supported here.")
        hidden = any(k.lower() == "includehiddenfolders" and v.lower() == "true" for k, v in params.items())
        select = parse_select(params.get("$select"), FOLDER_PROP_BY_LOWER, "mailFolder")
        top = parse_top(params.get("$top"))
        skip = params.get("$skip", "0")
        if not skip.isdigit():
            raise bad_request("BadRequest", "Invalid $skip value.")
        skip = int(skip)
        children = sorted((f for f in state.mailbox_folders(mailbox.id)
                           if f.parent_id == parent.id and (hidden or not f.hidden)),
                          key=lambda f: (f.display_name.lower(), f.id))
        base = graph_base(request)
        where = f"users('{mailbox.id}')/mailFolders" + (
            f"('{request.path_params['folder']}')/childFolders" if "folder" in request.path_params else "")
        body = {"@odata.context": f"{base}/$metadata#{where}"}
        if params.get("$count", "").lower() == "true":
            body["@odata.count"] = len(children)
        body["value"] = [_folder_json(state, f, select) for f in children[skip:skip + top]]
        if skip + top < len(children):
            body["@odata.nextLink"] = link(base + request.url.path[len("/v1.0"):], [
                (k, v) for k, v in params.items() if k != "$skip"] + [("$skip", str(skip + top))])
        return odata(body)

    @endpoint
    def folder(request: Request, token):
        mailbox = mailbox_of(state, request, token)
        found = folder_of(state, mailbox, request.path_params["folder"])
        select = parse_select(query_once(request).get("$select"), FOLDER_PROP_BY_LOWER, "mailFolder")
        return odata({"@odata.context": graph_base(request) + f"/$metadata#users('{mailbox.id}')/mailFolders"
                      "/$entity", **_folder_json(state, found, select)})

    # --- message lists ----------------------------------------------------------------------------
    @endpoint
    def list_messages(request: Request, token):
        mailbox = mailbox_of(state, request, token)
        fold = folder_of(state, mailbox, request.path_params["folder"]) if "folder" in request.path_params else None
        folder_id = fold.id if fold else None
        params = query_once(request)
        unsupported = {k for k in params if k.startswith("$")} - LIST_QUERY
        if unsupported:
            raise bad_request("BadRequest", f"Query option(s) {', '.join(sorted(unsupported))} not supported here.")
        prefer = Prefer(request)
        skiptoken = params.get("$skiptoken")
        if skiptoken:
            saved = unsign(state, skiptoken, "list")
            if saved["mb"] != mailbox.id or saved["f"] != folder_id:
                raise bad_request("ErrorInvalidUrlQuery", "The skip token belongs to another collection.")
            for key, name in LIST_OPTIONS + (("$skip", "skip"),):
                if params.get(key) != saved[name]:
                    raise bad_request("ErrorInvalidUrlQuery", f"The {key} of a nextLink was changed or re-added;"
                                      " follow @odata.nextLink verbatim.")
            options = {name: saved[name] for _k, name in LIST_OPTIONS}
            pos, empty_done = saved["pos"], saved["e"]
        else:
            options = {name: params.get(key) for key, name in LIST_OPTIONS}
            try:
                pos = _index_of_skip(state, int(params.get("$skip", 0)))
            except ValueError:
                raise bad_request("BadRequest", "Invalid $skip value.") from None
            empty_done = False
        select = parse_select(options["sel"])
        flt = Filter(options["flt"])
        order = parse_orderby(options["ob"], flt)
        top = parse_top(options["top"])
        limit = state.settings.get("gateway_timeout_top")
        if limit and top >= limit and (select is None or "body" in select or "uniqueBody" in select):
            return graph_error(504, "UnknownError", "The gateway did not receive a timely response. "
                               "Reduce $top or $select fewer properties.")
        with state.lock:
            msgs = query_messages(state, mailbox.id, folder_id, flt, order, (options["flt"], options["ob"]))
            if skiptoken and not empty_done and state.settings.get("empty_pages", True):
                page, next_pos, empty_done = [], pos, True
            else:
                page = msgs[pos:pos + top]
                next_pos = pos + len(page)
            ctx = RenderContext(select, prefer.immutable, prefer.body_type, parse_expand(options["exp"]))
            value = [render_message(state, m, ctx) for m in page]
            total = len(msgs)
        base = graph_base(request)
        where = f"users('{mailbox.id}')" + (f"/mailFolders('{request.path_params['folder']}')" if fold else "")
        body = {"@odata.context": f"{base}/$metadata#{where}/messages"}
        if params.get("$count", "").lower() == "true":
            body["@odata.count"] = total
        body["value"] = value
        if next_pos < total:
            skip = str(_stream_skip(state, next_pos))
            token_value = sign(state, {"k": "list", "mb": mailbox.id, "f": folder_id, **options, "skip": skip,
                                       "pos": next_pos, "e": empty_done})
            link_params = [(key, options[name]) for key, name in LIST_OPTIONS if options[name] is not None]
            body["@odata.nextLink"] = link(base + request.url.path[len("/v1.0"):],
                                           link_params + [("$skip", skip), ("$skiptoken", token_value)])
        return odata(body, headers=prefer.applied())

    # --- one message ------------------------------------------------------------------------------
    @endpoint
    def get_message(request: Request, token):
        mailbox, msg = message_of(state, request, token)
        prefer = Prefer(request)
        params = query_once(request)
        ctx = RenderContext(parse_select(params.get("$select")), prefer.immutable, prefer.body_type,
                            parse_expand(params.get("$expand")))
        body = {"@odata.context": graph_base(request) + f"/$metadata#users('{mailbox.id}')/messages/$entity",
                **render_message(state, msg, ctx)}
        return odata(body, headers=prefer.applied())

    @endpoint
    def message_value(request: Request, token):
        _mailbox, msg = message_of(state, request, token)
        return Response(message_mime(msg), media_type="text/plain")

    @endpoint
    async def patch_message(request: Request, token):
        mailbox, msg = message_of(state, request, token, "write")
        changes = json_body(await request.body())
        prefer = Prefer(request)
        changed = apply_patch(state, msg, changes)
        update_message(state, msg, tuple(changed))
        ctx = RenderContext(None, prefer.immutable, prefer.body_type)
        return odata({"@odata.context": graph_base(request) + f"/$metadata#users('{mailbox.id}')/messages"
                      "/$entity", **render_message(state, msg, ctx)}, headers=prefer.applied())

    @endpoint
    def delete(request: Request, token):
        _mailbox, msg = message_of(state, request, token, "write")
        delete_message(state, msg)
        return Response(status_code=204)

    @endpoint
    async def move(request: Request, token):
        mailbox, msg = message_of(state, request, token, "write")
        data = action_parameters(await request.body(), "move", ("destinationId",))
        if not data.get("destinationId"):
            raise bad_request("ErrorInvalidParameter", "The destinationId parameter is required.")
        target = folder_of(state, mailbox, data["destinationId"])
        move_message(state, msg, target)
        prefer = Prefer(request)
        ctx = RenderContext(None, prefer.immutable, prefer.body_type)
        return odata({"@odata.context": graph_base(request) + f"/$metadata#users('{mailbox.id}')/messages"
                      "/$entity", **render_message(state, msg, ctx)}, status=201, headers=prefer.applied())

    # --- attachments ------------------------------------------------------------------------------
    def attachment_of(request: Request, token):
        mailbox, msg = message_of(state, request, token)
        att = next((a for a in msg.attachments if a.id == request.path_params["attachment"]), None)
        if att is None:
            raise not_found()
        return mailbox, msg, att

    @endpoint
    def list_attachments(request: Request, token):
        mailbox, msg = message_of(state, request, token)
        return odata({"@odata.context": graph_base(request) + f"/$metadata#users('{mailbox.id}')/messages"
                      f"('{request.path_params['message']}')/attachments",
                      "value": [render_attachment(a) for a in msg.attachments]})

    @endpoint
    async def add_attachment(request: Request, token):
        mailbox, msg = message_of(state, request, token, "write")
        data = json_body(await request.body())
        kind = data.get("@odata.type", "#microsoft.graph.fileAttachment").rpartition(".")[2]
        if kind != "fileAttachment" or not data.get("name"):
            raise bad_request("ErrorInvalidParameter", "Post a #microsoft.graph.fileAttachment with a name.")
        try:
            content = base64.b64decode(data.get("contentBytes") or "", validate=True)
        except ValueError:
            raise bad_request("ErrorInvalidParameter", "contentBytes is not valid base64.") from None
        att = make_attachment({"name": data["name"], "content_type": data.get("contentType"), "content": content,
                               "is_inline": data.get("isInline", False), "content_id": data.get("contentId")},
                              state.now())
        msg.attachments.append(att)
        update_message(state, msg, ("hasAttachments",))
        return odata({"@odata.context": graph_base(request) + f"/$metadata#users('{mailbox.id}')/messages"
                      f"('{request.path_params['message']}')/attachments/$entity", **render_attachment(att)},
                     status=201)

    @endpoint
    def get_attachment(request: Request, token):
        mailbox, _msg, att = attachment_of(request, token)
        return odata({"@odata.context": graph_base(request) + f"/$metadata#users('{mailbox.id}')/messages"
                      f"('{request.path_params['message']}')/attachments/$entity", **render_attachment(att)})

    @endpoint
    def attachment_value(request: Request, token):
        _mailbox, _msg, att = attachment_of(request, token)
        if att.kind == "reference":
            return graph_error(405, "notSupported", "Reference attachments have no raw content ($value).")
        media = "message/rfc822" if att.kind == "item" else att.content_type
        return Response(att.content, media_type=media)

    @endpoint
    async def translate_ids(request: Request, token):
        mailbox = mailbox_of(state, request, token)
        data = action_parameters(await request.body(), "translateExchangeIds",
                                 ("inputIds", "sourceIdType", "targetIdType"))
        ids, source, target = data.get("inputIds"), data.get("sourceIdType"), data.get("targetIdType")
        if not isinstance(ids, list) or not ids or len(ids) > 1000:
            raise bad_request("ErrorInvalidParameter", "inputIds must hold 1 to 1000 ids.")
        if source not in ID_TYPES or target not in ID_TYPES:
            raise bad_request("ErrorInvalidParameter", "The sandbox translates restId and restImmutableEntryId.")
        value = []
        for ref in ids:
            msg = find_message(state, mailbox.id, str(ref))
            if msg is None or (msg.id if source == "restId" else msg.immutable_id) != ref:
                value.append({"sourceId": ref, "errorDetails": {"code": "ErrorInvalidIdMalformed",
                                                                "message": "Id is malformed."}})
            else:
                value.append({"sourceId": ref, "targetId": msg.id if target == "restId" else msg.immutable_id})
        return odata({"@odata.context": graph_base(request) + "/$metadata#Collection(microsoft.graph."
                      "convertIdResult)", "value": value})

    graph = []

    def both(path: str, handler, methods=("GET",)):
        graph.append(Route("/v1.0/me" + path, handler, methods=list(methods)))
        graph.append(Route("/v1.0/users/{mailbox}" + path, handler, methods=list(methods)))

    graph.append(Route("/v1.0/me", me, methods=["GET"]))
    graph.append(Route("/v1.0/users/{mailbox}", user, methods=["GET"]))
    both("/mailFolders", folders)
    graph.extend(mail_delta.routes(state, endpoint))
    graph.extend(mail_drafts.routes(state, endpoint))
    for prefix in ("", "/mailFolders/{folder}"):
        both(prefix + "/messages", list_messages)
        graph.extend(mail_send.message_routes(state, endpoint, prefix))
        both(prefix + "/messages/{message}", get_message)
        both(prefix + "/messages/{message}/$value", message_value)
        both(prefix + "/messages/{message}", patch_message, ("PATCH",))
        both(prefix + "/messages/{message}", delete, ("DELETE",))
        both(prefix + "/messages/{message}/move", move, ("POST",))
        both(prefix + "/messages/{message}/attachments", list_attachments)
        both(prefix + "/messages/{message}/attachments", add_attachment, ("POST",))
        both(prefix + "/messages/{message}/attachments/{attachment}", get_attachment)
        both(prefix + "/messages/{message}/attachments/{attachment}/$value", attachment_value)
    both("/mailFolders/{folder}", folder)
    both("/mailFolders/{folder}/childFolders", folders)
    both("/translateExchangeIds", translate_ids, ("POST",))
    graph.extend(mail_send.routes(state, endpoint))
    graph.extend(batch.routes(state))
    graph.append(Route("/v1.0/{rest:path}", unknown_resource,
                       methods=["GET", "POST", "PATCH", "PUT", "DELETE", "HEAD", "OPTIONS"]))
    return graph + control_routes(state) + mail_bounce.control_routes(state)


async def unknown_resource(request: Request) -> Response:
    """Graph's answers for a path no room serves (400 with the first unknown segment), or a known path with a
    method it doesn't take (405), instead of Starlette's plain-text 404/405."""
    client_request_id = request.headers.get("client-request-id")
    for route in request.app.router.routes:
        if route.path != "/v1.0/{rest:path}" and route.matches(request.scope)[0] == Match.PARTIAL:
            return graph_error(405, "BadRequest", f"Unsupported HTTP method '{request.method}' for this resource.",
                               client_request_id=client_request_id)
    segment = request.path_params["rest"].split("/")[-1] or request.path_params["rest"]
    return graph_error(400, "BadRequest", f"Resource not found for the segment '{segment}'.",
                       client_request_id=client_request_id)


WRITABLE_ALWAYS = {"isRead", "categories", "flag", "importance", "inferenceClassification"}
WRITABLE_DRAFT = {"subject", "body", "toRecipients", "ccRecipients", "bccRecipients", "replyTo", "from",
                  "internetMessageHeaders"}


def apply_patch(state: SandboxState, msg, changes: dict) -> list[str]:
    """Apply a message PATCH; the list of changed properties (for the delta log)."""
    changed = []
    for raw_name, value in changes.items():
        if raw_name.startswith("@"):
            # An instance annotation, not a property: Microsoft's SDKs serialise every model with its
            # ``@odata.type``, which Graph takes when it names the entity being patched.
            if raw_name.lower() == "@odata.type" and str(value).lstrip("#").lower() != "microsoft.graph.message":
                raise bad_request("BadRequest", f"The type '{value}' is not compatible with microsoft.graph.message.")
            continue
        name = PROP_BY_LOWER.get(raw_name.lower(), raw_name)
        if name in WRITABLE_DRAFT and not msg.is_draft:
            raise bad_request("ErrorInvalidPropertyUpdateSentMessage",
                              "Update of this property is not allowed for a message that has been sent.")
        if name not in WRITABLE_ALWAYS | WRITABLE_DRAFT:
            raise bad_request("ErrorInvalidProperty", f"The property '{raw_name}' can't be updated.")
        if name == "isRead":
            if not isinstance(value, bool):
                raise bad_request("BadRequest", "isRead must be a boolean.")
            msg.is_read = value
        elif name == "categories":
            msg.categories = [str(c) for c in value or []]
        elif name == "flag":
            msg.flag = dict(value or {"flagStatus": "notFlagged"})
        elif name == "importance":
            msg.importance = str(value).lower()
        elif name == "subject":
            msg.subject = value or ""
        elif name == "body":
            msg.body_content_type = (value or {}).get("contentType", "html").lower()
            msg.body = (value or {}).get("content", "")
        elif name in ("toRecipients", "ccRecipients", "bccRecipients", "replyTo"):
            setattr(msg, {"toRecipients": "to", "ccRecipients": "cc", "bccRecipients": "bcc",
                          "replyTo": "reply_to"}[name], [address(a) for a in value or []])
        elif name == "from":
            msg.from_addr = address(value)
        elif name == "internetMessageHeaders":
            msg.internet_headers = list(value or [])
        changed.append(name)
    return changed


# ------------------------------------------------------------------------------------------------------
# control plane
# ------------------------------------------------------------------------------------------------------

def control_routes(state: SandboxState) -> list:
    def control_error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    def message_by_any_id(ref: str):
        msg = state.messages.get(ref)
        if msg is None:
            msg = next((m for m in state.messages.values() if m.id == ref), None)
        return msg

    async def deliver(request: Request):
        data = await control_json(request)
        attachments = [{"name": a["name"], "content_type": a.get("content_type", "application/octet-stream"),
                        "content": base64.b64decode(a.get("content_b64", "")), "is_inline": a.get("is_inline"),
                        "content_id": a.get("content_id")} for a in data.get("attachments") or []]
        try:
            msg = deliver_inbound(state, data["mailbox"], from_addr=data["from"], subject=data.get("subject", ""),
                                  body_html=data.get("body_html", ""), to=data.get("to"), cc=data.get("cc"),
                                  attachments=attachments, in_reply_to=data.get("in_reply_to"),
                                  internet_message_id=data.get("internet_message_id"), headers=data.get("headers"))
        except KeyError as exc:
            return control_error(400, f"missing or unknown: {exc}")
        return JSONResponse({"id": msg.id, "immutable_id": msg.immutable_id,
                             "internetMessageId": msg.internet_message_id,
                             "conversationId": msg.conversation_id}, status_code=201)

    async def deliver_to_many(request: Request):
        data = await control_json(request)
        mailboxes = data.get("mailboxes")
        if not mailboxes or not isinstance(mailboxes, list) or not data.get("from"):
            return control_error(400, "give mailboxes (a list of ids or UPNs) and from")
        started = time.perf_counter()
        try:
            delivered = deliver_many(state, [str(ref) for ref in mailboxes], from_addr=data["from"],
                                     subject=data.get("subject", ""), body_html=data.get("body_html", ""),
                                     to=data.get("to"), cc=data.get("cc"))
        except KeyError as exc:
            return control_error(404, exc.args[0])
        seconds = time.perf_counter() - started
        value = [{"mailbox": state.users[msg.mailbox_id].upn, "id": msg.id, "immutable_id": msg.immutable_id,
                  "internetMessageId": msg.internet_message_id, "conversationId": msg.conversation_id,
                  "receivedDateTime": iso(msg.received)} for msg in delivered]
        return JSONResponse({"value": value, "delivered_at": delivered[0].received.timestamp(),
                             "seconds": round(seconds, 4)}, status_code=201)

    async def generate(request: Request):
        data = await control_json(request)
        started = time.perf_counter()
        try:
            count = generate_mail(state, data["mailbox"], int(data.get("count", 100)),
                                  days=int(data.get("days", 30)), seed=int(data.get("seed", 0)),
                                  folder=data.get("folder", "inbox"))
        except KeyError as exc:
            return control_error(400, f"missing or unknown: {exc}")
        return JSONResponse({"generated": count, "seconds": round(time.perf_counter() - started, 3)})

    async def move(request: Request):
        data = await control_json(request)
        msg = message_by_any_id(data.get("id", ""))
        if msg is None:
            return control_error(404, "unknown message")
        target = state.folder_by_ref(msg.mailbox_id, data.get("folder", ""))
        if target is None:
            return control_error(404, "unknown folder")
        move_message(state, msg, target)
        return JSONResponse({"id": msg.id, "immutable_id": msg.immutable_id, "folder_id": msg.folder_id})

    async def remove(request: Request):
        data = await control_json(request)
        msg = message_by_any_id(data.get("id", ""))
        if msg is None:
            return control_error(404, "unknown message")
        delete_message(state, msg, permanent=bool(data.get("permanent")))
        return JSONResponse({"deleted": True})

    async def sent(request: Request):
        if request.method == "DELETE":
            state.extra["mail_sent"] = []
            return JSONResponse({"value": []})
        return JSONResponse({"value": state.extra.get("mail_sent", [])})

    async def counts(_request: Request):
        data = state.extra.get("mail_counts") or {"mailboxes": {}, "apps": {}}
        return JSONResponse({"mailboxes": dict(data["mailboxes"]), "apps": dict(data["apps"])})

    async def expire(request: Request):
        data = await control_json(request)
        mode = data.get("mode", "syncStateNotFound")
        if mode not in ("syncStateNotFound", "410"):
            return control_error(400, "mode must be syncStateNotFound or 410")
        mailbox_id = None
        if data.get("mailbox"):
            target = state.users.get(data["mailbox"]) or state.user_by_ref(data["mailbox"])
            if target is None:
                return control_error(404, "unknown mailbox")
            mailbox_id = target.id
        return JSONResponse(mail_delta.expire_tokens(state, mode, mailbox_id))

    return [Route("/control/mail/deliver", deliver, methods=["POST"]),
            Route("/control/mail/deliver-many", deliver_to_many, methods=["POST"]),
            Route("/control/mail/generate", generate, methods=["POST"]),
            Route("/control/mail/move", move, methods=["POST"]),
            Route("/control/mail/delete", remove, methods=["POST"]),
            Route("/control/mail/sent", sent, methods=["GET", "DELETE"]),
            Route("/control/mail/counts", counts, methods=["GET"]),
            Route("/control/mail/delta/expire", expire, methods=["POST"])]
