"""oauth.py against the sandbox's identity room over HTTPS, through MSAL: admin consent, the auth-code flow with
PKCE (the sandbox's HTML sign-in form submitted with requests), refresh rotation, and error mapping.

MSAL replays an identical HTTP 400 from the token endpoint for 60 s without calling the server
(``ThrottledHttpClient``). Every error test therefore uses a refresh token or code of its own, so no test
depends on a cached answer from another.
"""
import datetime
import logging
from urllib.parse import parse_qs, urlsplit

import pytest

from outlook_core import errors, oauth_state
from outlook_core.const import MSAL_SCOPES
from outlook_core.oauth import OAuthClient, TokenSet
from sandbox_signin import sign_in

REDIRECT_URI = "http://127.0.0.1:8069/epilot_outlook/oauth/callback"

SECRET = b'test-database-secret-0123456789'
BOUND = {'database': 'test', 'company_id': 1, 'connection_id': 1, 'user_id': 2}


def oauth_client(sandbox, demo, tenant=None, secret=None):
    return OAuthClient(demo['client_id'], secret or demo['client_secret'], sandbox.authority_base,
                       tenant or demo['tenant_id'], ca_bundle=sandbox.ca_path, clock=sandbox.state.now)


def grant_admin_consent(sandbox, http, demo):
    client = oauth_client(sandbox, demo, tenant='organizations')
    url = client.admin_consent_url(REDIRECT_URI, oauth_state.issue(SECRET, BOUND))
    _, params = sign_in(http, url, demo['admin']['username'], demo['admin']['password'])
    return client.parse_admin_consent_callback(params)


def callback_of_sign_in(sandbox, http, demo, *, consent=True, who='service_account'):
    """(Admin consent, then) the service account through the sign-in pages; returns (client, flow, params)."""
    if consent:
        grant_admin_consent(sandbox, http, demo)
    client = oauth_client(sandbox, demo)
    flow = client.start_sign_in(REDIRECT_URI, oauth_state.issue(SECRET, BOUND), login_hint=demo[who]['username'])
    _, params = sign_in(http, flow['auth_uri'], demo[who]['username'], demo[who]['password'])
    return client, flow, params


def signed_in(sandbox, http, demo):
    """Admin consent, then the service account's sign-in; returns (client, token_set)."""
    client, flow, params = callback_of_sign_in(sandbox, http, demo)
    return client, client.finish_sign_in(flow, params)


def user(sandbox, demo, who='service_account'):
    return sandbox.state.users[demo[who]['id']]


# === ADMIN CONSENT === #

def test_admin_consent_url_shape(sandbox, demo):
    url = oauth_client(sandbox, demo).admin_consent_url(REDIRECT_URI, 'st', tenant='contoso.onmicrosoft.com')
    parts = urlsplit(url)
    assert parts.path == '/contoso.onmicrosoft.com/v2.0/adminconsent'
    query = parse_qs(parts.query)
    assert query['client_id'] == [demo['client_id']] and query['redirect_uri'] == [REDIRECT_URI]
    assert query['state'] == ['st']
    assert query['scope'][0].split() == [
        'https://graph.microsoft.com/User.Read', 'offline_access', 'https://graph.microsoft.com/Mail.Read.Shared',
        'https://graph.microsoft.com/Mail.ReadWrite.Shared', 'https://graph.microsoft.com/Mail.Send.Shared']


def test_admin_consent_round_trip_records_consent_and_returns_tenant(sandbox, http, demo):
    client = oauth_client(sandbox, demo, tenant='organizations')
    state = oauth_state.issue(SECRET, BOUND)
    _, params = sign_in(http, client.admin_consent_url(REDIRECT_URI, state), demo['admin']['username'],
                        demo['admin']['password'])
    assert oauth_state.verify(SECRET, params['state'], expected=BOUND)['nonce']
    assert client.parse_admin_consent_callback(params) == demo['tenant_id']
    consent = sandbox.state.consents[(demo['tenant_id'], demo['client_id'])]
    assert {'User.Read', 'Mail.Read.Shared', 'Mail.ReadWrite.Shared', 'Mail.Send.Shared'} <= consent.scopes


def test_admin_consent_cancelled_is_consent_required(sandbox, http, demo):
    client = oauth_client(sandbox, demo, tenant='organizations')
    _, params = sign_in(http, client.admin_consent_url(REDIRECT_URI, 's'), demo['admin']['username'],
                        demo['admin']['password'], consent='cancel')
    with pytest.raises(errors.ConsentRequired) as info:
        client.parse_admin_consent_callback(params)
    assert info.value.aadsts == (65004,)


def test_admin_consent_by_a_non_admin_is_consent_required(sandbox, http, demo):
    client = oauth_client(sandbox, demo, tenant='organizations')
    _, params = sign_in(http, client.admin_consent_url(REDIRECT_URI, 's'), demo['service_account']['username'],
                        demo['service_account']['password'])
    with pytest.raises(errors.ConsentRequired) as info:
        client.parse_admin_consent_callback(params)
    assert info.value.aadsts == (90094,)


@pytest.mark.parametrize('params', [{}, {'admin_consent': 'True'}, {'admin_consent': 'True', 'tenant': 'x'},
                                    {'admin_consent': 'False', 'tenant': '7d1c1c1e-0000-4000-8000-000000000000'}])
def test_admin_consent_callback_without_consent_or_tenant_is_refused(params):
    with pytest.raises(errors.TokenError):
        OAuthClient.parse_admin_consent_callback(params)


# === SIGN-IN === #

def test_auth_code_flow_with_pkce(sandbox, http, demo):
    client, tokens = signed_in(sandbox, http, demo)
    assert isinstance(tokens, TokenSet)
    svc = demo['service_account']
    assert tokens.identity.oid == svc['id'] and tokens.identity.username == svc['username']
    assert tokens.tenant_id == demo['tenant_id'] == tokens.identity.tenant_id
    assert set(MSAL_SCOPES) <= set(tokens.scopes)
    now = datetime.datetime.now(datetime.timezone.utc)
    assert datetime.timedelta(minutes=55) < tokens.expires_at - now <= datetime.timedelta(minutes=61)
    assert not tokens.needs_refresh()
    assert tokens.missing_scopes() == ()
    assert tokens.needs_refresh(now=tokens.expires_at - datetime.timedelta(minutes=4))
    assert sandbox.state.access_tokens[tokens.access_token].user_id == svc['id']
    assert tokens.access_token not in repr(tokens) and tokens.refresh_token not in str(tokens)
    assert tokens.tenant_id not in repr(tokens) and svc['id'] not in repr(tokens)
    assert demo['client_secret'] not in repr(client) and demo['tenant_id'] not in repr(client)


def test_sign_in_flow_uses_pkce_and_the_state(sandbox, http, demo):
    client = oauth_client(sandbox, demo)
    flow = client.start_sign_in(REDIRECT_URI, 'my-state', login_hint='svc@x', prompt='select_account',
                                claims_challenge='{"access_token":{"acrs":{"essential":true,"value":"c1"}}}')
    query = parse_qs(urlsplit(flow['auth_uri']).query)
    assert '"acrs"' in query['claims'][0]
    assert query['code_challenge_method'] == ['S256'] and query['code_challenge']
    assert query['state'] == ['my-state'] and query['login_hint'] == ['svc@x']
    assert set(query['scope'][0].split()) == set(MSAL_SCOPES) | {'offline_access', 'openid', 'profile'}


def test_callback_with_another_state_is_state_invalid(sandbox, http, demo):
    client, flow, params = callback_of_sign_in(sandbox, http, demo)
    with pytest.raises(errors.StateInvalid):
        client.finish_sign_in(flow, dict(params, state=oauth_state.issue(SECRET, BOUND)))


def test_code_redeemed_twice_is_sign_in_failed(sandbox, http, demo):
    client, flow, params = callback_of_sign_in(sandbox, http, demo)
    client.finish_sign_in(flow, params)
    with pytest.raises(errors.SignInFailed) as info:
        client.finish_sign_in(flow, params)
    assert info.value.aadsts == (54005,)


def test_sign_in_without_admin_consent_is_consent_required(sandbox, http, demo):
    client, flow, params = callback_of_sign_in(sandbox, http, demo, consent=False)
    with pytest.raises(errors.ConsentRequired) as info:
        client.finish_sign_in(flow, params)
    assert info.value.aadsts == (65001,)


def test_unknown_tenant_is_tenant_not_found(sandbox, demo):
    client = oauth_client(sandbox, demo, tenant='nowhere.onmicrosoft.com')
    with pytest.raises(errors.TenantNotFound):
        client.start_sign_in(REDIRECT_URI, 's')


# === REFRESH === #

def test_refresh_rotates_the_refresh_token(sandbox, http, demo):
    client, first = signed_in(sandbox, http, demo)
    second = client.refresh(first.refresh_token)
    assert second.refresh_token and second.refresh_token != first.refresh_token
    assert second.access_token != first.access_token
    assert second.identity.oid == demo['service_account']['id']
    # The old refresh token is not revoked by the rotation (docs/microsoft-graph.md §1.4)...
    third = client.refresh(first.refresh_token)
    # ...and the rotated one works too, from a fresh client (as after an Odoo restart).
    fourth = oauth_client(sandbox, demo).refresh(second.refresh_token)
    assert len({first.refresh_token, second.refresh_token, third.refresh_token, fourth.refresh_token}) == 4


def test_refresh_logs_no_secret(sandbox, http, demo, caplog):
    with caplog.at_level(logging.DEBUG):
        client, flow, params = callback_of_sign_in(sandbox, http, demo)
        first = client.finish_sign_in(flow, params)
        second = client.refresh(first.refresh_token)
        sandbox.state.consents.clear()
        with pytest.raises(errors.ConsentRequired):
            client.refresh(second.refresh_token)
    text = caplog.text + ' '.join(str(record.args) for record in caplog.records)
    assert 'refresh succeeded' in text   # the capture did see our log lines
    for secret in (first.access_token, first.refresh_token, second.access_token, second.refresh_token,
                   demo['client_secret'], demo['service_account']['password'], params['code'],
                   flow['code_verifier']):
        assert secret not in text
        for start in range(0, len(secret) - 16, 8):   # no recognisable fragment either
            assert secret[start:start + 16] not in text


@pytest.mark.parametrize('break_it, expected, code', [
    (lambda s, d, rt: setattr(s.state.users[d['service_account']['id']], 'disabled', True),
     errors.GrantRevoked, 50057),
    (lambda s, d, rt: setattr(s.state.refresh_tokens[rt], 'revoked', True), errors.GrantRevoked, 70008),
    (lambda s, d, rt: setattr(s.state.users[d['service_account']['id']], 'sessions_valid_from',
                              s.state.now() + datetime.timedelta(seconds=1)), errors.GrantRevoked, 50173),
    (lambda s, d, rt: s.state.advance_clock(91 * 86400), errors.GrantRevoked, 700082),
    (lambda s, d, rt: setattr(s.state.users[d['service_account']['id']], 'mfa_required', True),
     errors.InteractionRequired, 50076),
    (lambda s, d, rt: setattr(s.state.users[d['service_account']['id']], 'ca_blocked', True),
     errors.InteractionRequired, 53003),
    (lambda s, d, rt: s.state.consents.clear(), errors.ConsentRequired, 65001),
])
def test_refresh_errors_are_mapped(sandbox, http, demo, break_it, expected, code):
    client, tokens = signed_in(sandbox, http, demo)
    break_it(sandbox, demo, tokens.refresh_token)
    with pytest.raises(expected) as info:
        client.refresh(tokens.refresh_token)
    assert info.value.aadsts == (code,)
    assert tokens.refresh_token not in str(info.value) and tokens.refresh_token not in repr(info.value)
    assert code in errors.AADSTS_CLASSES   # a code the Odoo layer words


def test_msal_replays_a_failed_400_for_the_same_client_only(sandbox, http, demo):
    client, tokens = signed_in(sandbox, http, demo)
    account = user(sandbox, demo)
    account.disabled = True
    with pytest.raises(errors.GrantRevoked):
        client.refresh(tokens.refresh_token)
    account.disabled = False            # the admin re-enables the account...
    with pytest.raises(errors.GrantRevoked):
        client.refresh(tokens.refresh_token)    # ...but MSAL replays its cached 400 for 60 s
    assert oauth_client(sandbox, demo).refresh(tokens.refresh_token).access_token   # a new client is fine


@pytest.mark.parametrize('mfa_error', ['invalid_grant', 'interaction_required'])
def test_mfa_claims_challenge_is_kept(sandbox, http, demo, mfa_error):
    sandbox.state.settings['aad_mfa_error'] = mfa_error
    client, tokens = signed_in(sandbox, http, demo)
    user(sandbox, demo).mfa_required = True
    with pytest.raises(errors.InteractionRequired) as info:
        client.refresh(tokens.refresh_token)
    assert info.value.claims and 'capolids' in info.value.claims


def test_bad_and_expired_client_secret(sandbox, http, demo):
    _, tokens = signed_in(sandbox, http, demo)
    with pytest.raises(errors.ClientCredentialError) as info:
        oauth_client(sandbox, demo, secret='wrong-secret').refresh(tokens.refresh_token)
    assert info.value.aadsts == (7000215,) and 'wrong-secret' not in str(info.value)
    sandbox.state.apps[demo['client_id']].expired_secrets.append(demo['client_secret'])
    with pytest.raises(errors.ClientCredentialError) as info:
        oauth_client(sandbox, demo).refresh(tokens.refresh_token)
    assert info.value.aadsts == (7000222,)


def test_unknown_refresh_token_is_revoked_grant(sandbox, http, demo):
    client, _ = signed_in(sandbox, http, demo)
    with pytest.raises(errors.GrantRevoked):
        client.refresh('0.SBX.rt.not-a-token')


def test_token_endpoint_5xx_is_transient_and_429_is_throttled(sandbox, http, demo):
    client, tokens = signed_in(sandbox, http, demo)
    sandbox.state.faults['token_endpoint'] = {'status': 503, 'times': 1}
    with pytest.raises(errors.TransientError) as info:
        client.refresh(tokens.refresh_token)
    assert info.value.status == 503 and not isinstance(info.value, errors.Throttled)

    sandbox.state.faults['token_endpoint'] = {'status': 429, 'times': 1, 'retry_after': 7}
    with pytest.raises(errors.Throttled) as info:
        oauth_client(sandbox, demo).refresh(tokens.refresh_token)
    assert info.value.retry_after == 7
    # The fault was one-shot: the same refresh token works now.
    assert oauth_client(sandbox, demo).refresh(tokens.refresh_token).access_token


def test_unreachable_identity_platform_is_transient():
    client = OAuthClient('client', 'secret', 'https://127.0.0.1:9', 'organizations', http_timeout=(1, 1))
    with pytest.raises(errors.TransientError):
        client.start_sign_in(REDIRECT_URI, 's')


def test_missing_scopes_when_consent_is_partial(sandbox, http, demo):
    client, tokens = signed_in(sandbox, http, demo)
    sandbox.state.consents[(demo['tenant_id'], demo['client_id'])].scopes.discard('Mail.Send.Shared')
    sandbox.state.settings['aad_scope_echo'] = 'as_requested'
    # The refresh asks for every product scope; the sandbox refuses what is not consented (65001), like AAD.
    with pytest.raises(errors.ConsentRequired):
        client.refresh(tokens.refresh_token)
    partial = TokenSet('at', 'rt', tokens.expires_at, scopes=('https://graph.microsoft.com/User.Read',
                                                              'Mail.Read.Shared', 'mail.readwrite.shared'))
    assert partial.missing_scopes() == ('Mail.Send.Shared',)


# === END TO END: SIGN-IN, THEN GRAPH WITH REFRESH === #

def test_sign_in_then_read_a_shared_mailbox_refreshing_on_expiry_and_on_401(sandbox, http, demo):
    """The pattern the Odoo side follows: refresh ahead of expiry, and once more on a 401."""
    from urllib.parse import urlsplit as split

    from outlook_core.graph import GraphClient

    client, first = signed_in(sandbox, http, demo)
    current = {'tokens': first}
    refreshes = []

    def token_provider():
        if current['tokens'].needs_refresh(now=sandbox.state.now()):
            current['tokens'] = oauth_client(sandbox, demo).refresh(current['tokens'].refresh_token)
            refreshes.append(current['tokens'])
        return current['tokens'].access_token

    graph = GraphClient(sandbox.graph_base, token_provider, ca_bundle=sandbox.ca_path,
                        allowed_hosts=(split(sandbox.graph_base).netloc,))
    inbox = '/users/support@contoso.onmicrosoft.com/mailFolders/inbox/messages'
    assert graph.get(inbox, params={'$top': 2})['value']
    assert refreshes == []

    sandbox.state.advance_clock(56 * 60)          # under 5 minutes left: refreshed before the call
    assert graph.get(inbox, params={'$top': 2})['value']
    assert len(refreshes) == 1

    sandbox.state.access_tokens[current['tokens'].access_token].revoked = True
    with pytest.raises(errors.Unauthorized):
        graph.get(inbox)
    current['tokens'] = oauth_client(sandbox, demo).refresh(current['tokens'].refresh_token)   # then retry once
    assert graph.get(inbox, params={'$top': 2})['value']
