"""Graph change and lifecycle notifications: parse a POSTed batch and check each item (contract §2.3, §2.4).

Pure functions, no I/O. The webhook controller reads the raw body, calls :func:`parse_batch`, looks up the
subscriptions the batch names, and checks each item with :func:`check_item`; items that are not ``OK`` are
ignored (counted, logged without their payload). Outcomes are codes, never English text.
"""
import hmac
import json
import re
from dataclasses import dataclass

# Outcomes of :func:`check_item`.
OK = 'ok'
MALFORMED = 'malformed'
UNKNOWN_SUBSCRIPTION = 'unknown_subscription'
CLIENT_STATE_MISMATCH = 'client_state_mismatch'
TENANT_MISMATCH = 'tenant_mismatch'

# Lifecycle events (docs/microsoft-graph.md §2.4); anything else in ``lifecycleEvent`` is malformed.
REAUTHORIZATION_REQUIRED = 'reauthorizationRequired'
SUBSCRIPTION_REMOVED = 'subscriptionRemoved'
MISSED = 'missed'
LIFECYCLE_EVENTS = frozenset({REAUTHORIZATION_REQUIRED, SUBSCRIPTION_REMOVED, MISSED})
CHANGE_TYPES = frozenset({'created', 'updated', 'deleted'})

# A batch holds notifications for at most this many items; a longer list is not Graph's.
MAX_ITEMS = 1000
_GUID_RE = re.compile(r'^[0-9A-Za-z-]{1,64}$')


class BatchError(ValueError):
    """The body is not a notification batch at all (``code``: ``not_json``, ``not_a_batch``, ``too_many``)."""

    def __init__(self, code):
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class Notification:
    """One item of a batch, as far as it could be read.

    :param str subscription_id: ``subscriptionId`` (``None`` when missing or not a plausible id).
    :param str client_state: ``clientState`` (``None`` when missing or not a string).
    :param str tenant_id: ``tenantId`` (``None`` when missing).
    :param str event: The ``changeType`` (``created``...) or the ``lifecycleEvent``; ``None`` when neither fits.
    :param bool lifecycle: Whether it is a lifecycle notification.
    """

    subscription_id: str
    client_state: str
    tenant_id: str
    event: str
    lifecycle: bool


def parse_batch(raw):
    """Read a POSTed body as ``{"value": [notification, ...]}``.

    :param bytes raw: The body.
    :return: One :class:`Notification` per item (unreadable items included, to be counted as malformed).
    :rtype: list
    :raise BatchError: The body is not JSON, not an object with a ``value`` list, or too long a list.
    """
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BatchError('not_json') from None
    items = body.get('value') if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise BatchError('not_a_batch')
    if len(items) > MAX_ITEMS:
        raise BatchError('too_many')
    return [_notification(item) for item in items]


def _notification(item):
    if not isinstance(item, dict):
        return Notification(None, None, None, None, False)
    subscription_id = _text(item.get('subscriptionId'))
    if subscription_id is not None and not _GUID_RE.match(subscription_id):
        subscription_id = None
    lifecycle = 'lifecycleEvent' in item
    if lifecycle:
        event = _text(item.get('lifecycleEvent'))
        event = event if event in LIFECYCLE_EVENTS else None
    else:
        event = _text(item.get('changeType'))
        event = event if event in CHANGE_TYPES else None
    return Notification(subscription_id, _text(item.get('clientState')), _text(item.get('tenantId')), event,
                        lifecycle)


def _text(value):
    return value if isinstance(value, str) else None


def check_item(notification, expected_client_state, expected_tenant_id):
    """Check one item against the subscription it names.

    :param Notification notification: The item.
    :param str expected_client_state: The subscription's stored ``clientState`` (``None``: unknown subscription).
    :param str expected_tenant_id: The connection's tenant id (``None``: not checked).
    :return: :data:`OK`, :data:`MALFORMED`, :data:`UNKNOWN_SUBSCRIPTION`, :data:`CLIENT_STATE_MISMATCH` or
        :data:`TENANT_MISMATCH`.
    :rtype: str
    """
    if notification.subscription_id is None or notification.event is None:
        return MALFORMED
    if expected_client_state is None:
        return UNKNOWN_SUBSCRIPTION
    if not same_secret(notification.client_state, expected_client_state):
        return CLIENT_STATE_MISMATCH
    if expected_tenant_id and (notification.tenant_id or '').lower() != expected_tenant_id.lower():
        return TENANT_MISMATCH
    return OK


def same_secret(given, expected):
    """Constant-time comparison of a received ``clientState`` with the stored one (``None`` never matches).

    :rtype: bool
    """
    if not isinstance(given, str) or not isinstance(expected, str):
        return False
    return hmac.compare_digest(given.encode('utf-8', 'surrogatepass'), expected.encode('utf-8', 'surrogatepass'))
