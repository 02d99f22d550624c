"""OAuth state: signed, expiring, bound to database/company/connection/user, nonce for single use."""
import datetime

import pytest

from outlook_core import oauth_state
from outlook_core.errors import StateExpired, StateInvalid, StateMismatch

SECRET = b'0123456789abcdef-database-secret'
BOUND = {'database': 'prod', 'company_id': 1, 'connection_id': 7, 'user_id': 2}
T0 = 1_800_000_000


def test_valid_state_round_trip():
    state = oauth_state.issue(SECRET, dict(BOUND, purpose='sign_in'), now=T0)
    payload = oauth_state.verify(SECRET, state, expected=BOUND, now=T0 + 10)
    assert payload['purpose'] == 'sign_in'
    assert payload['connection_id'] == 7
    assert payload['iat'] == T0
    assert len(payload['nonce']) >= 16
    # URL-safe: survives a query string untouched.
    assert all(c.isalnum() or c in '-_.' for c in state)


def test_each_state_has_its_own_nonce():
    first = oauth_state.verify(SECRET, oauth_state.issue(SECRET, BOUND), expected=BOUND)
    second = oauth_state.verify(SECRET, oauth_state.issue(SECRET, BOUND), expected=BOUND)
    assert first['nonce'] != second['nonce']


def test_datetime_now_is_accepted():
    now = datetime.datetime(2027, 1, 1, tzinfo=datetime.timezone.utc)
    state = oauth_state.issue(SECRET, BOUND, now=now)
    oauth_state.verify(SECRET, state, expected=BOUND, now=now + datetime.timedelta(minutes=59))


@pytest.mark.parametrize('tamper', [
    lambda s: s[:-2] + ('AA' if s[-2:] != 'AA' else 'BB'),                       # signature
    lambda s: s.split('.')[0] + '.' + s.split('.')[1][:-1] + 'x.' + s.split('.')[2],  # payload
    lambda s: 'v2' + s[2:],                                                    # version
    lambda s: s.replace('.', '', 1),                                           # format
    lambda s: '',
    lambda s: 'é.' + s,
])
def test_tampered_state_is_invalid(tamper):
    state = oauth_state.issue(SECRET, BOUND, now=T0)
    with pytest.raises(StateInvalid):
        oauth_state.verify(SECRET, tamper(state), expected=BOUND, now=T0)


def test_other_secret_is_invalid():
    state = oauth_state.issue(SECRET, BOUND, now=T0)
    with pytest.raises(StateInvalid):
        oauth_state.verify(b'another-secret-of-enough-bytes', state, expected=BOUND, now=T0)


def test_expired_after_one_hour():
    state = oauth_state.issue(SECRET, BOUND, now=T0)
    oauth_state.verify(SECRET, state, expected=BOUND, now=T0 + 3600)
    with pytest.raises(StateExpired):
        oauth_state.verify(SECRET, state, expected=BOUND, now=T0 + 3601)
    with pytest.raises(StateExpired):
        oauth_state.verify(SECRET, state, expected=BOUND, now=T0 + 61, max_age=60)


def test_issued_in_the_future_is_invalid():
    state = oauth_state.issue(SECRET, BOUND, now=T0 + 3600)
    with pytest.raises(StateInvalid):
        oauth_state.verify(SECRET, state, expected=BOUND, now=T0)


@pytest.mark.parametrize('field', oauth_state.BOUND_FIELDS)
def test_mismatch_of_each_bound_field(field):
    state = oauth_state.issue(SECRET, BOUND, now=T0)
    expected = dict(BOUND, **{field: 'someone-else'})
    with pytest.raises(StateMismatch) as info:
        oauth_state.verify(SECRET, state, expected=expected, now=T0)
    assert field in str(info.value)


def test_expected_must_cover_every_bound_field():
    state = oauth_state.issue(SECRET, BOUND, now=T0)
    with pytest.raises(ValueError):
        oauth_state.verify(SECRET, state, expected={'database': 'prod'}, now=T0)


def test_issue_requires_bound_fields_and_a_real_secret():
    with pytest.raises(ValueError):
        oauth_state.issue(SECRET, {'database': 'prod'})
    with pytest.raises(ValueError):
        oauth_state.issue(b'short', BOUND)


def test_caller_may_bring_the_nonce_to_record_it_first():
    nonce = oauth_state.new_nonce()
    state = oauth_state.issue(SECRET, dict(BOUND, nonce=nonce))
    assert oauth_state.verify(SECRET, state, expected=BOUND)['nonce'] == nonce
    with pytest.raises(ValueError):
        oauth_state.issue(SECRET, dict(BOUND, nonce='short'))


def test_read_nonce_finds_the_attempt_but_proves_nothing():
    nonce = oauth_state.new_nonce()
    state = oauth_state.issue(SECRET, dict(BOUND, nonce=nonce))
    assert oauth_state.read_nonce(state) == nonce
    # A forged state yields its nonce too: only verify() may be trusted.
    forged = state.rsplit('.', 1)[0] + '.AAAA'
    assert oauth_state.read_nonce(forged) == nonce
    with pytest.raises(StateInvalid):
        oauth_state.verify(SECRET, forged, expected=BOUND)
    for bad in ('', 'a.b', 'v1.%%%.x', 'v1.' + 'e30' + '.sig'):   # e30 = {} (no nonce)
        with pytest.raises(StateInvalid):
            oauth_state.read_nonce(bad)
