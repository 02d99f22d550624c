"""Test helpers for the login app: the page driver (``m365_sandbox.browser``), the demo seed as fixtures, and
MSAL wrappers.

``sign_in(session, auth_uri, username, password)`` follows an authorize or adminconsent URL, fills the sign-in
form (``login``/``passwd``), approves MFA (``mfa=approve``) and answers consent (``consent=accept|cancel``)
until the sandbox redirects to the app's redirect URI; returns ``(final_url, params)``.
"""
from __future__ import annotations

import msal
import pytest

from m365_sandbox.browser import parse_page, sign_in  # noqa: F401 (re-exported for the tests)
from m365_sandbox.seed import CONNECTOR_SCOPES, seed_demo
from m365_sandbox.state import Consent

REDIRECT = "http://127.0.0.1:8069/epilot_outlook/oauth/callback"


# --- MSAL helpers (the demo seed's app and users) --------------------------------------------------

@pytest.fixture
def demo(sandbox):
    return seed_demo(sandbox.state, messages=False)


def grant_consent(state, demo):
    """Admin consent for the connector's scopes, without the pages (test_identity covers those)."""
    state.consents[(demo["tenant_id"], demo["client_id"])] = Consent(
        demo["tenant_id"], demo["client_id"], set(CONNECTOR_SCOPES), state.now())


@pytest.fixture
def consented(sandbox, demo):
    grant_consent(sandbox.state, demo)
    return demo


def make_app(sandbox, demo, secret=None, client_id=None, tenant=None):
    return msal.ConfidentialClientApplication(
        client_id or demo["client_id"], client_credential=secret or demo["client_secret"],
        authority=f"{sandbox.authority_base}/{tenant or demo['tenant_id']}", instance_discovery=False,
        verify=sandbox.ca_path)


def interactive(sandbox, http, demo, app, who="service_account", **flow_kw):
    """Run the auth code flow through the HTML pages; returns (flow, redirect params)."""
    flow = app.initiate_auth_code_flow(CONNECTOR_SCOPES, redirect_uri=REDIRECT, **flow_kw)
    _, params = sign_in(http, flow["auth_uri"], demo[who]["username"], demo[who]["password"])
    return flow, params


def login(sandbox, http, demo, who="service_account"):
    """A full MSAL sign-in; returns (app, result)."""
    app = make_app(sandbox, demo)
    flow, params = interactive(sandbox, http, demo, app, who)
    result = app.acquire_token_by_auth_code_flow(flow, params)
    assert "access_token" in result, result
    return app, result


def refresh(sandbox, demo, rt, scopes=CONNECTOR_SCOPES):
    return make_app(sandbox, demo).acquire_token_by_refresh_token(rt, scopes)


def assert_aad(result, error, code, suberror=None):
    assert result.get("error") == error, result
    assert code in result["error_codes"], result
    assert result["error_description"].startswith(f"AADSTS{code}: "), result
    assert "\r\nTrace ID: " in result["error_description"]
    if suberror:
        assert result.get("suberror") == suberror, result
