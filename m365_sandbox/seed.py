"""Seeding: the ``demo`` profile (Contoso, one app, an admin, a service account, four shared mailboxes) and
explicit seeds from the control API (``POST /control/seed``).

Both return the same kind of summary: ids, the app's client id and secret, and sign-in credentials.
"""
from __future__ import annotations

import secrets

from .state import SandboxState

DEFAULT_REDIRECT_URIS = ["http://127.0.0.1:8069/epilot_outlook/oauth/callback",
                         "http://localhost:8069/epilot_outlook/oauth/callback"]
CONNECTOR_SCOPES = ["User.Read", "Mail.Read.Shared", "Mail.ReadWrite.Shared", "Mail.Send.Shared"]
DEMO_MESSAGES_PER_MAILBOX = 8


def _password() -> str:
    return "Sbx-" + secrets.token_urlsafe(12)


def seed(state: SandboxState, spec: dict) -> dict:
    """Create what ``spec`` describes and return a summary (see README, ``POST /control/seed``).

    ``spec``: ``{"tenant": {"domain", "display_name"?, "id"?},
    "app": {"display_name"?, "client_id"?, "secret"?, "redirect_uris"?, "api_permissions"?},
    "users": [{"upn", "display_name"?, "password"?, "admin"?}],
    "shared_mailboxes": [{"upn", "display_name"?}],
    "permissions": [{"mailbox", "user", "full_access"?, "send_as"?, "send_on_behalf"?}]}``.
    Several tenants: ``{"tenants": [spec, ...]}``.
    """
    if "tenants" in spec:
        results = [seed(state, one) for one in spec["tenants"]]
        return {"tenants": results}
    with state.lock:
        tenant_spec = spec.get("tenant") or {}
        domain = tenant_spec.get("domain", "contoso.onmicrosoft.com")
        tenant = state.tenant_by_ref(domain) or state.add_tenant(
            domain, tenant_spec.get("display_name", domain.split(".")[0].title()), tenant_spec.get("id"))
        result: dict = {"tenant_id": tenant.id, "tenant_domain": tenant.domain, "users": {},
                        "shared_mailboxes": {}}
        if "app" in spec:
            app_spec = spec["app"] or {}
            app = state.add_app(tenant.id, app_spec.get("display_name", "Epilot Outlook (sandbox)"),
                                app_spec.get("redirect_uris", DEFAULT_REDIRECT_URIS),
                                client_id=app_spec.get("client_id"), secret=app_spec.get("secret"))
            app.api_permissions = list(app_spec.get("api_permissions", CONNECTOR_SCOPES))
            result.update(client_id=app.client_id, client_secret=app.secrets[0],
                          redirect_uris=app.redirect_uris)
        for user_spec in spec.get("users", []):
            password = user_spec.get("password") or _password()
            user = state.add_user(tenant.id, user_spec["upn"], user_spec.get("display_name", user_spec["upn"]),
                                  password=password, is_tenant_admin=bool(user_spec.get("admin")))
            result["users"][user.upn] = {"id": user.id, "password": password, "admin": user.is_tenant_admin}
        for box_spec in spec.get("shared_mailboxes", []):
            box = state.add_user(tenant.id, box_spec["upn"], box_spec.get("display_name", box_spec["upn"]),
                                 kind="shared")
            result["shared_mailboxes"][box.upn] = {"id": box.id}
        for perm in spec.get("permissions", []):
            grant(state, perm, tenant.id)
        return result


MAX_MAILBOXES = 100_000


class AlreadyExists(ValueError):
    """A name :func:`create_mailboxes` was to give is taken (409)."""


def create_mailboxes(state: SandboxState, spec: dict) -> dict:
    """``POST /control/mailboxes``: ``count`` shared mailboxes ``{prefix}{n}@{domain}``, n from ``start`` (1),
    zero-padded to the width of the last, each with ``grant``'s rights for one user (as many
    ``POST /control/permissions`` would give). All or nothing.

    ``spec``: ``{"prefix", "count", "start"?, "domain"? (default: the only tenant's), "display_name"? ("{n}" is
    the number), "grant"?: {"user", "full_access"?, "send_as"?, "send_on_behalf"?}}``.
    Returns ``{"tenant_id", "tenant_domain", "addresses": [upn, ...], "shared_mailboxes": {upn: {"id"}}}``.

    :raise ValueError: a bad count or prefix; :class:`AlreadyExists` for a name taken; KeyError for an unknown
        tenant or user.
    """
    prefix, count, start = str(spec.get("prefix") or ""), spec.get("count"), spec.get("start", 1)
    if not isinstance(count, int) or not isinstance(start, int) or not 0 < count <= MAX_MAILBOXES or start < 0:
        raise ValueError(f"count must be an integer from 1 to {MAX_MAILBOXES:,}, start one from 0")
    if not prefix or "@" in prefix:
        raise ValueError("prefix must be the part before the number, without @")
    with state.lock:
        if spec.get("domain"):
            tenant = state.tenant_by_ref(spec["domain"])
        else:
            tenant = next(iter(state.tenants.values())) if len(state.tenants) == 1 else None
        if tenant is None:
            raise KeyError(f"unknown tenant {spec.get('domain')!r} (give the domain when there are several)")
        width = len(str(start + count - 1))
        numbers = range(start, start + count)
        upns = [f"{prefix}{n:0{width}d}@{tenant.domain}".lower() for n in numbers]
        taken = [upn for upn in upns if state.user_by_ref(upn, tenant.id)]
        if taken:
            raise AlreadyExists(f"{len(taken)} already exist: {', '.join(taken[:3])}")
        rights = spec.get("grant")
        if rights and state.user_by_ref(str(rights.get("user", "")), tenant.id) is None:
            raise KeyError(f"unknown user {rights.get('user')!r}")
        label = str(spec.get("display_name") or "Shared Mailbox {n}")
        result = seed(state, {
            "tenant": {"domain": tenant.domain},
            "shared_mailboxes": [{"upn": upn, "display_name": label.replace("{n}", str(n))}
                                 for upn, n in zip(upns, numbers)],
            "permissions": [{**rights, "mailbox": upn} for upn in upns] if rights else []})
    return {"tenant_id": tenant.id, "tenant_domain": tenant.domain, "addresses": upns,
            "shared_mailboxes": result["shared_mailboxes"]}


def grant(state: SandboxState, perm: dict, tenant_id: str | None = None):
    """Apply ``{"mailbox", "user", "full_access"?, "send_as"?, "send_on_behalf"?}`` (ids or UPNs)."""
    mailbox = state.user_by_ref(perm["mailbox"], tenant_id=tenant_id)
    user = state.user_by_ref(perm["user"], tenant_id=tenant_id)
    if mailbox is None or user is None:
        raise KeyError(f"unknown mailbox or user: {perm.get('mailbox')!r}, {perm.get('user')!r}")
    return state.grant(mailbox.id, user.id, full_access=bool(perm.get("full_access")),
                       send_as=bool(perm.get("send_as")), send_on_behalf=bool(perm.get("send_on_behalf")))


DEMO_DOMAIN = "contoso.onmicrosoft.com"
DEMO_MAILBOXES = [("support", "Contoso Support"), ("billing", "Contoso Billing"), ("sales", "Contoso Sales"),
                  ("hr", "Contoso HR")]


def seed_demo(state: SandboxState, redirect_uris: list[str] | None = None, messages: bool = True) -> dict:
    """The demo tenant (see README). Returns ids, client id/secret and credentials."""
    svc = f"svc-helpdesk@{DEMO_DOMAIN}"
    full = {"full_access": True, "send_as": True}
    seed(state, {
        "tenant": {"domain": DEMO_DOMAIN, "display_name": "Contoso"},
        "app": {"display_name": "Epilot Outlook (sandbox)", "redirect_uris": redirect_uris or DEFAULT_REDIRECT_URIS},
        "users": [{"upn": f"admin@{DEMO_DOMAIN}", "display_name": "Contoso Admin", "admin": True},
                  {"upn": svc, "display_name": "Helpdesk Service Account"}],
        "shared_mailboxes": [{"upn": f"{name}@{DEMO_DOMAIN}", "display_name": label}
                             for name, label in DEMO_MAILBOXES],
        "permissions": [{"mailbox": f"support@{DEMO_DOMAIN}", "user": svc, **full},
                        {"mailbox": f"billing@{DEMO_DOMAIN}", "user": svc, **full},
                        {"mailbox": f"sales@{DEMO_DOMAIN}", "user": svc, "send_on_behalf": True}],
    })
    result = demo_summary(state)
    result["demo_messages"] = generate_demo_mail(state, list(result["shared_mailboxes"])) if messages else 0
    return result


def demo_summary(state: SandboxState, redirect_uris: list[str] | None = None) -> dict | None:
    """The demo seed's summary, read back from ``state`` (e.g. after loading a state file); None if absent.

    ``redirect_uris`` given: they are added to the demo app when missing.
    """
    with state.lock:
        tenant = state.tenant_by_ref(DEMO_DOMAIN)
        app = next((a for a in state.apps.values() if tenant and a.tenant_id == tenant.id), None)
        if tenant is None or app is None or not app.secrets:
            return None
        for uri in redirect_uris or []:
            if uri not in app.redirect_uris:
                app.redirect_uris.append(uri)

        def account(upn):
            user = state.user_by_ref(upn, tenant_id=tenant.id)
            return {"username": user.upn, "password": user.password, "id": user.id} if user else None

        users = [u for u in state.users.values() if u.tenant_id == tenant.id]
        return {
            "tenant_id": tenant.id, "tenant_domain": tenant.domain, "client_id": app.client_id,
            "client_secret": app.secrets[0], "redirect_uris": list(app.redirect_uris),
            "users": {u.upn: {"id": u.id, "password": u.password, "admin": u.is_tenant_admin}
                      for u in users if u.kind == "user"},
            "shared_mailboxes": {u.upn: {"id": u.id} for u in users if u.kind == "shared"},
            "admin": account(f"admin@{DEMO_DOMAIN}"),
            "service_account": account(f"svc-helpdesk@{DEMO_DOMAIN}"),
        }


def generate_demo_mail(state: SandboxState, mailboxes: list[str]) -> int:
    """Fill the demo mailboxes with the mail room's generator ``graph_mail.generate_mail(state, mailbox,
    count, seed=)``; 0 messages when that room has none (yet)."""
    from . import graph_mail
    generator = getattr(graph_mail, "generate_mail", None)
    if generator is None:
        return 0
    return sum(int(generator(state, upn, DEMO_MESSAGES_PER_MAILBOX, seed=i) or 0)
               for i, upn in enumerate(mailboxes))
