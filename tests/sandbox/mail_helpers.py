"""Seeding helpers for the Graph mail tests: a tenant, an app, a service account and a shared mailbox."""
from __future__ import annotations

from types import SimpleNamespace

DELEGATED = {"User.Read", "Mail.Read.Shared", "Mail.ReadWrite.Shared", "Mail.Send.Shared"}


def seed(state, *, full_access=True, send_as=False, send_on_behalf=False, scopes=DELEGATED):
    tenant = state.add_tenant("contoso.onmicrosoft.com")
    app = state.add_app(tenant.id, "Odoo connector", ["https://odoo.example.com/callback"])
    service = state.add_user(tenant.id, "svc-odoo@contoso.onmicrosoft.com", "Odoo Service", password="pw")
    shared = state.add_user(tenant.id, "support@contoso.onmicrosoft.com", "Support Team", kind="shared")
    other = state.add_user(tenant.id, "billing@contoso.onmicrosoft.com", "Billing", kind="shared")
    state.grant(shared.id, service.id, full_access=full_access, send_as=send_as, send_on_behalf=send_on_behalf)
    access, _refresh = state.issue_tokens(app.client_id, service.id, set(scopes))
    return SimpleNamespace(tenant=tenant, app=app, service=service, shared=shared, other=other, token=access.token,
                           auth={"Authorization": f"Bearer {access.token}"})


def url(sandbox, path: str) -> str:
    return sandbox.graph_base + path


def page_through(http, sandbox, first_url, headers, limit=10000):
    """Follow nextLinks verbatim; returns (items, pages)."""
    items, pages, link = [], 0, first_url
    while link and pages < limit:
        resp = http.get(link, headers=headers)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        items.extend(body["value"])
        pages += 1
        link = body.get("@odata.nextLink")
    return items, pages


def delta_round(http, first_url, headers):
    """One full delta round: (items, deltaLink, pages)."""
    items, pages, link = [], 0, first_url
    while True:
        resp = http.get(link, headers=headers)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert ("@odata.nextLink" in body) != ("@odata.deltaLink" in body)
        items.extend(body["value"])
        pages += 1
        if "@odata.deltaLink" in body:
            return items, body["@odata.deltaLink"], pages
        link = body["@odata.nextLink"]
