"""The login app (identity platform v2.0, docs/microsoft-graph.md §1), proven with MSAL Python itself."""
import base64
import datetime as dt
import json
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import msal
import pytest
import requests

from m365_sandbox.seed import CONNECTOR_SCOPES

from signin import (REDIRECT, assert_aad, consented, demo, interactive, login, make_app,  # noqa: F401 (fixtures)
                    parse_page, refresh, sign_in)


# --- discovery ------------------------------------------------------------------------------------

def test_discovery_for_guid_domain_and_meta_tenants(sandbox, http, demo):
    tid = demo["tenant_id"]
    for ref, seg in ((tid, tid), ("contoso.onmicrosoft.com", tid), ("organizations", "organizations"),
                     ("common", "common")):
        doc = http.get(f"{sandbox.authority_base}/{ref}/v2.0/.well-known/openid-configuration").json()
        assert urlsplit(doc["token_endpoint"]).path == f"/{seg}/oauth2/v2.0/token"
        assert doc["authorization_endpoint"].endswith(f"/{seg}/oauth2/v2.0/authorize")
        assert doc["subject_types_supported"] == ["pairwise"]
        assert "client_secret_post" in doc["token_endpoint_auth_methods_supported"]
    doc = http.get(f"{sandbox.authority_base}/{tid}/v2.0/.well-known/openid-configuration").json()
    assert doc["issuer"] == f"{sandbox.authority_base}/{tid}/v2.0"
    keys = http.get(doc["jwks_uri"]).json()["keys"]
    assert keys[0]["kty"] == "RSA" and keys[0]["kid"]


def test_unknown_tenant_is_aadsts90002_and_msal_refuses_it(sandbox, http, demo):
    resp = http.get(f"{sandbox.authority_base}/nowhere.onmicrosoft.com/v2.0/.well-known/openid-configuration")
    assert resp.status_code == 400
    assert resp.json()["error_codes"] == [90002]
    with pytest.raises(ValueError, match="Unable to get authority configuration"):
        make_app(sandbox, demo, tenant="nowhere.onmicrosoft.com")


# --- the happy path with MSAL ---------------------------------------------------------------------

def test_msal_auth_code_flow_silent_and_refresh(sandbox, http, consented):
    demo = consented
    app, result = login(sandbox, http, demo)
    assert result["token_type"] == "Bearer"
    assert set(CONNECTOR_SCOPES) <= set(result["scope"].split())
    assert result["expires_in"] > 3000 and result["ext_expires_in"] > 3000
    claims = result["id_token_claims"]
    assert claims["aud"] == demo["client_id"] and claims["tid"] == demo["tenant_id"]
    assert claims["oid"] == demo["service_account"]["id"]
    assert claims["preferred_username"] == demo["service_account"]["username"]
    assert claims["ver"] == "2.0" and claims["iss"].endswith(f"/{demo['tenant_id']}/v2.0")
    client_info = json.loads(base64.urlsafe_b64decode(result["client_info"] + "=="))
    assert client_info == {"uid": demo["service_account"]["id"], "utid": demo["tenant_id"]}
    # the scope echo lets MSAL's cache hit: a silent call returns the same access token
    accounts = app.get_accounts()
    assert [a["username"] for a in accounts] == [demo["service_account"]["username"]]
    cached = app.acquire_token_silent(CONNECTOR_SCOPES, account=accounts[0])
    assert cached["access_token"] == result["access_token"]
    assert cached["token_source"] == "cache"
    forced = app.acquire_token_silent(CONNECTOR_SCOPES, account=accounts[0], force_refresh=True)
    assert forced["access_token"] != result["access_token"]
    assert forced["token_source"] == "identity_provider"
    via_rt = app.acquire_token_by_refresh_token(result["refresh_token"], CONNECTOR_SCOPES)
    assert via_rt["refresh_token"] != result["refresh_token"]
    assert sandbox.state.access_tokens[via_rt["access_token"]].scopes == set(CONNECTOR_SCOPES)


def test_id_token_is_rs256_signed_with_the_published_key(sandbox, http, consented):
    _, result = login(sandbox, http, consented)
    doc = http.get(f"{sandbox.authority_base}/{consented['tenant_id']}/v2.0/.well-known/openid-configuration"
                   ).json()
    jwk = http.get(doc["jwks_uri"]).json()["keys"][0]
    assert jwt.get_unverified_header(result["id_token"])["kid"] == jwk["kid"]
    claims = jwt.decode(result["id_token"], jwt.PyJWK(jwk).key, algorithms=["RS256"],
                        audience=consented["client_id"], issuer=doc["issuer"])
    assert claims["nonce"] and claims["exp"] - claims["iat"] == 3600


def test_refresh_rotates_and_the_old_token_stays_valid(sandbox, http, consented):
    _, first = login(sandbox, http, consented)
    second = refresh(sandbox, consented, first["refresh_token"])
    third = refresh(sandbox, consented, first["refresh_token"])
    fourth = refresh(sandbox, consented, second["refresh_token"])
    tokens = {first["refresh_token"], second["refresh_token"], third["refresh_token"], fourth["refresh_token"]}
    assert len(tokens) == 4
    assert all("access_token" in r for r in (second, third, fourth))


def authorize_url(sandbox, demo, scope, **extra):
    query = urlencode({"client_id": demo["client_id"], "response_type": "code", "redirect_uri": REDIRECT,
                       "scope": scope, **extra})
    return f"{sandbox.authority_base}/{demo['tenant_id']}/oauth2/v2.0/authorize?{query}"


def test_refresh_token_and_id_token_only_with_offline_access_and_openid(sandbox, http, consented):
    _, params = sign_in(http, authorize_url(sandbox, consented, "https://graph.microsoft.com/Mail.Read.Shared"),
                        consented["service_account"]["username"], consented["service_account"]["password"])
    resp = token_post(sandbox, http, consented, {
        "client_id": consented["client_id"], "client_secret": consented["client_secret"],
        "grant_type": "authorization_code", "code": params["code"], "redirect_uri": REDIRECT})
    body = resp.json()
    assert resp.status_code == 200 and body["scope"] == "Mail.Read.Shared"
    assert "refresh_token" not in body and "id_token" not in body and "client_info" not in body


def test_client_secret_by_http_basic(sandbox, http, consented):
    _, result = login(sandbox, http, consented)
    resp = http.post(f"{sandbox.authority_base}/{consented['tenant_id']}/oauth2/v2.0/token",
                     auth=(consented["client_id"], consented["client_secret"]),
                     data={"grant_type": "refresh_token", "refresh_token": result["refresh_token"],
                           "scope": "https://graph.microsoft.com/Mail.Read.Shared offline_access"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["scope"] == "Mail.Read.Shared offline_access"


def test_form_post_response_mode(sandbox, http, consented):
    app = make_app(sandbox, consented)
    flow = app.initiate_auth_code_flow(CONNECTOR_SCOPES, redirect_uri=REDIRECT, response_mode="form_post")
    target, fields = sign_in(http, flow["auth_uri"], consented["service_account"]["username"],
                             consented["service_account"]["password"])
    assert target == REDIRECT and fields["code"] and fields["state"] == flow["state"]
    assert "access_token" in app.acquire_token_by_auth_code_flow(flow, fields)


def test_prompt_none_without_a_session_is_login_required(sandbox, http, consented):
    app = make_app(sandbox, consented)
    flow = app.initiate_auth_code_flow(CONNECTOR_SCOPES, redirect_uri=REDIRECT, prompt="none")
    resp = http.get(flow["auth_uri"], allow_redirects=False)
    params = parse_qs(urlsplit(resp.headers["Location"]).query)
    assert params["error"] == ["login_required"] and params["state"] == [flow["state"]]


# --- admin consent -------------------------------------------------------------------------------

def admin_consent_url(sandbox, demo, tenant=None, scope=None, redirect=REDIRECT):
    query = urlencode({"client_id": demo["client_id"], "redirect_uri": redirect, "state": "xyz",
                       "scope": scope or " ".join("https://graph.microsoft.com/" + s for s in CONNECTOR_SCOPES)})
    return f"{sandbox.authority_base}/{tenant or demo['tenant_domain']}/v2.0/adminconsent?{query}"


def test_admin_consent_accept_records_short_scopes(sandbox, http, demo):
    location, params = sign_in(http, admin_consent_url(sandbox, demo), demo["admin"]["username"],
                               demo["admin"]["password"])
    assert location.startswith(REDIRECT + "?admin_consent=True")
    assert params["tenant"] == demo["tenant_id"] and params["state"] == "xyz"
    assert set(params["scope"].split()) == {"https://graph.microsoft.com/" + s for s in CONNECTOR_SCOPES}
    consent = sandbox.state.consents[(demo["tenant_id"], demo["client_id"])]
    assert consent.scopes == set(CONNECTOR_SCOPES)
    # and now the service account signs in without any consent prompt
    _, result = login(sandbox, http, demo)
    assert result["refresh_token"]


def test_admin_consent_dot_default_means_the_apps_configured_scopes(sandbox, http, demo):
    url = admin_consent_url(sandbox, demo, tenant="organizations", scope="https://graph.microsoft.com/.default")
    _, params = sign_in(http, url, demo["admin"]["username"], demo["admin"]["password"])
    assert params["admin_consent"] == "True" and params["tenant"] == demo["tenant_id"]
    assert sandbox.state.consents[(demo["tenant_id"], demo["client_id"])].scopes == set(CONNECTOR_SCOPES)


def test_admin_consent_cancel_is_access_denied_65004(sandbox, http, demo):
    resp = http.get(admin_consent_url(sandbox, demo))
    assert "Sign in" in resp.text
    _, params = sign_in(http, admin_consent_url(sandbox, demo), demo["admin"]["username"],
                        demo["admin"]["password"], consent="cancel")
    assert params["admin_consent"] == "True" and params["error"] == "access_denied"
    assert params["error_description"].startswith("AADSTS65004:")
    assert (demo["tenant_id"], demo["client_id"]) not in sandbox.state.consents
    sandbox.state.settings["admin_consent_cancel_error"] = "consent_required"
    _, params = sign_in(http, admin_consent_url(sandbox, demo), demo["admin"]["username"],
                        demo["admin"]["password"], consent="cancel")
    assert params["error"] == "consent_required" and params["error_description"].startswith("AADSTS65004:")


def test_admin_consent_by_a_non_admin_is_consent_required_90094(sandbox, http, demo):
    _, params = sign_in(http, admin_consent_url(sandbox, demo), demo["service_account"]["username"],
                        demo["service_account"]["password"])
    assert params["error"] == "consent_required" and params["admin_consent"] == "True"
    assert params["error_description"].startswith("AADSTS90094:")


def test_admin_consent_refuses_common_and_foreign_redirect_uris(sandbox, http, demo):
    resp = http.get(admin_consent_url(sandbox, demo, tenant="common"), allow_redirects=False)
    assert resp.status_code == 400 and "Location" not in resp.headers
    resp = http.get(admin_consent_url(sandbox, demo, redirect="https://evil.example/cb"), allow_redirects=False)
    assert resp.status_code == 400 and "AADSTS50011" in resp.text and "Location" not in resp.headers


# --- consent at /authorize ---------------------------------------------------------------------------

def test_no_consent_non_admin_gets_consent_required_65001(sandbox, http, demo):
    app = make_app(sandbox, demo)
    flow, params = interactive(sandbox, http, demo, app)
    assert params["error"] == "consent_required"
    result = app.acquire_token_by_auth_code_flow(flow, params)
    assert result["error"] == "consent_required" and result["error_description"].startswith("AADSTS65001:")


def test_no_consent_admin_consents_at_authorize(sandbox, http, demo):
    app = make_app(sandbox, demo)
    flow, params = interactive(sandbox, http, demo, app, who="admin")
    assert "code" in params
    assert "access_token" in app.acquire_token_by_auth_code_flow(flow, params)
    assert sandbox.state.consents[(demo["tenant_id"], demo["client_id"])].scopes == set(CONNECTOR_SCOPES)


def test_authorize_reply_url_mismatch_is_an_error_page(sandbox, http, consented):
    app = make_app(sandbox, consented)
    flow = app.initiate_auth_code_flow(CONNECTOR_SCOPES, redirect_uri="http://127.0.0.1:9999/cb")
    resp = http.get(flow["auth_uri"], allow_redirects=False)
    assert resp.status_code == 400 and "AADSTS50011" in parse_page(resp.text).error


def test_wrong_password_shows_the_form_again(sandbox, http, consented):
    app = make_app(sandbox, consented)
    flow = app.initiate_auth_code_flow(CONNECTOR_SCOPES, redirect_uri=REDIRECT)
    with pytest.raises(AssertionError, match="AADSTS50126"):
        sign_in(http, flow["auth_uri"], consented["service_account"]["username"], "wrong")


# --- code redemption errors --------------------------------------------------------------------------

def test_pkce_mismatch_is_501481(sandbox, http, consented):
    app = make_app(sandbox, consented)
    flow, params = interactive(sandbox, http, consented, app)
    flow["code_verifier"] = "x" * 43
    assert_aad(app.acquire_token_by_auth_code_flow(flow, params), "invalid_grant", 501481)


def test_plain_pkce_is_accepted(sandbox, http, consented):
    verifier = "plain-verifier-" + "v" * 30
    _, params = sign_in(http, authorize_url(sandbox, consented, "Mail.Read.Shared offline_access",
                                            code_challenge=verifier),
                        consented["service_account"]["username"], consented["service_account"]["password"])
    resp = token_post(sandbox, http, consented, {
        "client_id": consented["client_id"], "client_secret": consented["client_secret"],
        "grant_type": "authorization_code", "code": params["code"], "redirect_uri": REDIRECT,
        "code_verifier": verifier})
    assert resp.status_code == 200, resp.text
    assert resp.json()["refresh_token"]


def test_code_reuse_is_54005(sandbox, http, consented):
    app = make_app(sandbox, consented)
    flow, params = interactive(sandbox, http, consented, app)
    assert "access_token" in app.acquire_token_by_auth_code_flow(dict(flow), params)
    assert_aad(app.acquire_token_by_auth_code_flow(dict(flow), params), "invalid_grant", 54005)


def test_code_expires_after_ten_minutes(sandbox, http, consented):
    app = make_app(sandbox, consented)
    flow, params = interactive(sandbox, http, consented, app)
    sandbox.state.advance_clock(601)
    assert_aad(app.acquire_token_by_auth_code_flow(flow, params), "invalid_grant", 70008)


# --- client authentication ---------------------------------------------------------------------------

def token_post(sandbox, http, demo, data, **kw):
    return http.post(f"{sandbox.authority_base}/{demo['tenant_id']}/oauth2/v2.0/token", data=data, **kw)


def test_bad_client_secret_is_7000215(sandbox, http, consented):
    result = make_app(sandbox, consented, secret="not-the-secret").acquire_token_by_refresh_token(
        "whatever", CONNECTOR_SCOPES)
    assert_aad(result, "invalid_client", 7000215)
    resp = token_post(sandbox, http, consented, {"client_id": consented["client_id"], "client_secret": "nope",
                                                 "grant_type": "refresh_token", "refresh_token": "x"})
    assert resp.status_code == 401


def test_expired_client_secret_is_7000222(sandbox, http, consented):
    app_reg = sandbox.state.apps[consented["client_id"]]
    app_reg.expired_secrets.append(app_reg.secrets.pop())
    result = make_app(sandbox, consented).acquire_token_by_refresh_token("whatever", CONNECTOR_SCOPES)
    assert_aad(result, "invalid_client", 7000222)


def test_missing_client_secret_is_7000218(sandbox, http, consented):
    resp = token_post(sandbox, http, consented, {"client_id": consented["client_id"],
                                                 "grant_type": "refresh_token", "refresh_token": "x"})
    assert resp.status_code == 401
    assert_aad(resp.json(), "invalid_client", 7000218)


def test_unknown_client_is_700016(sandbox, http, consented):
    result = make_app(sandbox, consented, client_id="11111111-2222-3333-4444-555555555555"
                      ).acquire_token_by_refresh_token("whatever", CONNECTOR_SCOPES)
    assert_aad(result, "unauthorized_client", 700016)


# --- refresh-token errors ----------------------------------------------------------------------------

def test_consent_revoked_refresh_is_65001_but_the_access_token_lives_on(sandbox, http, consented):
    _, result = login(sandbox, http, consented)
    del sandbox.state.consents[(consented["tenant_id"], consented["client_id"])]
    assert_aad(refresh(sandbox, consented, result["refresh_token"]), "invalid_grant", 65001, "consent_required")
    token = sandbox.state.access_tokens[result["access_token"]]
    assert not token.revoked and token.expires_at > sandbox.state.now()


def test_refresh_asking_beyond_the_consent_is_65001(sandbox, http, consented):
    _, result = login(sandbox, http, consented)
    assert_aad(refresh(sandbox, consented, result["refresh_token"], ["Mail.ReadWrite"]), "invalid_grant",
               65001, "consent_required")


def test_mfa_required_is_50076_until_the_user_signs_in_with_mfa(sandbox, http, consented):
    _, result = login(sandbox, http, consented)
    sandbox.state.users[consented["service_account"]["id"]].mfa_required = True
    failed = refresh(sandbox, consented, result["refresh_token"])
    assert_aad(failed, "invalid_grant", 50076, "basic_action")
    assert json.loads(failed["claims"])["access_token"]["capolids"]["essential"] is True
    _, again = login(sandbox, http, consented)          # the HTML flow shows and passes the MFA page
    assert "access_token" in refresh(sandbox, consented, again["refresh_token"])


def test_mfa_enrollment_required_is_50079(sandbox, http, consented):
    _, result = login(sandbox, http, consented)
    sandbox.state.users[consented["service_account"]["id"]].mfa_enrollment_required = True
    assert_aad(refresh(sandbox, consented, result["refresh_token"]), "invalid_grant", 50079, "basic_action")


def test_mfa_error_switch_interaction_required(sandbox, http, consented):
    _, result = login(sandbox, http, consented)
    sandbox.state.users[consented["service_account"]["id"]].mfa_required = True
    sandbox.state.settings["aad_mfa_error"] = "interaction_required"
    assert_aad(refresh(sandbox, consented, result["refresh_token"]), "interaction_required", 50076)


def test_conditional_access_block_is_53003(sandbox, http, consented):
    _, result = login(sandbox, http, consented)
    sandbox.state.users[consented["service_account"]["id"]].ca_blocked = True
    assert_aad(refresh(sandbox, consented, result["refresh_token"]), "invalid_grant", 53003)
    with pytest.raises(AssertionError, match="AADSTS53003"):
        login(sandbox, http, consented)


def test_password_reset_is_50173(sandbox, http, consented):
    _, result = login(sandbox, http, consented)
    user = sandbox.state.users[consented["service_account"]["id"]]
    user.sessions_valid_from = sandbox.state.now() + dt.timedelta(seconds=1)
    assert_aad(refresh(sandbox, consented, result["refresh_token"]), "invalid_grant", 50173)


def test_revoked_refresh_token_is_70008(sandbox, http, consented):
    _, result = login(sandbox, http, consented)
    sandbox.state.refresh_tokens[result["refresh_token"]].revoked = True
    failed = refresh(sandbox, consented, result["refresh_token"])
    assert_aad(failed, "invalid_grant", 70008)
    assert "revoked" in failed["error_description"]


def test_refresh_token_inactive_for_90_days_is_700082(sandbox, http, consented):
    _, result = login(sandbox, http, consented)
    sandbox.state.advance_clock(89 * 86400)
    kept = refresh(sandbox, consented, result["refresh_token"])      # use slides the window
    assert "access_token" in kept
    sandbox.state.advance_clock(90 * 86400 + 1)
    failed = refresh(sandbox, consented, result["refresh_token"])
    assert_aad(failed, "invalid_grant", 700082, "bad_token")
    assert "was inactive for 90.00:00:00." in failed["error_description"]


def test_disabled_user_is_50057(sandbox, http, consented):
    _, result = login(sandbox, http, consented)
    sandbox.state.users[consented["service_account"]["id"]].disabled = True
    assert_aad(refresh(sandbox, consented, result["refresh_token"]), "invalid_grant", 50057)


def test_unknown_refresh_token_is_invalid_grant(sandbox, http, consented):
    result = refresh(sandbox, consented, "0.SBX.rt.forged")
    assert result["error"] == "invalid_grant"


def test_token_endpoint_5xx_fault_makes_msal_raise(sandbox, http, consented):
    _, result = login(sandbox, http, consented)
    sandbox.state.faults["token_endpoint"] = {"status": 503, "times": 1}
    with pytest.raises((requests.HTTPError, msal.exceptions.MsalServiceError)):   # 1.39: MsalServiceError
        refresh(sandbox, consented, result["refresh_token"])
    assert "token_endpoint" not in sandbox.state.faults
    assert "access_token" in refresh(sandbox, consented, result["refresh_token"])


@pytest.mark.parametrize("authority", ["organizations", "common", "contoso.onmicrosoft.com"])
def test_msal_with_meta_and_domain_authorities(sandbox, http, consented, authority):
    app = make_app(sandbox, consented, tenant=authority)
    flow, params = interactive(sandbox, http, consented, app)
    result = app.acquire_token_by_auth_code_flow(flow, params)
    assert result["id_token_claims"]["tid"] == consented["tenant_id"], result
    account = app.get_accounts()[0]
    assert app.acquire_token_silent(CONNECTOR_SCOPES, account=account)["token_source"] == "cache"


def test_scope_echo_switch_as_requested(sandbox, http, consented):
    _, result = login(sandbox, http, consented)
    sandbox.state.settings["aad_scope_echo"] = "as_requested"
    long_form = ["https://graph.microsoft.com/Mail.Read.Shared"]
    assert refresh(sandbox, consented, result["refresh_token"], long_form)["scope"].split()[0] == long_form[0]
    sandbox.state.settings["aad_scope_echo"] = "short"
    assert refresh(sandbox, consented, result["refresh_token"], long_form)["scope"].split()[0] == "Mail.Read.Shared"


def test_authorize_error_pages_and_redirected_errors(sandbox, http, consented):
    resp = http.get(authorize_url(sandbox, {**consented, "client_id": "00000000-0000-0000-0000-000000000001"},
                                  "Mail.Read.Shared"), allow_redirects=False)
    assert resp.status_code == 400 and "AADSTS700016" in resp.text
    resp = http.get(authorize_url(sandbox, {**consented, "tenant_id": "nowhere.example"}, "Mail.Read.Shared"),
                    allow_redirects=False)
    assert resp.status_code == 400 and "AADSTS90002" in resp.text
    resp = http.get(authorize_url(sandbox, consented, "Mail.Read.Shared").replace("response_type=code",
                                                                                  "response_type=token"),
                    allow_redirects=False)
    assert parse_qs(urlsplit(resp.headers["Location"]).query)["error"] == ["unsupported_response_type"]
    resp = http.get(authorize_url(sandbox, consented, "https://outlook.office.com/Mail.Read"), allow_redirects=False)
    assert parse_qs(urlsplit(resp.headers["Location"]).query)["error"] == ["invalid_scope"]


def test_redirect_uri_must_match_at_redemption(sandbox, http, consented):
    _, params = sign_in(http, authorize_url(sandbox, consented, "Mail.Read.Shared offline_access"),
                        consented["service_account"]["username"], consented["service_account"]["password"])
    resp = token_post(sandbox, http, consented, {
        "client_id": consented["client_id"], "client_secret": consented["client_secret"],
        "grant_type": "authorization_code", "code": params["code"],
        "redirect_uri": "http://localhost:8069/epilot_outlook/oauth/callback"})
    assert_aad(resp.json(), "invalid_grant", 500112)


def test_random_access_token_lifetime_switch(sandbox, http, consented):
    _, result = login(sandbox, http, consented)
    assert 3590 <= result["expires_in"] <= 3600
    sandbox.state.settings["access_token_lifetime_random"] = True
    lifetimes = {refresh(sandbox, consented, result["refresh_token"])["expires_in"] for _ in range(5)}
    assert all(3590 <= s <= 5400 for s in lifetimes) and len(lifetimes) > 1
