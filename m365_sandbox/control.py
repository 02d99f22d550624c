"""Room: control. The sandbox's own JSON API under ``/control`` on the graph app (no auth; loopback only).

Every endpoint is listed in ``m365_sandbox/README.md``. Users are named by object id or UPN, tenants by id or
domain. Errors: ``{"error": "<text>"}`` with 400 (bad body) or 404 (unknown id).
"""
from __future__ import annotations

import json
from functools import partial

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from . import seed as seeding
from .state import SandboxState, iso, new_opaque

CONSENT_EVENTS = "consent_revoked_events"   # list of {"tenant_id", "client_id", "at"}
CONSENT_HOOKS = "on_consent_revoked"        # callables fn(state, tenant_id, client_id), e.g. subscriptions.py
USER_HOOKS = "on_user_event"                # callables fn(state, user_id, event): "disabled", "enabled",
                                            # "password_reset", "password_changed", "sessions_revoked"; a hook
                                            # may return a dict, merged into the answer (subscriptions.py)


class ControlError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


async def body_of(request: Request) -> dict:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ControlError(400, f"invalid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ControlError(400, "the body must be a JSON object")
    return data


def user_of(state: SandboxState, ref: str):
    user = state.users.get(ref) or state.user_by_ref(ref)
    if user is None:
        raise ControlError(404, f"unknown user {ref!r}")
    return user


# ------------------------------------------------------------------------------------------------------
# Handlers: (state, request, body) -> JSON-able dict
# ------------------------------------------------------------------------------------------------------

def reset(state: SandboxState, _request, _body) -> dict:
    with state.lock:
        urls = state.extra.get("urls")
        state.reset()
        if urls:
            state.extra["urls"] = urls
    return {"reset": True}


def seed(state: SandboxState, _request, body) -> dict:
    try:
        if body.get("profile") == "demo":
            return seeding.seed_demo(state, body.get("redirect_uris"), messages=body.get("messages", True))
        if body.get("profile"):
            raise ControlError(400, f"unknown profile {body['profile']!r} (known: demo)")
        return seeding.seed(state, body)
    except KeyError as exc:
        raise ControlError(400, f"missing or unknown: {exc}") from exc


def summary(state: SandboxState, _request, _body) -> dict:
    with state.lock:
        return {
            "now": iso(state.now()), "clock_offset_seconds": state.clock_offset.total_seconds(),
            "tenants": [{"id": t.id, "domain": t.domain, "display_name": t.display_name}
                        for t in state.tenants.values()],
            "apps": [{"client_id": a.client_id, "tenant_id": a.tenant_id, "display_name": a.display_name,
                      "redirect_uris": a.redirect_uris, "api_permissions": a.api_permissions,
                      "secrets": len(a.secrets), "expired_secrets": len(a.expired_secrets)}
                     for a in state.apps.values()],
            "users": [{"id": u.id, "tenant_id": u.tenant_id, "upn": u.upn, "display_name": u.display_name,
                       "kind": u.kind, "admin": u.is_tenant_admin, "disabled": u.disabled,
                       "mfa_required": u.mfa_required, "mfa_enrollment_required": u.mfa_enrollment_required,
                       "ca_blocked": u.ca_blocked,
                       "sessions_valid_from": iso(u.sessions_valid_from) if u.sessions_valid_from else None}
                      for u in state.users.values()],
            "permissions": [{"mailbox": state.users[p.mailbox_id].upn, "user": state.users[p.user_id].upn,
                             "full_access": p.full_access, "send_as": p.send_as,
                             "send_on_behalf": p.send_on_behalf}
                            for p in state.permissions if p.mailbox_id in state.users and p.user_id in state.users],
            "consents": [{"tenant_id": c.tenant_id, "client_id": c.client_id, "scopes": sorted(c.scopes),
                          "granted_at": iso(c.granted_at)} for c in state.consents.values()],
            "counts": {"messages": len(state.messages), "folders": len(state.folders),
                       "auth_codes": len(state.auth_codes), "access_tokens": len(state.access_tokens),
                       "refresh_tokens": len(state.refresh_tokens), "subscriptions": len(state.subscriptions),
                       "token_requests": dict(state.extra.get("token_requests", {}))},
            "consent_revoked_events": list(state.extra.get(CONSENT_EVENTS, [])),
            "settings": state.settings, "faults": state.faults,
        }


def advance_clock(state: SandboxState, _request, body) -> dict:
    try:
        seconds = float(body.get("seconds", 0)) + float(body.get("days", 0)) * 86400
    except (TypeError, ValueError) as exc:
        raise ControlError(400, "seconds and days must be numbers") from exc
    state.advance_clock(seconds)
    return {"now": iso(state.now()), "clock_offset_seconds": state.clock_offset.total_seconds()}


def revoke_consent(state: SandboxState, request, body) -> dict:
    """Drop the tenant's consent (one app, or every app); access tokens live on until ``exp`` (§1.7)."""
    tenant = state.tenant_by_ref(request.path_params["tid"])
    if tenant is None:
        raise ControlError(404, f"unknown tenant {request.path_params['tid']!r}")
    with state.lock:
        keys = [k for k in state.consents if k[0] == tenant.id
                and (not body.get("client_id") or k[1] == body["client_id"])]
        for key in keys:
            del state.consents[key]
            state.extra.setdefault(CONSENT_EVENTS, []).append(
                {"tenant_id": key[0], "client_id": key[1], "at": iso(state.now())})
        hooks = list(state.extra.get(CONSENT_HOOKS, []))
    for _tenant_id, client_id in keys:
        for hook in hooks:
            hook(state, tenant.id, client_id)
    return {"revoked": [k[1] for k in keys]}


def user_event(state: SandboxState, user_id: str, event: str) -> dict:
    """Run the ``on_user_event`` hooks; what they return (dicts) is merged into the control answer."""
    merged: dict = {}
    for hook in list(state.extra.get(USER_HOOKS, [])):
        merged.update(hook(state, user_id, event) or {})
    return merged


def _set_user_flag(attr: str, body_key: str | None, value: bool | None = None, event: str | None = None):
    def handler(state: SandboxState, request, body) -> dict:
        user = user_of(state, request.path_params["uid"])
        with state.lock:
            setattr(user, attr, bool(body.get(body_key, True)) if body_key else value)
            if attr == "mfa_required" and "enrollment_required" in body:
                user.mfa_enrollment_required = bool(body["enrollment_required"])
        result = {"id": user.id, "upn": user.upn, attr: getattr(user, attr)}
        if event:
            result.update(user_event(state, user.id, event))
        return result
    return handler


def _revoke_sessions(reason: str):
    """Refresh tokens issued before now stop working: 50173 after a password reset, 70008 after a revoke.

    ``reset-password`` is an admin's reset in the Entra or Microsoft 365 admin center, which revokes the refresh
    tokens of confidential clients too (docs/microsoft-graph.md §1.7)."""
    def handler(state: SandboxState, request, body) -> dict:
        user = user_of(state, request.path_params["uid"])
        with state.lock:
            user.sessions_valid_from = state.now()
            state.extra.setdefault("sessions_revoked_reason", {})[user.id] = reason
            result = {"id": user.id, "upn": user.upn, "sessions_valid_from": iso(user.sessions_valid_from)}
            if reason == "password_reset":
                user.password = body.get("password") or "Sbx-" + new_opaque("", 9)
                result["password"] = user.password
        result.update(user_event(state, user.id,
                                 "password_reset" if reason == "password_reset" else "sessions_revoked"))
        return result
    return handler


def change_password(state: SandboxState, request, body) -> dict:
    """The user changes their own password (or resets it themselves, SSPR).

    Outlook removes the subscriptions the user's token created (``subscriptionRemoved``, by the hook of
    subscriptions.py); the refresh tokens of confidential clients stay valid, as Microsoft's revocation table
    says (the sandbox's clients are all confidential), and so do access tokens (docs/microsoft-graph.md §2.4.1).
    """
    user = user_of(state, request.path_params["uid"])
    with state.lock:
        user.password = body.get("password") or "Sbx-" + new_opaque("", 9)
        result = {"id": user.id, "upn": user.upn, "password": user.password}
    result.update(user_event(state, user.id, "password_changed"))
    return result


def expire_secret(state: SandboxState, request, _body) -> dict:
    app = state.apps.get(request.path_params["client_id"])
    if app is None:
        raise ControlError(404, f"unknown app {request.path_params['client_id']!r}")
    with state.lock:
        app.expired_secrets.extend(app.secrets)
        count, app.secrets = len(app.secrets), []
    return {"client_id": app.client_id, "expired": count}


def add_secret(state: SandboxState, request, body) -> dict:
    app = state.apps.get(request.path_params["client_id"])
    if app is None:
        raise ControlError(404, f"unknown app {request.path_params['client_id']!r}")
    secret = body.get("secret") or new_opaque("sbx~", 24)
    with state.lock:
        app.secrets.append(secret)
    return {"client_id": app.client_id, "client_secret": secret}


def set_permission(state: SandboxState, _request, body) -> dict:
    try:
        perm = seeding.grant(state, body)
    except KeyError as exc:
        raise ControlError(404 if body.get("mailbox") and body.get("user") else 400, str(exc)) from exc
    return {"mailbox": state.users[perm.mailbox_id].upn, "user": state.users[perm.user_id].upn,
            "full_access": perm.full_access, "send_as": perm.send_as, "send_on_behalf": perm.send_on_behalf}


def create_mailboxes(state: SandboxState, _request, body) -> dict:
    """``count`` shared mailboxes with one user's rights, in one call (see ``seed.create_mailboxes``)."""
    try:
        return seeding.create_mailboxes(state, body)
    except seeding.AlreadyExists as exc:
        raise ControlError(409, str(exc)) from exc
    except ValueError as exc:
        raise ControlError(400, str(exc)) from exc
    except KeyError as exc:
        raise ControlError(404, exc.args[0]) from exc


def _merge(attr: str):
    """Merge the body into ``state.settings`` or ``state.faults``; a ``null`` value removes the key."""
    def handler(state: SandboxState, request, body) -> dict:
        target = getattr(state, attr)
        with state.lock:
            if request.method == "POST":
                for key, value in body.items():
                    if value is None:
                        target.pop(key, None)
                    else:
                        target[key] = value
            return dict(target)
    return handler


# ------------------------------------------------------------------------------------------------------
# Routing
# ------------------------------------------------------------------------------------------------------

TABLE = [
    ("/control/reset", reset, ["POST"]),
    ("/control/seed", seed, ["POST"]),
    ("/control/state", summary, ["GET"]),
    ("/control/clock/advance", advance_clock, ["POST"]),
    ("/control/tenants/{tid}/consent/revoke", revoke_consent, ["POST"]),
    ("/control/users/{uid}/disable", _set_user_flag("disabled", None, True, "disabled"), ["POST"]),
    ("/control/users/{uid}/enable", _set_user_flag("disabled", None, False, "enabled"), ["POST"]),
    ("/control/users/{uid}/reset-password", _revoke_sessions("password_reset"), ["POST"]),
    ("/control/users/{uid}/change-password", change_password, ["POST"]),
    ("/control/users/{uid}/revoke-sessions", _revoke_sessions("revoke_sessions"), ["POST"]),
    ("/control/users/{uid}/mfa", _set_user_flag("mfa_required", "required"), ["POST"]),
    ("/control/users/{uid}/conditional-access", _set_user_flag("ca_blocked", "blocked"), ["POST"]),
    ("/control/apps/{client_id}/secret/expire", expire_secret, ["POST"]),
    ("/control/apps/{client_id}/secrets", add_secret, ["POST"]),
    ("/control/permissions", set_permission, ["POST"]),
    ("/control/mailboxes", create_mailboxes, ["POST"]),
    ("/control/settings", _merge("settings"), ["GET", "POST"]),
    ("/control/faults", _merge("faults"), ["GET", "POST"]),
]


CREATED = {create_mailboxes}     # handlers answering 201


async def _endpoint(state: SandboxState, handler, request: Request):
    try:
        body = await body_of(request) if request.method == "POST" else {}
        return JSONResponse(handler(state, request, body), status_code=201 if handler in CREATED else 200)
    except ControlError as exc:
        return JSONResponse({"error": exc.message}, status_code=exc.status)


def routes(state: SandboxState):
    return [Route(path, partial(_endpoint, state, handler), methods=methods) for path, handler, methods in TABLE]

