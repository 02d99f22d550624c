"""Mapping Microsoft's errors to the plain layer's exceptions: AADSTS codes and Graph envelopes."""
import pytest

from outlook_core import errors
from outlook_core.errors import (
    ClientCredentialError, ConsentRequired, Forbidden, GrantRevoked, GraphError, InteractionRequired,
    NotFound, SendAsDenied, SignInFailed, SyncReset, TenantNotFound, Throttled, TokenError, TransientError,
    Unauthorized, graph_error_from_parts, token_error_from_aad,
)


def aad(code, error='invalid_grant', **extra):
    """An identity-platform error dict shaped like MSAL returns it (docs/microsoft-graph.md §1.6)."""
    body = {
        'error': error,
        'error_description': 'AADSTS%d: Something happened.\r\nTrace ID: t-1\r\nCorrelation ID: c-1\r\n'
                             'Timestamp: 2026-11-26 10:00:00Z' % code,
        'error_codes': [code],
        'correlation_id': 'c-1',
    }
    body.update(extra)
    return body


@pytest.mark.parametrize('code, expected', [
    (65001, ConsentRequired), (65004, ConsentRequired), (90094, ConsentRequired), (90095, ConsentRequired),
    (50076, InteractionRequired), (50079, InteractionRequired), (53003, InteractionRequired),
    (50173, GrantRevoked), (70008, GrantRevoked), (700082, GrantRevoked), (50057, GrantRevoked),
    (70043, GrantRevoked),
    (7000215, ClientCredentialError), (7000222, ClientCredentialError), (7000218, ClientCredentialError),
    (700016, ClientCredentialError),
    (90002, TenantNotFound),
    (54005, SignInFailed), (501481, SignInFailed), (50011, SignInFailed),
])
def test_each_aadsts_code_maps_to_its_class(code, expected):
    exc = token_error_from_aad(aad(code))
    assert type(exc) is expected
    assert exc.aadsts == (code,)
    assert errors.AADSTS_CLASSES[code] is expected   # the table the Odoo layer words code by code
    # The message is the first line only: no trace ids or timestamps.
    assert exc.message == 'AADSTS%d: Something happened.' % code
    assert exc.correlation_id == 'c-1'


def test_first_known_code_wins():
    # The 2016 sample: error_codes [70002, 70008].
    exc = token_error_from_aad(dict(aad(70008), error_codes=[70002, 70008]))
    assert isinstance(exc, GrantRevoked)


def test_codes_are_read_from_the_description_when_error_codes_is_missing():
    body = aad(65001)
    del body['error_codes']
    assert isinstance(token_error_from_aad(body), ConsentRequired)


@pytest.mark.parametrize('body, expected', [
    ({'error': 'invalid_grant', 'suberror': 'consent_required'}, ConsentRequired),
    ({'error': 'invalid_grant', 'suberror': 'bad_token'}, GrantRevoked),
    ({'error': 'invalid_grant'}, GrantRevoked),
    ({'error': 'interaction_required'}, InteractionRequired),
    ({'error': 'access_denied', 'error_description': 'the admin cancelled'}, ConsentRequired),
    ({'error': 'invalid_client'}, ClientCredentialError),
    ({'error': 'invalid_scope'}, TokenError),
])
def test_fallback_on_suberror_then_error(body, expected):
    assert type(token_error_from_aad(body)) is expected


def test_temporarily_unavailable_is_transient():
    assert isinstance(token_error_from_aad({'error': 'temporarily_unavailable'}), TransientError)


def test_claims_challenge_is_kept():
    exc = token_error_from_aad(aad(50076, claims='{"access_token":{"acrs":{"essential":true}}}'))
    assert exc.claims.startswith('{"access_token"')


def envelope(code, message='msg', request_id='rid-1'):
    return {'error': {'code': code, 'message': message,
                      'innerError': {'date': '2026-11-26T10:00:00', 'request-id': request_id}}}


@pytest.mark.parametrize('status, code, headers, expected', [
    (401, 'InvalidAuthenticationToken', {}, Unauthorized),
    (403, 'ErrorAccessDenied', {}, Forbidden),
    (403, 'ErrorSendAsDenied', {}, SendAsDenied),
    (403, 'ExtensionError', {}, Forbidden),
    (404, 'ErrorInvalidUser', {}, NotFound),
    (404, 'MailboxNotEnabledForRESTAPI', {}, NotFound),
    (404, 'itemNotFound', {}, NotFound),
    (410, '', {'Location': 'https://graph.microsoft.com/v1.0/x/delta'}, SyncReset),
    (400, 'syncStateNotFound', {}, SyncReset),
    (400, 'resyncRequired', {}, SyncReset),
    (429, 'TooManyRequests', {'Retry-After': '10'}, Throttled),
    (429, 'UnknownError', {}, Throttled),
    (503, 'serviceNotAvailable', {'Retry-After': '3'}, Throttled),
    (503, 'serviceNotAvailable', {}, TransientError),
    (504, 'UnknownError', {}, TransientError),
    (400, 'ErrorMimeContentInvalidBase64String', {}, GraphError),
    (409, 'ExtensionError', {}, GraphError),
])
def test_graph_envelope_maps_by_code_and_status(status, code, headers, expected):
    exc = graph_error_from_parts(status, envelope(code), headers)
    assert type(exc) is expected
    assert exc.status == status and exc.code == code
    assert exc.request_id == 'rid-1'


def test_graph_mapping_ignores_the_message():
    # A message that *reads* like throttling must not change the class.
    exc = graph_error_from_parts(400, envelope('invalidRequest', 'Please retry after 10 seconds'), {})
    assert type(exc) is GraphError


def test_throttled_carries_integer_retry_after():
    exc = graph_error_from_parts(429, envelope('TooManyRequests'), {'retry-after': '17'})
    assert exc.retry_after == 17
    assert graph_error_from_parts(429, None, {'Retry-After': 'Wed, 21 Oct 2015 07:28:00 GMT'}).retry_after is None


def test_sync_reset_keeps_location():
    exc = graph_error_from_parts(410, None, {'Location': 'https://graph.microsoft.com/v1.0/users/x/delta'})
    assert exc.location.endswith('/delta')


def test_unauthorized_keeps_claims_challenge():
    header = ('Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", '
              'error="insufficient_claims", claims="eyJhY2Nlc3NfdG9rZW4iOnt9fQ=="')
    exc = graph_error_from_parts(401, envelope('InvalidAuthenticationToken'), {'WWW-Authenticate': header})
    assert exc.claims == 'eyJhY2Nlc3NfdG9rZW4iOnt9fQ=='
    assert exc.claims_json == '{"access_token":{}}'
    assert errors.Unauthorized('x', claims='{"a":1}').claims_json == '{"a":1}'
    assert errors.Unauthorized('x').claims_json is None


def test_request_id_header_wins_and_str_is_informative():
    exc = graph_error_from_parts(403, envelope('ErrorAccessDenied', 'Access is denied.'),
                                 {'request-id': 'hdr-rid'})
    assert exc.request_id == 'hdr-rid'
    assert str(exc) == '403 ErrorAccessDenied Access is denied. (request-id hdr-rid)'


def test_non_json_and_odd_envelopes_do_not_crash():
    assert type(graph_error_from_parts(502, 'Bad gateway', {})) is TransientError
    assert type(graph_error_from_parts(400, {'error': 'flat string'}, {})) is GraphError
    assert graph_error_from_parts(400, {'error': {'code': '', 'innererror': {'request-id': 'r'}}}, {}).request_id == 'r'


def test_identity_errors_carry_no_wording_and_no_reason():
    # What the user reads is the Odoo layer's wording of the codes; the plain layer only names them.
    exc = token_error_from_aad(aad(53003))
    assert (exc.aadsts, exc.reason, exc.params) == ((53003,), None, {})
    assert not hasattr(exc, 'explanation')


@pytest.mark.parametrize('code', sorted(errors.GRAPH_CODES))
def test_graph_codes_worded_apart_are_kept_on_the_error(code):
    exc = graph_error_from_parts(404, envelope(code), {})
    assert exc.code == code and exc.reason is None


def test_every_exception_carries_codes_and_params_not_wording():
    classes = [cls for cls in vars(errors).values()
               if isinstance(cls, type) and issubclass(cls, errors.OutlookError)]
    assert len(classes) > 20
    for cls in classes:
        assert 'explanation' not in vars(cls), cls   # user-facing words live in the Odoo layer
        exc = cls('technical message', reason='some_reason', params={'host': 'h'})
        assert (exc.message, exc.reason, exc.params) == ('technical message', 'some_reason', {'host': 'h'})
        assert 'technical message' in str(exc)   # str() stays the technical text, for logs
        assert cls().params == {} and cls().reason is None


def test_one_retry_policy_for_every_work_item():
    """ errors.retry_delay: Graph's Retry-After first, the longest backoff for a throttle without one, the rest
    of a send's grace time, a jittered 5-60 s for other transient failures, the caller's delay otherwise. """
    from outlook_core.const import BACKOFF_MAX_S, TRANSIENT_BACKOFF_S
    assert errors.retry_delay(errors.Throttled('429', retry_after=17), 900) == 17
    assert errors.retry_delay(errors.MailboxBusy('busy'), 900) == BACKOFF_MAX_S
    assert errors.retry_delay(errors.SendPending('pending', params={'seconds': 420}), 900) == 420
    delays = {errors.retry_delay(errors.TransientError('503'), 900) for _ in range(50)}
    assert all(TRANSIENT_BACKOFF_S[0] <= delay <= TRANSIENT_BACKOFF_S[1] for delay in delays) and len(delays) > 1
    assert errors.retry_delay(errors.Forbidden('no'), 900) == 900
    assert errors.retry_delay(None, 900) == 1


def test_a_connection_unusable_for_a_passing_reason_is_retried_by_the_same_policy():
    """ errors.is_transient / retry_delay: a connection that could not get a token because the identity platform
    failed transiently, or another worker's refresh held it, is worth trying again soon (as its cause says); one
    that needs a reconnect waits for a person (the caller's delay). """
    from outlook_core.const import TRANSIENT_BACKOFF_S
    throttled = errors.ConnectionUnusable('refresh', cause=errors.Throttled('429', retry_after=12))
    busy = errors.ConnectionUnusable('lock timeout', reason='refresh_busy')
    revoked = errors.ConnectionUnusable('revoked', cause=errors.GrantRevoked('invalid_grant'))
    assert errors.is_transient(throttled) and errors.is_transient(busy) and errors.is_transient(
        errors.TransientError('503'))
    assert not errors.is_transient(revoked) and not errors.is_transient(errors.ConnectionUnusable('not connected'))
    assert errors.retry_delay(throttled, 900) == 12
    assert TRANSIENT_BACKOFF_S[0] <= errors.retry_delay(busy, 900) <= TRANSIENT_BACKOFF_S[1]
    assert errors.retry_delay(revoked, 900) == 900
