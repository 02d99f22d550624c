"""Room: Graph change-notification subscriptions for Outlook messages (docs/microsoft-graph.md §0, §2, §7.1, §7.4-7.6).

Graph routes (bearer token required)
------------------------------------
``POST /v1.0/subscriptions``                    create; validation handshake on notificationUrl and
                                                lifecycleNotificationUrl first; 201 + subscription. A ``$filter``
                                                inside ``resource`` is applied when it is ``eq``/``ne`` on isRead,
                                                hasAttachments, isDraft, importance or subject joined by ``and``
                                                (entering the set = created, leaving it = deleted); other filters
                                                are accepted and not applied
``GET /v1.0/subscriptions``                     this app's subscriptions for the signed-in user, paged
                                                (``@odata.nextLink`` with an opaque ``$skiptoken``)
``GET /v1.0/subscriptions/{id}``                200, or 404 ``ResourceNotFound`` (gone, removed, expired, not yours)
``PATCH /v1.0/subscriptions/{id}``              ``expirationDateTime`` and/or ``notificationUrl``; 200 + object;
                                                also reauthorizes (un-pauses); ``lifecycleNotificationUrl`` → 400
``DELETE /v1.0/subscriptions/{id}``             204
``POST /v1.0/subscriptions/{id}/reauthorize``   204, un-pauses delivery

Control routes (JSON, no auth)
------------------------------
``GET  /control/subscriptions``                 every subscription of every app, with ``status``
                                                (active | paused | expired | removed)
``POST /control/subscriptions/expire``          expire all; ``POST /control/subscriptions/{id}/expire``: one
``POST /control/subscriptions/{id}/remove``     send ``subscriptionRemoved`` and remove (PATCH → 404)
``POST /control/subscriptions/{id}/lifecycle``  body ``{"event": "reauthorizationRequired"|"subscriptionRemoved"|
                                                "missed", "pause": true}``: send the event and apply its effect
                                                (reauthorizationRequired pauses delivery unless ``pause`` is false)
``GET  /control/subscriptions/deliveries``      ``{"deliveries": [...], "dropped": [...], "lost_while_paused":
                                                [...], "pending": {...}}``; every POST attempt (validation,
                                                change, lifecycle) with url, attempt, status, latency_ms, outcome
                                                (delivered | failed | timeout), error and payload;
                                                ``?kind=change|lifecycle|validation`` and ``?url=`` filter
``DELETE /control/subscriptions/deliveries``    clear the delivery log
``POST /control/subscriptions/drain``           body ``{"timeout": 10}``: wait until no delivery is queued or in
                                                flight; ``{"drained": true|false}``
``GET  /control/subscriptions/client-bugs``     reauthorize + PATCH on one subscription within 10 minutes
``GET  /control/subscriptions/faults``          the delivery faults and settings in effect
``POST /control/subscriptions/faults``          merge ``{"faults": {...}, "settings": {...}}`` (keys below)

Settings (``state.settings``; defaults in :data:`m365_sandbox.delivery.DEFAULTS`)
-----------------------------------------------------------------------------------
``shared_mailbox_subscriptions``       "documented" (default: 403 ExtensionError for any mailbox other than the
                                       signed-in user's under a delegated token, §0) | "lenient" (accepted with a
                                       ``.Shared`` read scope and Full Access, else 403)
``allow_http_loopback_notification_urls``  false: https only; true: also http on 127.0.0.0/8, ::1, localhost
``validation_timeout_s`` 10            handshake answer deadline (§2.2)
``delivery_timeout_s`` 3               first POST deadline; slower answers count as failures (§2.3)
``delivery_retry_timeout_s`` 10        deadline of retried POSTs
``delivery_backoff_base_s`` 1.0        retry n waits base * 2**(n-1) s (Graph's 4 h window, scaled down)
``delivery_max_attempts`` 8            then the batch is dropped (recorded) and, with
``delivery_send_missed_on_drop`` true, each affected subscription gets a ``missed`` lifecycle event
``delivery_batch_window_s`` 0.2        notifications to one URL within this window share one POST
``notification_ca_bundle`` None        CA file to verify https webhooks; None = no verification (sandbox only)
``client_state_max_length`` 128        (the changeNotification page says 255)
``subscription_patch_revalidates`` true  a PATCHed notificationUrl gets the handshake again (undocumented)
``subscriptions_page_size`` 100        ``GET /subscriptions`` page size
``reauthorize_patch_bug_window_s`` 600 reauthorize + PATCH within this = client bug
``lifecycle_auto_reauthorization`` false  send ``reauthorizationRequired`` reminders before expiry (every half of
                                       the remaining time while > 60 min remain, then every 15 min; no pause)
``lifecycle_token_expiry`` false       ``reauthorizationRequired`` 15 min before the access token that last
                                       authorized the subscription (create, PATCH, reauthorize) expires; once
                                       it has expired, delivery pauses until the next reauthorize or PATCH
``remove_subscriptions_on_session_revoke`` true  [O] ``subscriptionRemoved`` when the creator's password is
                                       changed or reset or the account disabled (at once), or their sessions
                                       were revoked after the last authorization (checked twice a second)
``delivery_throttle_window_s`` 600, ``delivery_throttle_min_samples`` 10, ``delivery_slow_delay_s`` 600
                                       §2.3 slow/drop accounting (with the fault below)

Faults (``state.faults``, or ``POST /control/subscriptions/faults``)
--------------------------------------------------------------------
``delivery_duplicate``            int n (next n notifications) or true (all): each is delivered twice, in two POSTs
``delivery_out_of_order``         true: each batch lists its notifications newest first
``delivery_drop``                 int n: the next n change notifications are silently dropped (recorded)
``delivery_wrong_client_state``   int n: the next n batches carry an extra copy with a forged clientState
``delivery_vary_resource_format`` true: rotate ``Users/{id}/Messages/{mid}``, ``users/{id}@{tid}/messages/{mid}``,
                                  ``Users('{id}')/messages('{mid}')``
``delivery_throttling``           true: "slow" once >10% of answers in the window exceeded the 3 s deadline (new
                                  notifications delayed ``delivery_slow_delay_s``), "drop" once >15% exceeded the
                                  10 s retry timeout (new notifications dropped)

Hooks: the room registers ``state.extra["on_mail_change"]`` (``cb(state, message, change_type)``) and
``state.extra["on_consent_revoked"]`` (``fn(state, tenant_id, client_id)``: every live subscription of that app in
that tenant gets ``reauthorizationRequired`` and is paused) and ``state.extra["on_user_event"]`` (a password
change or reset, or a disabled account: every live subscription the user created gets ``subscriptionRemoved`` at
once; their ids are in the control answer as ``subscriptions_removed``). ``state.reset()`` wipes ``extra``; the
hooks are installed again by the next request to this room.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import functools
import re
import secrets
from urllib.parse import quote_plus, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import delivery, throttle
from .auth import READ_SCOPES_OWN, READ_SCOPES_SHARED, GraphDenied, require_token, resolve_mailbox
from .delivery import graph_datetime, lifecycle_event, live, notify_change, room, setting
from .errors import graph_error
from .state import AccessToken, SandboxState, Subscription, new_guid

MIN_LIFETIME = dt.timedelta(minutes=45)
MAX_LIFETIME_MIN = 10070
CHANGE_TYPES = ("created", "updated", "deleted")
TLS_VERSIONS = ("v1_0", "v1_1", "v1_2", "v1_3")
LIFECYCLE_EVENTS = ("reauthorizationRequired", "subscriptionRemoved", "missed")
SHARED_SETTINGS = ("shared_mailbox_subscriptions", "allow_http_loopback_notification_urls")   # in state.py
SETTING_KEYS = (*delivery.DEFAULTS, *SHARED_SETTINGS)
FORBIDDEN = "Operation: Create; Exception: [Status Code: Forbidden; Reason: Forbidden]"

_RESOURCE = re.compile(
    r"^/?(?:(?P<me>me)|users(?:/(?P<user>[^/()?']+)|\('(?P<user_q>[^']+)'\)))"
    r"(?:/mailfolders(?:/(?P<folder>[^/()?']+)|\('(?P<folder_q>[^']+)'\)))?"
    r"/messages$", re.IGNORECASE)


class Problem(Exception):
    """A Graph error raised inside a handler of this room; :func:`graph_route` renders it."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def graph_route(handler):
    """Install the hooks, apply the Graph fault switches (``state.faults["graph"]``: ``401``/``429``/``503``/
    ``504`` counts, ``retry_after``, ``429_code``, ``latency_ms``, the same as every mail endpoint's, see
    :mod:`m365_sandbox.throttle`) once the token is checked, render :class:`Problem` as Graph's envelope and echo
    ``client-request-id``."""
    @functools.wraps(handler)
    async def wrapper(request: Request, state: SandboxState):
        install_hooks(state)
        client_request_id = request.headers.get("client-request-id")
        require_token(state, request)             # an invalid token is a 401 before any injected fault
        faults = state.faults.get("graph") or {}
        if faults.get("latency_ms"):
            await asyncio.sleep(faults["latency_ms"] / 1000)
        fault = throttle.take_fault(state)
        if fault:
            return throttle.fault_response(*fault, client_request_id, faults.get("429_code"))
        try:
            response = await handler(request, state)
        except Problem as problem:
            return graph_error(problem.status, problem.code, problem.message, client_request_id=client_request_id)
        request_id = new_guid()
        response.headers.setdefault("request-id", request_id)
        response.headers.setdefault("client-request-id", client_request_id or request_id)
        return response
    return wrapper


# --------------------------------------------------------------------------------------------------------
# Hooks
# --------------------------------------------------------------------------------------------------------

def on_mail_change(state: SandboxState, message, change_type: str) -> None:
    notify_change(state, message, change_type)


def on_consent_revoked(state: SandboxState, tenant_id: str, client_id: str) -> None:
    with state.lock:
        now = state.now()
        for sub in list(state.subscriptions.values()):
            if sub.tenant_id == tenant_id and sub.client_id == client_id and live(sub, now):
                lifecycle_event(state, sub, "reauthorizationRequired", pause=True)


# Account state changes after which Outlook removes the subscriptions the user's token created (2019 Graph blog,
# docs/microsoft-graph.md §2.4.1); a revocation of the user's sessions is not one of them.
REMOVING_USER_EVENTS = ("password_changed", "password_reset", "disabled")


def on_user_event(state: SandboxState, user_id: str, event: str) -> dict:
    """``subscriptionRemoved`` for every live subscription ``user_id`` created, to its lifecycle URL if any."""
    if event not in REMOVING_USER_EVENTS or not setting(state, "remove_subscriptions_on_session_revoke"):
        return {}
    removed = []
    with state.lock:
        now = state.now()
        for sub in list(state.subscriptions.values()):
            if sub.creator_id == user_id and live(sub, now):
                lifecycle_event(state, sub, "subscriptionRemoved")
                removed.append(sub.id)
    return {"subscriptions_removed": removed}


def install_hooks(state: SandboxState) -> None:
    with state.lock:
        for key, fn in (("on_mail_change", on_mail_change), ("on_consent_revoked", on_consent_revoked),
                        ("on_user_event", on_user_event)):
            hooks = state.extra.setdefault(key, [])
            if fn not in hooks:
                hooks.append(fn)


# --------------------------------------------------------------------------------------------------------
# Body validation
# --------------------------------------------------------------------------------------------------------

async def json_body(request: Request) -> dict:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise Problem(400, "BadRequest", "Unable to read JSON request payload. Please ensure Content-Type header "
                                         "is set and payload is of valid JSON format.")
    return body


def parse_expiration(state: SandboxState, value) -> dt.datetime:
    """§2.1/§7.5: under 45 minutes → silently now+45 min; over 10,070 minutes → 400 ExtensionError."""
    if not isinstance(value, str) or not value:
        raise Problem(400, "InvalidRequest", "expirationDateTime is required.")
    try:
        text = value.strip()
        text = text[:-1] + "+00:00" if text[-1:] in "Zz" else text
        date_part, sep, rest = text.partition(".")
        if sep:                                   # 7-digit .NET fractions: keep microseconds
            digits = re.match(r"\d*", rest).group(0)
            rest = (digits[:6].ljust(6, "0") if digits else "0") + rest[len(digits):]
        ts = dt.datetime.fromisoformat(date_part + sep + rest)
    except (ValueError, IndexError, AttributeError):
        raise Problem(400, "InvalidRequest", f"Invalid expirationDateTime '{value}'.") from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=dt.timezone.utc)
    now = state.now()
    if ts > now + dt.timedelta(minutes=MAX_LIFETIME_MIN):
        raise Problem(400, "ExtensionError",
                      f"Subscription expiration can only be {MAX_LIFETIME_MIN} minutes in the future.")
    return max(ts, now + MIN_LIFETIME)


def check_url(state: SandboxState, value, field: str, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise Problem(400, "InvalidRequest", f"{field} is required.")
    parts = urlsplit(value)
    if parts.scheme.lower() == "https" and parts.hostname:
        return value
    if (parts.scheme.lower() == "http" and parts.hostname and delivery.is_loopback_host(value)
            and state.settings.get("allow_http_loopback_notification_urls")):
        return value
    raise Problem(400, "ValidationError", f"Subscription validation request failed. {field} must be a valid "
                                          f"https URL: '{value}'.")


def parse_change_type(value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Problem(400, "InvalidRequest", "changeType is required.")
    kinds = [part.strip() for part in value.split(",")]
    if any(kind not in CHANGE_TYPES for kind in kinds) or len(set(kinds)) != len(kinds):
        raise Problem(400, "InvalidRequest", f"Invalid changeType '{value}'. Allowed values: "
                                             "created, updated, deleted (comma-separated).")
    return ",".join(kinds)


def parse_client_state(state: SandboxState, value) -> str | None:
    if value is None:
        return None
    limit = setting(state, "client_state_max_length")
    if not isinstance(value, str) or len(value) > limit:
        raise Problem(400, "InvalidRequest", f"clientState must be a string of at most {limit} characters.")
    return value


def resolve_resource(state: SandboxState, token: AccessToken, resource) -> tuple[str, str | None]:
    """(mailbox id, folder id or None) for ``resource``, enforcing scopes, rights and the §0 policy."""
    if not isinstance(resource, str) or not resource:
        raise Problem(400, "InvalidRequest", "resource is required.")
    match = _RESOURCE.match(resource.split("?", 1)[0].strip())
    if not match:
        raise Problem(400, "ExtensionError", "Operation: Create; Exception: [Status Code: BadRequest; Reason: "
                                             f"The resource '{resource}' is not supported.]")
    mailbox_ref = "me" if match["me"] else (match["user"] or match["user_q"])
    target = state.users.get(token.user_id) if mailbox_ref == "me" else state.user_by_ref(mailbox_ref,
                                                                                         token.tenant_id)
    if target is None:
        raise Problem(404, "ExtensionError", "Operation: Create; Exception: [Status Code: NotFound; Reason: "
                                             "REST API is not yet supported for this mailbox.]")
    own = target.id == token.user_id
    if own and not token.scopes & (READ_SCOPES_OWN | READ_SCOPES_SHARED):
        raise Problem(403, "ExtensionError", FORBIDDEN)
    if not own:
        if state.settings.get("shared_mailbox_subscriptions", "documented") != "lenient":
            raise Problem(403, "ExtensionError", FORBIDDEN)
        try:
            resolve_mailbox(state, token, target.id, need="read")
        except GraphDenied:
            raise Problem(403, "ExtensionError", FORBIDDEN) from None
    folder_ref = match["folder"] or match["folder_q"]
    if folder_ref is None:
        return target.id, None
    folder = state.folder_by_ref(target.id, folder_ref)
    if folder is None:
        raise Problem(404, "ExtensionError", "Operation: Create; Exception: [Status Code: NotFound; Reason: "
                                             f"The folder '{folder_ref}' was not found.]")
    return target.id, folder.id


# --------------------------------------------------------------------------------------------------------
# Validation handshake (§2.2, §7.1)
# --------------------------------------------------------------------------------------------------------

def new_validation_token() -> str:
    """Opaque, with spaces, colons, ``+`` and ``/`` so that only a properly decoded echo matches."""
    return (f"Validation: Testing client application reachability for subscription Request-Id: {new_guid()} "
            f"+{secrets.token_hex(4)}/{secrets.token_hex(4)}")


def dotnet_urlencode(text: str) -> str:
    """``HttpUtility.UrlEncode``: spaces as ``+``, lower-case escapes (``%3a``, ``%2b``, ``%2f``)."""
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote_plus(text, safe=""))


def validate_endpoint(state: SandboxState, url: str) -> str | None:
    """POST the handshake to ``url`` (blocking; run it in a worker thread). None if it passed, else why not."""
    token = new_validation_token()
    target = f"{url}{'&' if urlsplit(url).query else '?'}validationToken={dotnet_urlencode(token)}"
    timeout = float(setting(state, "validation_timeout_s"))
    response, seconds, error = delivery.post_to_receiver(state, target, data=b"",
                                                         content_type="text/plain; charset=utf-8",
                                                         timeout=timeout)
    if error is None and seconds > timeout:
        error = "timeout"
    reason = None
    if error == "timeout":
        reason = f"Notification endpoint did not respond within {timeout:g} seconds."
    elif error:
        reason = f"Notification endpoint could not be reached: {error}."
    elif response.status_code != 200:
        reason = "Notification endpoint must respond with 200 OK to validation request."
    elif response.headers.get("content-type", "").split(";")[0].strip().lower() != "text/plain":
        reason = "Notification endpoint must respond with Content-Type text/plain to validation request."
    elif response.content != token.encode("utf-8"):
        reason = "Response must exactly match validationToken query parameter."
    delivery.record_attempt(state, kind="validation", url=target, attempt=1, response=response,
                            seconds=seconds, error=error or reason,
                            outcome="delivered" if reason is None else ("timeout" if error == "timeout"
                                                                         else "failed"),
                            payload={"validationToken": token})
    return reason


async def handshake(state: SandboxState, urls) -> None:
    for url in urls:
        if url:
            reason = await run_in_threadpool(validate_endpoint, state, url)
            if reason:
                raise Problem(400, "ValidationError", f"Subscription validation request failed. {reason}")


# --------------------------------------------------------------------------------------------------------
# Rendering and look-up
# --------------------------------------------------------------------------------------------------------

def render(request: Request, sub: Subscription, context: bool = True) -> dict:
    body = {}
    if context:
        body["@odata.context"] = f"{graph_root(request)}/$metadata#subscriptions/$entity"
    body.update({
        "id": sub.id, "resource": sub.resource, "applicationId": sub.client_id, "changeType": sub.change_type,
        "clientState": sub.client_state, "notificationUrl": sub.notification_url,
        "notificationQueryOptions": None, "lifecycleNotificationUrl": sub.lifecycle_notification_url,
        "expirationDateTime": graph_datetime(sub.expiration), "creatorId": sub.creator_id,
        "includeResourceData": False, "latestSupportedTlsVersion": sub.latest_supported_tls_version,
        "encryptionCertificate": None, "encryptionCertificateId": None, "notificationUrlAppId": None,
        "notificationContentType": "application/json",
    })
    return body


def graph_root(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/v1.0"


def own_subscription(state: SandboxState, token: AccessToken, sub_id: str) -> Subscription:
    """The caller's live subscription, else 404 (gone, removed, expired, or another app's / user's)."""
    sub = state.subscriptions.get(sub_id)
    if (sub is None or not live(sub, state.now()) or sub.client_id != token.client_id
            or sub.creator_id != token.user_id):
        raise Problem(404, "ResourceNotFound", f"Resource '{sub_id}' does not exist or one of its queried "
                                               "reference-property objects are not present.")
    return sub


def find_duplicate(state: SandboxState, token: AccessToken, change_type: str, resource: str) -> None:
    wanted = (set(change_type.split(",")), resource.strip().lstrip("/").lower())
    for sub in state.subscriptions.values():
        if (live(sub, state.now()) and sub.client_id == token.client_id and sub.creator_id == token.user_id
                and (set(sub.change_type.split(",")), sub.resource.strip().lstrip("/").lower()) == wanted):
            raise Problem(409, "InvalidRequest",
                          f"Subscription Id {sub.id} already exists for the requested combination")


def note_reauthorize_or_patch(state: SandboxState, sub: Subscription, action: str) -> None:
    """§2.4/§7.6: reauthorize **or** PATCH, never both within 10 minutes; record a client bug otherwise."""
    now = state.now()
    other = sub.last_patched_at if action == "reauthorize" else sub.last_reauthorized_at
    window = dt.timedelta(seconds=setting(state, "reauthorize_patch_bug_window_s"))
    if other is not None and now - other < window:
        delivery._append(state, "client_bugs", {
            "subscriptionId": sub.id, "clientId": sub.client_id, "creatorId": sub.creator_id,
            "bug": "reauthorize and PATCH on the same subscription within 10 minutes",
            "actions": ["PATCH", "reauthorize"] if action == "reauthorize" else ["reauthorize", "PATCH"],
            "secondsApart": round((now - other).total_seconds(), 3)})
    if action == "reauthorize":
        sub.last_reauthorized_at = now
    else:
        sub.last_patched_at = now
    sub.paused = False


# --------------------------------------------------------------------------------------------------------
# Graph handlers
# --------------------------------------------------------------------------------------------------------

@graph_route
async def create_subscription(request: Request, state: SandboxState):
    token = require_token(state, request)
    body = await json_body(request)
    change_type = parse_change_type(body.get("changeType"))
    notification_url = check_url(state, body.get("notificationUrl"), "notificationUrl", required=True)
    lifecycle_url = check_url(state, body.get("lifecycleNotificationUrl"), "lifecycleNotificationUrl",
                              required=False)
    client_state = parse_client_state(state, body.get("clientState"))
    tls = body.get("latestSupportedTlsVersion") or "v1_2"
    if tls not in TLS_VERSIONS:
        raise Problem(400, "InvalidRequest", f"Invalid latestSupportedTlsVersion '{tls}'.")
    if body.get("includeResourceData"):
        if not (body.get("encryptionCertificate") and body.get("encryptionCertificateId")):
            raise Problem(400, "InvalidRequest", "encryptionCertificate and encryptionCertificateId are required "
                                                 "when includeResourceData is true.")
        raise Problem(400, "InvalidRequest", "includeResourceData (rich notifications) is not supported by "
                                             "this sandbox.")
    resource = body.get("resource")
    with state.lock:
        expiration = parse_expiration(state, body.get("expirationDateTime"))
        mailbox_id, folder_id = resolve_resource(state, token, resource)
        find_duplicate(state, token, change_type, resource)
    await handshake(state, (notification_url, lifecycle_url))
    immutable = 'idtype="immutableid"' in request.headers.get("prefer", "").replace(" ", "").lower()
    with state.lock:
        find_duplicate(state, token, change_type, resource)     # another create may have won meanwhile
        sub = Subscription(
            id=new_guid(), client_id=token.client_id, tenant_id=token.tenant_id, creator_id=token.user_id,
            resource=resource, change_type=change_type, notification_url=notification_url,
            lifecycle_notification_url=lifecycle_url, expiration=max(expiration, state.now() + MIN_LIFETIME),
            client_state=client_state, immutable_ids=immutable, latest_supported_tls_version=tls,
            mailbox_id=mailbox_id, folder_id=folder_id)
        state.subscriptions[sub.id] = sub
        delivery.note_authorization(state, sub, token)
        delivery.plan_reminder(state, sub)
        headers = {"Location": f"{graph_root(request)}/subscriptions/{sub.id}"}
        if immutable:
            headers["Preference-Applied"] = 'IdType="ImmutableId"'
        return JSONResponse(render(request, sub), status_code=201, headers=headers)


@graph_route
async def list_subscriptions(request: Request, state: SandboxState):
    token = require_token(state, request)
    with state.lock:
        data = room(state)
        skiptoken = request.query_params.get("$skiptoken")
        offset = 0
        if skiptoken is not None:
            saved = data["skiptokens"].get(skiptoken)
            if saved is None or saved[:2] != (token.client_id, token.user_id):
                raise Problem(400, "InvalidRequest", "The $skiptoken is invalid or has expired.")
            offset = saved[2]
        mine = [sub for sub in state.subscriptions.values()
                if live(sub, state.now()) and sub.client_id == token.client_id and sub.creator_id == token.user_id]
        size = int(setting(state, "subscriptions_page_size"))
        page = mine[offset:offset + size]
        body = {"@odata.context": f"{graph_root(request)}/$metadata#subscriptions",
                "value": [render(request, sub, context=False) for sub in page]}
        if offset + size < len(mine):
            next_token = secrets.token_urlsafe(24)
            data["skiptokens"][next_token] = (token.client_id, token.user_id, offset + size)
            body["@odata.nextLink"] = f"{graph_root(request)}/subscriptions?$skiptoken={next_token}"
        return JSONResponse(body)


@graph_route
async def get_subscription(request: Request, state: SandboxState):
    token = require_token(state, request)
    with state.lock:
        return JSONResponse(render(request, own_subscription(state, token, request.path_params["id"])))


@graph_route
async def patch_subscription(request: Request, state: SandboxState):
    token = require_token(state, request)
    sub_id = request.path_params["id"]
    body = await json_body(request)
    if "lifecycleNotificationUrl" in body:
        raise Problem(400, "InvalidRequest", "lifecycleNotificationUrl can only be set when the subscription is "
                                             "created.")
    unknown = set(body) - {"expirationDateTime", "notificationUrl", "@odata.type"}
    if unknown:
        raise Problem(400, "InvalidRequest", f"Only expirationDateTime and notificationUrl can be updated, not "
                                             f"{', '.join(sorted(unknown))}.")
    if "expirationDateTime" not in body and "notificationUrl" not in body:
        raise Problem(400, "InvalidRequest", "expirationDateTime or notificationUrl is required.")
    with state.lock:
        own_subscription(state, token, sub_id)
        expiration = parse_expiration(state, body["expirationDateTime"]) if "expirationDateTime" in body else None
        new_url = (check_url(state, body["notificationUrl"], "notificationUrl", required=True)
                   if "notificationUrl" in body else None)
    if new_url and setting(state, "subscription_patch_revalidates"):
        await handshake(state, (new_url,))
    with state.lock:
        sub = own_subscription(state, token, sub_id)
        if expiration is not None:
            sub.expiration = max(expiration, state.now() + MIN_LIFETIME)
        if new_url:
            sub.notification_url = new_url
        note_reauthorize_or_patch(state, sub, "patch")
        delivery.note_authorization(state, sub, token)
        delivery.plan_reminder(state, sub)
        return JSONResponse(render(request, sub))


@graph_route
async def delete_subscription(request: Request, state: SandboxState):
    token = require_token(state, request)
    with state.lock:
        sub = own_subscription(state, token, request.path_params["id"])
        del state.subscriptions[sub.id]
    return Response(status_code=204)


@graph_route
async def reauthorize_subscription(request: Request, state: SandboxState):
    token = require_token(state, request)
    with state.lock:
        sub = own_subscription(state, token, request.path_params["id"])
        if not token.scopes & (READ_SCOPES_OWN | READ_SCOPES_SHARED):
            raise Problem(403, "ExtensionError", "Operation: Reauthorize; Exception: [Status Code: Forbidden; "
                                                 "Reason: Forbidden]")
        note_reauthorize_or_patch(state, sub, "reauthorize")
        delivery.note_authorization(state, sub, token)
    return Response(status_code=204)


# --------------------------------------------------------------------------------------------------------
# Control handlers
# --------------------------------------------------------------------------------------------------------

def control_route(handler):
    @functools.wraps(handler)
    async def wrapper(request: Request, state: SandboxState):
        install_hooks(state)
        try:
            return await handler(request, state)
        except Problem as problem:
            return JSONResponse({"error": problem.code, "message": problem.message}, status_code=problem.status)
    return wrapper


def control_view(state: SandboxState, sub: Subscription) -> dict:
    now = state.now()
    status = ("removed" if sub.removed else "expired" if sub.expiration <= now
              else "paused" if sub.paused else "active")
    mailbox = state.users.get(sub.mailbox_id or "")
    return {"id": sub.id, "status": status, "applicationId": sub.client_id, "tenantId": sub.tenant_id,
            "creatorId": sub.creator_id, "resource": sub.resource, "mailboxId": sub.mailbox_id,
            "mailbox": mailbox.upn if mailbox else None, "folderId": sub.folder_id,
            "changeType": sub.change_type, "clientState": sub.client_state,
            "notificationUrl": sub.notification_url, "lifecycleNotificationUrl": sub.lifecycle_notification_url,
            "expirationDateTime": graph_datetime(sub.expiration), "immutableIds": sub.immutable_ids,
            "paused": sub.paused, "removed": sub.removed,
            "lastReauthorizedAt": graph_datetime(sub.last_reauthorized_at) if sub.last_reauthorized_at else None,
            "lastPatchedAt": graph_datetime(sub.last_patched_at) if sub.last_patched_at else None}


def control_subscription(state: SandboxState, sub_id: str) -> Subscription:
    sub = state.subscriptions.get(sub_id)
    if sub is None:
        raise Problem(404, "not_found", f"no subscription {sub_id}")
    return sub


async def optional_json(request: Request) -> dict:
    raw = await request.body()
    if not raw.strip():
        return {}
    return await json_body(request)


@control_route
async def control_list(request: Request, state: SandboxState):
    with state.lock:
        return JSONResponse({"subscriptions": [control_view(state, s) for s in state.subscriptions.values()]})


@control_route
async def control_expire(request: Request, state: SandboxState):
    with state.lock:
        sub_id = request.path_params.get("id")
        subs = [control_subscription(state, sub_id)] if sub_id else list(state.subscriptions.values())
        for sub in subs:
            sub.expiration = min(sub.expiration, state.now() - dt.timedelta(seconds=1))
        return JSONResponse({"expired": [sub.id for sub in subs]})


@control_route
async def control_remove(request: Request, state: SandboxState):
    with state.lock:
        sub = control_subscription(state, request.path_params["id"])
        return JSONResponse(lifecycle_event(state, sub, "subscriptionRemoved"))


@control_route
async def control_lifecycle(request: Request, state: SandboxState):
    body = await optional_json(request)
    event = body.get("event")
    if event not in LIFECYCLE_EVENTS:
        raise Problem(400, "invalid_event", f"event must be one of {', '.join(LIFECYCLE_EVENTS)}")
    with state.lock:
        sub = control_subscription(state, request.path_params["id"])
        return JSONResponse(lifecycle_event(state, sub, event, pause=bool(body.get("pause", True))))


@control_route
async def control_deliveries(request: Request, state: SandboxState):
    if request.method == "DELETE":
        with state.lock:
            for key in ("deliveries", "dropped", "lost_while_paused"):
                room(state)[key].clear()
        return Response(status_code=204)
    kind, url = request.query_params.get("kind"), request.query_params.get("url")
    with state.lock:
        data = room(state)
        entries = [e for e in data["deliveries"]
                   if (not kind or e["kind"] == kind) and (not url or e["url"].split("?")[0] == url.split("?")[0])]
        return JSONResponse({"deliveries": entries, "dropped": list(data["dropped"]),
                             "lost_while_paused": list(data["lost_while_paused"]),
                             "pending": delivery.worker_for(state).pending()})


@control_route
async def control_drain(request: Request, state: SandboxState):
    body = await optional_json(request)
    drained = await run_in_threadpool(delivery.worker_for(state).drain, float(body.get("timeout", 10)))
    return JSONResponse({"drained": drained, "pending": delivery.worker_for(state).pending()})


@control_route
async def control_client_bugs(request: Request, state: SandboxState):
    with state.lock:
        return JSONResponse({"client_bugs": list(room(state)["client_bugs"])})


@control_route
async def control_faults(request: Request, state: SandboxState):
    if request.method == "POST":
        body = await optional_json(request)
        faults, settings = body.get("faults") or {}, body.get("settings") or {}
        bad = [k for k in faults if k not in delivery.FAULT_KEYS] + [k for k in settings
                                                                      if k not in SETTING_KEYS]
        if bad:
            raise Problem(400, "unknown_keys", f"unknown keys: {', '.join(bad)}")
        if settings.get("shared_mailbox_subscriptions", "documented") not in ("documented", "lenient"):
            raise Problem(400, "invalid_value", "shared_mailbox_subscriptions is 'documented' or 'lenient'")
        with state.lock:
            state.faults.update(faults)
            state.settings.update(settings)
    with state.lock:
        return JSONResponse({
            "faults": {k: state.faults.get(k) for k in delivery.FAULT_KEYS},
            "settings": {**{k: setting(state, k) for k in delivery.DEFAULTS},
                         **{k: state.settings.get(k) for k in SHARED_SETTINGS}},
        })


def _bind(state: SandboxState, handler):
    async def endpoint(request: Request):
        return await handler(request, state)
    endpoint.__name__ = handler.__name__
    return endpoint


def routes(state: SandboxState):
    install_hooks(state)
    table = [
        ("/v1.0/subscriptions", create_subscription, ["POST"]),
        ("/v1.0/subscriptions", list_subscriptions, ["GET"]),
        ("/v1.0/subscriptions/{id}", get_subscription, ["GET"]),
        ("/v1.0/subscriptions/{id}", patch_subscription, ["PATCH"]),
        ("/v1.0/subscriptions/{id}", delete_subscription, ["DELETE"]),
        ("/v1.0/subscriptions/{id}/reauthorize", reauthorize_subscription, ["POST"]),
        ("/control/subscriptions", control_list, ["GET"]),
        ("/control/subscriptions/expire", control_expire, ["POST"]),
        ("/control/subscriptions/deliveries", control_deliveries, ["GET", "DELETE"]),
        ("/control/subscriptions/drain", control_drain, ["POST"]),
        ("/control/subscriptions/client-bugs", control_client_bugs, ["GET"]),
        ("/control/subscriptions/faults", control_faults, ["GET", "POST"]),
        ("/control/subscriptions/{id}/expire", control_expire, ["POST"]),
        ("/control/subscriptions/{id}/remove", control_remove, ["POST"]),
        ("/control/subscriptions/{id}/lifecycle", control_lifecycle, ["POST"]),
    ]
    return [Route(path, _bind(state, handler), methods=methods) for path, handler, methods in table]
