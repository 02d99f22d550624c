"""Signed, expiring, single-use OAuth ``state`` values.

A state binds the round trip to Microsoft to the database, company, connection and user that started it,
plus a random nonce and the issue time. It is ``v1.<payload>.<signature>``: the payload is URL-safe base64 of
compact JSON, the signature HMAC-SHA256 over the version and payload, keyed with the caller's secret (for
Odoo: derived from ``database.secret``). Everything is URL-safe, so it travels as a query parameter.

**Single use is the caller's job.** :func:`verify` returns the payload including ``nonce``; the Odoo side
must record used nonces (for at least ``max_age``) and refuse one seen before, and should also keep the nonce
in the user's session when the flow starts and compare it (login-CSRF protection).
"""
import base64
import binascii
import datetime
import hashlib
import hmac
import json
import secrets
import time

from .const import OAUTH_STATE_CLOCK_SKEW_S, OAUTH_STATE_MAX_AGE_S
from .errors import StateExpired, StateInvalid, StateMismatch

# The fields every state binds; ``verify`` insists on an expected value for each.
BOUND_FIELDS = ('database', 'company_id', 'connection_id', 'user_id')
_VERSION = 'v1'
# Domain separation: the same secret may sign other things elsewhere.
_SIGNING_CONTEXT = b'epilot_outlook.oauth_state.'
_MIN_SECRET_BYTES = 16


def new_nonce():
    """Return a fresh random nonce (128 bits, URL-safe) for :func:`issue`.

    :rtype: str
    """
    return secrets.token_urlsafe(16)


def issue(secret, payload, now=None):
    """Return a new signed state for ``payload``.

    :param bytes secret: HMAC key, at least 16 bytes.
    :param dict payload: Must contain ``database``, ``company_id``, ``connection_id`` and ``user_id``; other
        JSON-serialisable keys are carried along. ``iat`` is added. ``nonce`` is generated unless the payload
        brings one from :func:`new_nonce` (so the caller can record it before sending the state out).
    :param now: Issue time as epoch seconds or an aware ``datetime`` (default: now).
    :return: The state, URL-safe.
    :rtype: str
    :raise ValueError: On a short secret or a missing bound field.
    """
    _check_secret(secret)
    missing = [field for field in BOUND_FIELDS if payload.get(field) in (None, '')]
    if missing:
        raise ValueError("OAuth state payload lacks %s" % ', '.join(missing))
    nonce = payload.get('nonce') or new_nonce()
    if not isinstance(nonce, str) or len(nonce) < 16:
        raise ValueError("An OAuth state nonce must be a random string of at least 16 characters (new_nonce())")
    body = dict(payload, nonce=nonce, iat=int(_epoch(now)))
    encoded = _b64encode(json.dumps(body, separators=(',', ':'), sort_keys=True).encode('utf-8'))
    return '%s.%s.%s' % (_VERSION, encoded, _sign(secret, encoded))


def verify(secret, state, *, expected, max_age=OAUTH_STATE_MAX_AGE_S, now=None):
    """Check a state's signature, age and bound fields; return its payload.

    :param bytes secret: The key it was issued with.
    :param str state: The value received on the callback.
    :param dict expected: The expected value of every bound field (``database``, ``company_id``,
        ``connection_id``, ``user_id``); values are compared as text.
    :param int max_age: Seconds a state stays valid.
    :param now: Current time as epoch seconds or an aware ``datetime`` (default: now).
    :return: The payload, including ``nonce`` (record it: single use is the caller's job) and ``iat``.
    :rtype: dict
    :raise StateInvalid: Malformed, bad signature, or issued in the future.
    :raise StateExpired: Older than ``max_age``.
    :raise StateMismatch: A bound field differs from ``expected``.
    :raise ValueError: When ``expected`` does not cover every bound field (a programming error).
    """
    _check_secret(secret)
    unchecked = [field for field in BOUND_FIELDS if field not in expected]
    if unchecked:
        raise ValueError("verify() needs an expected value for %s" % ', '.join(unchecked))
    if not isinstance(state, str) or not state.isascii() or state.count('.') != 2:
        raise StateInvalid("Malformed OAuth state.")
    version, encoded, signature = state.split('.')
    if version != _VERSION:
        raise StateInvalid("Unknown OAuth state version.")
    if not hmac.compare_digest(_sign(secret, encoded), signature):
        raise StateInvalid("OAuth state signature mismatch.")
    try:
        payload = json.loads(_b64decode(encoded))
        issued_at = int(payload['iat'])
        if not payload.get('nonce'):
            raise KeyError('nonce')
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise StateInvalid("Malformed OAuth state payload.") from None

    current = _epoch(now)
    if issued_at > current + OAUTH_STATE_CLOCK_SKEW_S:
        raise StateInvalid("OAuth state issued in the future.")
    if current - issued_at > max_age:
        raise StateExpired("OAuth state expired %d s ago." % (current - issued_at - max_age))
    for field in BOUND_FIELDS:
        if not hmac.compare_digest(str(payload.get(field)).encode(), str(expected[field]).encode()):
            raise StateMismatch("OAuth state was issued for another %s." % field)
    return payload


# === HELPERS === #

def _check_secret(secret):
    if not isinstance(secret, (bytes, bytearray)) or len(secret) < _MIN_SECRET_BYTES:
        raise ValueError("The OAuth state secret must be at least %d bytes" % _MIN_SECRET_BYTES)


def _sign(secret, encoded):
    message = _SIGNING_CONTEXT + _VERSION.encode() + b'.' + encoded.encode('ascii')
    return _b64encode(hmac.new(bytes(secret), message, hashlib.sha256).digest())


def _epoch(now):
    if now is None:
        return time.time()
    if isinstance(now, datetime.datetime):
        if now.tzinfo is None:
            raise ValueError("Pass an aware datetime (UTC)")
        return now.timestamp()
    return float(now)


def _b64encode(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b'=').decode('ascii')


def _b64decode(text):
    return base64.urlsafe_b64decode(text + '=' * (-len(text) % 4))


def read_nonce(state):
    """Return the nonce inside ``state`` **without verifying anything**.

    Only for finding the server-side record of the attempt, whose bound fields :func:`verify` then needs as
    ``expected``. Trust nothing else from an unverified state.

    :param str state: The value received on the callback.
    :rtype: str
    :raise StateInvalid: When the state is malformed or carries no nonce.
    """
    if not isinstance(state, str) or not state.isascii() or state.count('.') != 2:
        raise StateInvalid("Malformed OAuth state.")
    try:
        nonce = json.loads(_b64decode(state.split('.')[1]))['nonce']
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise StateInvalid("Malformed OAuth state payload.") from None
    if not isinstance(nonce, str) or not nonce:
        raise StateInvalid("Malformed OAuth state payload.")
    return nonce
