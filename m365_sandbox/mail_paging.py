"""Query options of message lists and delta: ``$select``, ``$filter``, ``$orderby``, ``$top``, the
``Prefer`` header, and opaque, HMAC-signed ``$skiptoken``/``$deltatoken`` values (contract §3.1, §3.2, §7.2);
request bodies: JSON objects and OData action parameters (:func:`action_parameters`).
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
import urllib.parse

from starlette.requests import Request

from .auth import GraphDenied
from .errors import graph_error
from .mail_store import PROP_BY_LOWER, has_attachments
from .state import SandboxState


def bad_request(code: str, message: str) -> GraphDenied:
    return GraphDenied(graph_error(400, code, message))


# ------------------------------------------------------------------------------------------------------
# opaque tokens
# ------------------------------------------------------------------------------------------------------

def _secret(state: SandboxState) -> bytes:
    return state.extra.setdefault("mail_token_secret", secrets.token_bytes(32))


def sign(state: SandboxState, payload: dict) -> str:
    raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    mac = hmac.new(_secret(state), raw, hashlib.sha256).digest()[:18]
    return (base64.urlsafe_b64encode(raw).rstrip(b"=") + b"." + base64.urlsafe_b64encode(mac)).decode()


def unsign(state: SandboxState, token: str, kind: str) -> dict:
    """The payload of a token this sandbox issued, or 400 for anything forged, altered or foreign."""
    try:
        raw_b64, mac_b64 = token.split(".")
        raw = base64.urlsafe_b64decode(raw_b64 + "=" * (-len(raw_b64) % 4))
        good = hmac.new(_secret(state), raw, hashlib.sha256).digest()[:18]
        if not hmac.compare_digest(good, base64.urlsafe_b64decode(mac_b64)):
            raise ValueError("bad mac")
        payload = json.loads(raw)
        if payload.get("k") != kind:
            raise ValueError("wrong kind")
        return payload
    except (ValueError, TypeError, UnicodeDecodeError):
        raise bad_request("ErrorInvalidUrlQuery", "The skip token or delta token is invalid. Use the "
                          "@odata.nextLink or @odata.deltaLink exactly as returned.") from None


def json_body(raw: bytes) -> dict:
    """A JSON object request body, or 400 ``BadRequest``."""
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise bad_request("BadRequest", "Unable to read JSON request payload.")
    return data


async def control_json(request) -> dict:
    """A control route's JSON object body; anything else reads as ``{}`` (the route says what is missing)."""
    try:
        data = await request.json()
    except ValueError:
        data = None
    return data if isinstance(data, dict) else {}


def action_parameters(raw: bytes, action: str, declared: tuple[str, ...]) -> dict:
    """The parameters of a POST to the OData action ``action`` (``sendMail``, ``reply``, ``move``, …), under the
    ``declared`` spelling whatever the letter case they came in, as Graph takes them: learn.microsoft.com writes
    them camelCase (``saveToSentItems``, ``destinationId``), Graph's metadata and so Microsoft's SDKs PascalCase
    (``SaveToSentItems``, ``DestinationId``) [O: microsoft-graph-docs PR #2086, "Both destinationId and
    DestinationId work"]. Only the top level: the values (a ``message``, an ``AttachmentItem``) are resources
    with their own property names. Instance annotations (``@odata.type``, ``DestinationId@odata.type``) are not
    parameters and are dropped; an empty body has no parameters.

    A name the action does not declare, or a parameter given twice, is a 400 ``RequestBodyRead`` with the
    message of Microsoft's OData reader (the contract is silent; Graph rejects a payload it cannot bind rather
    than ignore part of it)."""
    by_lower = {name.lower(): name for name in declared}
    params: dict = {}
    for key, value in (json_body(raw) if raw.strip() else {}).items():
        if "@" in key:
            continue
        name = by_lower.get(key.lower())
        if name is None:
            raise bad_request("RequestBodyRead", f"The parameter '{key}' in the request payload is not a valid "
                              f"parameter for the operation '{action}'.")
        if name in params:
            raise bad_request("RequestBodyRead", f"Multiple parameters with the name '{key}' were found in the "
                              "request payload.")
        params[name] = value
    return params


def link(base: str, params: list[tuple[str, str]], safe: str = ",") -> str:
    """A paging link; Graph spells list links ``?%24skip=…`` and delta links ``?$deltatoken=…``."""
    return base + "?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote, safe=safe)


def query_once(request: Request) -> dict:
    """Query parameters; a parameter that appears twice (re-added to a link) is a 400."""
    seen: dict = {}
    for key, value in request.query_params.multi_items():
        if key in seen:
            raise bad_request("ErrorInvalidUrlQuery", f"The query parameter '{key}' is specified more than once.")
        seen[key] = value
    return seen


# ------------------------------------------------------------------------------------------------------
# Prefer
# ------------------------------------------------------------------------------------------------------

class Prefer:
    def __init__(self, request: Request):
        text = ",".join(request.headers.getlist("prefer"))
        self.immutable = bool(re.search(r'IdType\s*=\s*"?ImmutableId"?', text, re.I))
        body = re.search(r'outlook\.body-content-type\s*=\s*"?(text|html)"?', text, re.I)
        self.body_type = body.group(1).lower() if body else None
        size = re.search(r"odata\.maxpagesize\s*=\s*(\d+)", text, re.I)
        self.maxpagesize = int(size.group(1)) if size else None

    def applied(self, maxpagesize: int | None = None) -> dict:
        parts = []
        if self.body_type:
            parts.append(f'outlook.body-content-type="{self.body_type}"')
        if self.immutable:
            parts.append('IdType="ImmutableId"')
        if maxpagesize:
            parts.append(f"odata.maxpagesize={maxpagesize}")
        return {"Preference-Applied": ", ".join(parts)} if parts else {}


# ------------------------------------------------------------------------------------------------------
# $select, $filter, $orderby, $top
# ------------------------------------------------------------------------------------------------------

def parse_select(text: str | None, by_lower: dict = PROP_BY_LOWER, entity: str = "message") -> tuple | None:
    """``$select`` as the properties' own spelling (``by_lower``: lower-case name -> name, a message's by default)."""
    if not text:
        return None
    props = []
    for name in (p.strip() for p in text.split(",")):
        prop = by_lower.get(name.lower())
        if prop is None:
            raise bad_request("RequestBroker--ParseUri",
                              f"Could not find a property named '{name}' on type 'microsoft.graph.{entity}'.")
        if prop not in props:
            props.append(prop)
    return tuple(props)


def parse_expand(text: str | None) -> bool:
    """``$expand``: only ``attachments`` is supported."""
    if not text:
        return False
    if text.strip().lower() != "attachments":
        raise bad_request("RequestBroker--ParseUri", f"Could not find a navigation property named '{text}' on "
                          "type 'microsoft.graph.message'.")
    return True


def parse_top(text: str | None, default: int = 10) -> int:
    if text is None:
        return default
    try:
        top = int(text)
    except ValueError:
        raise bad_request("BadRequest", f"Invalid $top value '{text}'.") from None
    if not 1 <= top <= 1000:
        raise bad_request("ErrorInvalidUrlQuery", "The value of $top must be between 1 and 1000.")
    return top


def parse_datetime(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.strip().strip("'").replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


_CLAUSE = re.compile(r"^\s*(\w+)\s+(eq|ne|ge|gt|le|lt)\s+(.+?)\s*$", re.I)
_DATE_PROPS = {"receiveddatetime": "received", "sentdatetime": "sent", "lastmodifieddatetime": "modified",
               "createddatetime": "created"}
_BOOL_PROPS = {"isread": lambda m: m.is_read, "isdraft": lambda m: m.is_draft, "hasattachments": has_attachments}
_STR_PROPS = {"importance": lambda m: m.importance, "conversationid": lambda m: m.conversation_id,
              "internetmessageid": lambda m: m.internet_message_id, "subject": lambda m: m.subject}
_OPS = {"eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "ge": lambda a, b: a >= b,
        "gt": lambda a, b: a > b, "le": lambda a, b: a <= b, "lt": lambda a, b: a < b}
INVALID_FILTER = ("ErrorInvalidUrlQueryFilter", "The query filter contains one or more invalid nodes.")


class Filter:
    """``$filter``: ``and``-joined comparisons on a few message properties.

    ``delta=True`` accepts only ``receivedDateTime ge|gt <iso>`` (contract §3.2).
    """

    def __init__(self, text: str | None, delta: bool = False):
        self.text, self.clauses, self.props = text, [], []
        if not text:
            return
        for part in re.split(r"\s+and\s+", text.strip(), flags=re.I):
            match = _CLAUSE.match(part)
            if not match:
                raise bad_request(*INVALID_FILTER)
            prop, op, raw = match.group(1).lower(), match.group(2).lower(), match.group(3)
            if delta and not (prop == "receiveddatetime" and op in ("ge", "gt")):
                raise bad_request(*INVALID_FILTER)
            try:
                if prop in _DATE_PROPS:
                    attr, value = _DATE_PROPS[prop], parse_datetime(raw)
                    getter = (lambda a: lambda m: getattr(m, a) or m.received)(attr)
                elif prop in _BOOL_PROPS and op in ("eq", "ne") and raw.lower() in ("true", "false"):
                    getter, value = _BOOL_PROPS[prop], raw.lower() == "true"
                elif prop in _STR_PROPS and op in ("eq", "ne") and raw.startswith("'") and raw.endswith("'"):
                    getter, value = _STR_PROPS[prop], raw[1:-1].replace("''", "'")
                else:
                    raise ValueError(prop)
            except ValueError:
                raise bad_request(*INVALID_FILTER) from None
            self.clauses.append((getter, _OPS[op], value, prop, op))
            self.props.append(prop)

    def __bool__(self) -> bool:
        return bool(self.clauses)

    def __call__(self, msg) -> bool:
        return all(op(getter(msg), value) for getter, op, value, _p, _o in self.clauses)

    def received_bound(self) -> tuple[float, bool] | None:
        """For delta: (timestamp, inclusive) of ``receivedDateTime ge|gt``."""
        for _g, _op, value, prop, op in self.clauses:
            if prop == "receiveddatetime":
                return value.timestamp(), op == "ge"
        return None


_SORTABLE = {"receiveddatetime": "received", "sentdatetime": "sent", "createddatetime": "created",
             "lastmodifieddatetime": "modified", "subject": "subject", "importance": "importance"}


def parse_orderby(text: str | None, flt: Filter) -> list[tuple[str, bool]]:
    """``$orderby`` as [(attribute, descending)], with Outlook's InefficientFilter rule (contract §3.1)."""
    if not text:
        return []
    order, names = [], []
    for part in text.split(","):
        bits = part.split()
        if not bits or len(bits) > 2 or bits[0].lower() not in _SORTABLE or (
                len(bits) == 2 and bits[1].lower() not in ("asc", "desc")):
            raise bad_request("BadRequest", f"Invalid $orderby expression '{text}'.")
        names.append(bits[0].lower())
        order.append((_SORTABLE[bits[0].lower()], len(bits) == 2 and bits[1].lower() == "desc"))
    if flt and flt.props[:len(names)] != names:
        raise bad_request("InefficientFilter", "The restriction or sort order is too complex for this operation.")
    return order
