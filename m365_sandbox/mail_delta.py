"""Delta query on a mail folder: ``GET …/mailFolders/{f}/messages/delta`` or ``…/delta()`` (contract §3.2, §7.3).

Query options are read only on the first request and sealed into the signed ``$skiptoken``/``$deltatoken``;
a link with options re-added is a 400. The initial sync walks the folder by (receivedDateTime, id), so moves and
deletes during the walk neither skip nor break it; later rounds read the folder's append-only change log
(``state.extra["mail_delta_log"]``) and collapse it per message: created (full item), updated (id + changed
properties + new etag), removed (``@removed: {reason: deleted}``, also for a move out of the folder).
A filtered sync (``receivedDateTime ge|gt``) returns at most 5,000 messages. Each response has either a
nextLink or a deltaLink. Switches: ``delta_replays``, ``empty_pages``, ``delta_delay_s`` (0: changes younger
than this stay out of a round until a later one); ``expire_tokens`` (control plane).
"""
from __future__ import annotations

import bisect

from starlette.requests import Request
from starlette.routing import Route

from .auth import GraphDenied, resolve_mailbox
from .errors import graph_error
from .mail_paging import (Filter, Prefer, bad_request, link, parse_expand, parse_select, parse_top, query_once,
                          sign, unsign)
from .mail_store import RENDERERS, RenderContext, etag, render_message, sorted_messages
from .state import SandboxState
from .throttle import odata

FILTER_CAP = 5000
DELTA_OPTIONS = {"$select", "$filter", "$top", "$orderby", "$expand"}
TYPE = "#microsoft.graph.message"


def _ascending(state: SandboxState, mailbox_id: str, folder_id: str) -> tuple[list, list]:
    """The folder's messages oldest first and their (timestamp, immutable id) keys; cached per version."""
    cache = state.extra.setdefault("mail_delta_cache", {})
    newest_first = sorted_messages(state, mailbox_id, folder_id)
    hit = cache.get(folder_id)
    if hit is not None and hit[0] is newest_first:
        return hit[1], hit[2]
    msgs = newest_first[::-1]
    keys = [(m.received.timestamp(), m.immutable_id) for m in msgs]
    cache[folder_id] = (newest_first, msgs, keys)
    return msgs, keys


def _next_issue(state: SandboxState) -> int:
    state.extra["mail_delta_issued"] = state.extra.get("mail_delta_issued", 0) + 1
    return state.extra["mail_delta_issued"]


def expire_tokens(state: SandboxState, mode: str, mailbox_id: str | None = None) -> dict:
    """Every delta token issued so far (for ``mailbox_id`` or all mailboxes) fails with ``mode`` next time."""
    with state.lock:
        cutoff = state.extra.get("mail_delta_issued", 0)
        state.extra.setdefault("mail_delta_expired", {})[mailbox_id or "*"] = (cutoff, mode)
    return {"expired_up_to": cutoff, "mode": mode, "mailbox": mailbox_id}


def _expired(state: SandboxState, saved: dict) -> str | None:
    marks = state.extra.get("mail_delta_expired", {})
    for key in (saved["mb"], "*"):
        if key in marks and saved["iat"] <= marks[key][0]:
            return marks[key][1]
    return None


def _visible_end(state: SandboxState, log: list) -> int:
    """How much of the log a new round sees: changes younger than ``delta_delay_s`` show up later."""
    end, delay = len(log), state.settings.get("delta_delay_s", 0)
    if delay:
        cutoff = state.now().timestamp() - delay
        while end > 0 and log[end - 1][3] > cutoff:
            end -= 1
    return end


def _collapse(log: list, start: int, end: int) -> list[tuple]:
    """Changes in ``log[start:end]`` folded per message, in order of each message's last change."""
    merged: dict = {}
    for kind, imm, props, _ts in log[start:end]:
        prev = merged.pop(imm, None)
        if kind == "updated" and prev and prev[0] in ("created", "updated"):
            kind, props = prev[0], tuple(dict.fromkeys(prev[1] + props)) if prev[0] == "updated" else ()
        elif kind == "removed" and prev and prev[0] == "removed":
            props = prev[1]
        elif kind == "created" and prev and prev[0] == "removed":
            merged[(imm, prev[1])] = prev        # moved out and back: the old id goes, the new id comes
        merged[imm] = (kind, props)
    return [(key[0] if isinstance(key, tuple) else key, kind, props) for key, (kind, props) in merged.items()]


def routes(state: SandboxState, endpoint) -> list:
    @endpoint
    def delta(request: Request, token):
        mailbox = resolve_mailbox(state, token, request.path_params.get("mailbox", "me"), "read")
        folder = state.folder_by_ref(mailbox.id, request.path_params["folder"])
        if folder is None:
            raise GraphDenied(graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store."))
        params = query_once(request)
        prefer = Prefer(request)
        path_base = f"{request.url.scheme}://{request.url.netloc}{request.url.path}"
        sealed = params.get("$skiptoken") or params.get("$deltatoken")
        if sealed:
            if params.get("$skiptoken") and params.get("$deltatoken"):
                raise bad_request("ErrorInvalidUrlQuery", "Use either $skiptoken or $deltatoken.")
            extra = set(params) - {"$skiptoken", "$deltatoken"}
            if extra:
                raise bad_request("ErrorInvalidUrlQuery", "Query options go only on the first delta request; "
                                  f"follow the link verbatim (found {', '.join(sorted(extra))}).")
            saved = unsign(state, sealed, "delta")
            if saved["mb"] != mailbox.id or saved["f"] != folder.id:
                raise bad_request("ErrorInvalidUrlQuery", "The delta token belongs to another folder.")
            mode = _expired(state, saved)
            if mode == "410":
                fresh = [(k, v) for k, v in (("$select", saved["sel"]), ("$filter", saved["flt"]),
                                             ("changeType", saved["ct"])) if v]
                return graph_error(410, "resyncRequired", "Resync required. Replace any local cached copy with "
                                   "a full synchronization.", headers={"Location": link(path_base, fresh)
                                                                        if fresh else path_base})
            if mode:
                return graph_error(400, "syncStateNotFound", "The sync state generation was not found. "
                                   "Start a full synchronization.")
        else:
            unsupported = {k for k in params if k.startswith("$")} - DELTA_OPTIONS
            if unsupported:
                raise bad_request("ErrorInvalidUrlQuery", f"{', '.join(sorted(unsupported))} is not supported "
                                  "on a message delta query.")
            if params.get("$orderby") and " ".join(params["$orderby"].split()).lower() != "receiveddatetime desc":
                raise bad_request("ErrorInvalidUrlQuery", "Only $orderby=receivedDateTime desc is supported.")
            change_type = params.get("changeType")
            if change_type and change_type not in ("created", "updated", "deleted"):
                raise bad_request("ErrorInvalidUrlQuery", "changeType must be created, updated or deleted.")
            Filter(params.get("$filter"), delta=True)
            parse_select(params.get("$select"))
            parse_expand(params.get("$expand"))
            saved = {"k": "delta", "mb": mailbox.id, "f": folder.id, "sel": params.get("$select"),
                     "exp": params.get("$expand"),
                     "flt": params.get("$filter"), "ct": change_type, "top": parse_top(params.get("$top")),
                     "ph": "init", "after": None, "e": False}
        page_size = prefer.maxpagesize or saved["top"]
        page_size = max(1, min(page_size, 1000))
        select = parse_select(saved["sel"])
        flt = Filter(saved["flt"], delta=True)
        ctx = RenderContext(select, prefer.immutable, prefer.body_type, parse_expand(saved.get("exp")))
        replays = state.settings.get("delta_replays", True)
        log = state.extra.setdefault("mail_delta_log", {}).setdefault(folder.id, [])
        with state.lock:
            if saved["ph"] == "init":
                value, saved = _initial_page(state, mailbox.id, folder.id, saved, flt, ctx, page_size, replays,
                                             bool(params.get("$skiptoken")), len(log))
            elif saved["ph"] == "wait":
                saved = {**saved, "ph": "changes", "start": saved["from"], "end": _visible_end(state, log),
                         "pos": 0}
                value, saved = _change_page(state, log, saved, flt, ctx, page_size, replays)
            else:
                value, saved = _change_page(state, log, saved, flt, ctx, page_size, replays)
            saved["iat"] = _next_issue(state)
        body = {"@odata.context": f"{request.url.scheme}://{request.url.netloc}/v1.0/$metadata#Collection(message)",
                "value": value}
        if saved["ph"] == "wait":
            body["@odata.deltaLink"] = link(path_base, [("$deltatoken", sign(state, saved))], "$")
        else:
            body["@odata.nextLink"] = link(path_base, [("$skiptoken", sign(state, saved))], "$")
        return odata(body, headers=prefer.applied(prefer.maxpagesize))

    # ``delta`` is an OData function: Graph takes it with or without the call's parentheses, and Microsoft's
    # SDKs (Kiota request builders) send ``delta()``.
    return [Route(prefix + "/mailFolders/{folder}/messages/" + name, delta, methods=["GET"])
            for prefix in ("/v1.0/me", "/v1.0/users/{mailbox}") for name in ("delta", "delta()")]


def _initial_page(state, mailbox_id, folder_id, saved, flt, ctx, page_size, replays, continuation, log_len):
    """One page of the initial sync; ``saved`` moves on (or to ``wait`` with the log position it started at)."""
    if saved.get("base") is None:
        saved = {**saved, "base": log_len}
    msgs, keys = _ascending(state, mailbox_id, folder_id)
    if saved.get("lo") is None:
        lo = 0
        bound = flt.received_bound()
        if bound:
            ts, inclusive = bound
            lo = bisect.bisect_left(keys, (ts,)) if inclusive else bisect.bisect_right(keys, (ts, "\uffff"))
            lo = max(lo, len(keys) - FILTER_CAP)
        saved = {**saved, "lo": list(keys[lo]) if lo < len(keys) else None,
                 "hi": list(keys[-1]) if keys else None, "e": saved.get("e", False)}
        if saved["lo"] is None:
            return [], {**saved, "ph": "wait", "from": saved["base"]}
    if continuation and not saved["e"] and state.settings.get("empty_pages", True):
        return [], {**saved, "e": True}
    start = bisect.bisect_left(keys, tuple(saved["lo"]))
    if saved["after"] is not None:
        start = max(start, bisect.bisect_right(keys, tuple(saved["after"])))
    stop = bisect.bisect_right(keys, tuple(saved["hi"]))
    page = msgs[start:min(stop, start + page_size)]
    if saved["ct"] in ("updated", "deleted"):
        value = []
    else:
        value = [{"@odata.type": TYPE, **render_message(state, m, ctx)} for m in page]
    if start + len(page) >= stop:
        return value, {**saved, "ph": "wait", "from": saved["base"]}
    anchor = page[-2] if replays and len(page) >= 2 else page[-1]
    return value, {**saved, "after": [anchor.received.timestamp(), anchor.immutable_id]}


def _change_page(state, log, saved, flt, ctx, page_size, replays):
    changes = _collapse(log, saved["start"], saved["end"])
    pos = saved["pos"]
    chunk = changes[pos:pos + page_size]
    value = []
    for imm, kind, props in chunk:
        msg = state.messages.get(imm)
        present = kind != "removed" and msg is not None and msg.folder_id == saved["f"]
        if kind == "removed" or not present:
            if saved["ct"] in (None, "deleted"):
                old_id = props[0] if props else (msg.id if msg else imm)
                value.append({"@odata.type": TYPE, "id": imm if ctx.immutable else old_id,
                              "@removed": {"reason": "deleted"}})
            continue
        if flt and not flt(msg):
            continue
        if kind == "created" and saved["ct"] in (None, "created"):
            value.append({"@odata.type": TYPE, **render_message(state, msg, ctx)})
        elif kind == "updated" and saved["ct"] in (None, "updated"):
            wanted = [p for p in props if ctx.select is None or p in ctx.select]
            item = {"@odata.type": TYPE, "@odata.etag": etag(msg), "id": ctx.msg_id(msg)}
            item.update(render_message(state, msg, ctx, [(p, RENDERERS[p]) for p in wanted if p in RENDERERS]))
            value.append(item)
    end = pos + len(chunk)
    if end >= len(changes):
        return value, {**saved, "ph": "wait", "from": saved["end"]}
    back = 1 if replays and len(chunk) >= 2 else 0
    return value, {**saved, "pos": end - back}
