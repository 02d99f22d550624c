"""A non-interactive "browser" for the sandbox's sign-in pages: plain HTML forms, no JavaScript.

``sign_in(session, auth_uri, username, password)`` follows an authorize or adminconsent URL, fills the sign-in
form (``login``/``passwd``), approves MFA (``mfa=approve``) and answers consent (``consent=accept|cancel``)
until the sandbox redirects to the app's redirect URI; returns ``(final_url, params)``.
"""
from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import parse_qsl, urljoin, urlsplit

import msal
import pytest

from m365_sandbox.seed import CONNECTOR_SCOPES, seed_demo
from m365_sandbox.state import Consent

REDIRECT = "http://127.0.0.1:8069/epilot_outlook/oauth/callback"


class FormParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.action, self.fields, self.buttons, self.error = None, {}, {}, None
        self._in_error = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and self.action is None:
            self.action = a.get("action")
        elif tag == "input" and a.get("name"):
            self.fields[a["name"]] = a.get("value", "")
        elif tag == "button" and a.get("name"):
            self.buttons.setdefault(a["name"], []).append(a.get("value", ""))
        elif a.get("id") == "error":
            self._in_error = True

    def handle_data(self, data):
        if self._in_error:
            self.error = (self.error or "") + data

    def handle_endtag(self, tag):
        self._in_error = False


def parse_page(text: str) -> FormParser:
    parser = FormParser()
    parser.feed(text)
    return parser


def sign_in(session, auth_uri: str, username: str, password: str, consent: str = "accept",
            max_steps: int = 6):
    """Drive the pages; returns ``(redirect_location, params)``; params merge the query and fragment.

    Raises ``AssertionError`` with the page's error text when the sandbox stops on an error page.
    """
    resp = session.get(auth_uri, allow_redirects=False)
    url = auth_uri
    for _ in range(max_steps):
        if resp.status_code in (301, 302, 303):
            location = resp.headers["Location"]
            parts = urlsplit(location)
            return location, {**dict(parse_qsl(parts.query)), **dict(parse_qsl(parts.fragment))}
        page = parse_page(resp.text)
        if page.error:
            raise AssertionError(f"sign-in stopped ({resp.status_code}): {page.error}")
        if page.action is None:
            raise AssertionError(f"stopped on a page without a form ({resp.status_code}): {page.error!r}")
        data = dict(page.fields)
        if "passwd" in data:
            data.update(login=username, passwd=password)
        elif "mfa" in page.buttons:
            data["mfa"] = "approve"
        elif "consent" in page.buttons:
            data["consent"] = consent
        target = urljoin(url, page.action)
        if target.startswith("http://") or "passwd" not in data and "tx" not in data:
            # form_post response: the form posts to the app's redirect URI
            return target, data
        resp = session.post(target, data=data, allow_redirects=False)
        url = target
    raise AssertionError("too many sign-in steps")


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
