"""Graph change-notification subscriptions for one mailbox folder: create, renew, reauthorize, delete
(contract §2.1, §2.4, §2.5). Plain functions over the one Graph request helper (:class:`~.graph.GraphClient`).

Microsoft refuses subscriptions on shared mailboxes under delegated permissions (docs/microsoft-graph.md §0, 403
``ExtensionError``): :func:`create` raises that :class:`~.errors.Forbidden` unchanged, and the caller falls back
to delta polling. Nothing here words an error: the Odoo layer does.
"""
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from . import errors
from .const import CLIENT_STATE_BYTES, SUBSCRIPTION_CHANGE_TYPES, SUBSCRIPTION_MAX_MINUTES
from .graph import quote_segment
from .mailbox import IMMUTABLE
from .mapping import FOLDERS, format_datetime, parse_datetime


@dataclass(frozen=True)
class SubscriptionInfo:
    """What Graph returned for a subscription.

    :param str id: Graph's subscription id.
    :param str resource: The resource subscribed to.
    :param datetime expiration: Naive UTC ``expirationDateTime`` **as Graph returned it** (it may differ from the
        one asked for: under 45 minutes is raised, docs/microsoft-graph.md §7.5).
    """

    id: str
    resource: str
    expiration: datetime


def new_client_state():
    """A fresh ``clientState``: 48 random bytes, URL-safe (64 characters, under Graph's 128).

    :rtype: str
    """
    return secrets.token_urlsafe(CLIENT_STATE_BYTES)


def resource_for(mailbox, folder):
    """The ``resource`` of a folder's messages in a mailbox (``users/{upn}/mailFolders/{folder}/messages``).

    :param str mailbox: The shared mailbox's SMTP address.
    :param str folder: A key of :data:`~.mapping.FOLDERS`.
    :rtype: str
    """
    if folder not in FOLDERS:
        raise ValueError("Unknown folder %r" % folder)
    return 'users/%s/mailFolders/%s/messages' % (quote_segment(mailbox.strip().lower()), folder)


def longest_expiry(now=None):
    """The longest ``expirationDateTime`` Graph accepts for messages, from ``now`` (naive UTC), with a minute
    of margin for the clocks.

    :rtype: datetime
    """
    now = now or datetime.now(timezone.utc).replace(tzinfo=None)
    return now + timedelta(minutes=SUBSCRIPTION_MAX_MINUTES - 1)


def create(client, mailbox, folder, notification_url, lifecycle_url, client_state, now=None):
    """Create the subscription of one folder (``created,updated,deleted``, immutable ids, the longest expiry).

    Graph validates both URLs before answering (the handshake, docs/microsoft-graph.md §2.2): the receiver must be up.
    A ``409`` (a subscription for the same resource and change types exists, one Odoo lost track of) deletes
    that one and creates again: its ``clientState`` is unknown, so it is of no use.

    :param graph.GraphClient client: The connection's client.
    :rtype: SubscriptionInfo
    :raise Forbidden: 403 ``ExtensionError``: Graph refuses subscriptions on this mailbox (fall back to polling).
    :raise GraphError: Any other refusal (400 ``ValidationError`` when the handshake failed, ...).
    """
    resource = resource_for(mailbox, folder)
    body = {
        'changeType': SUBSCRIPTION_CHANGE_TYPES,
        'notificationUrl': notification_url,
        'lifecycleNotificationUrl': lifecycle_url,
        'resource': resource,
        'expirationDateTime': format_datetime(longest_expiry(now)),
        'clientState': client_state,
        'latestSupportedTlsVersion': 'v1_2',
    }
    headers = {'Prefer': IMMUTABLE}
    try:
        answer = client.post('subscriptions', json=body, headers=headers)
    except errors.GraphError as error:
        if error.status != 409:
            raise
        for stale in find(client, resource):
            delete(client, stale)
        answer = client.post('subscriptions', json=body, headers=headers)
    return _info(answer, resource)


def renew(client, subscription_id, now=None):
    """PATCH the expiry to the longest Graph allows; a PATCH also reauthorizes (docs/microsoft-graph.md §2.4).

    :return: The subscription, with the expiry Graph returned.
    :rtype: SubscriptionInfo
    :raise NotFound: The subscription is gone (expired, removed): create a new one, retrying cannot help.
    """
    answer = client.patch('subscriptions/%s' % quote_segment(subscription_id),
                          json={'expirationDateTime': format_datetime(longest_expiry(now))})
    return _info(answer, None)


def reauthorize(client, subscription_id):
    """``POST /subscriptions/{id}/reauthorize`` (204): resume delivery after ``reauthorizationRequired``.

    :raise NotFound: The subscription is gone.
    """
    client.post('subscriptions/%s/reauthorize' % quote_segment(subscription_id), idempotent=True)


def delete(client, subscription_id):
    """Delete a subscription; one already gone counts as deleted.

    :return: Whether Graph still had it.
    :rtype: bool
    """
    try:
        client.delete('subscriptions/%s' % quote_segment(subscription_id))
    except errors.NotFound:
        return False
    return True


def find(client, resource):
    """The ids of this app's subscriptions (for the signed-in account) on ``resource``.

    :rtype: list
    """
    wanted = resource.strip().lstrip('/').lower()
    return [item['id'] for page in client.iter_pages('subscriptions') for item in page.items
            if isinstance(item, dict) and item.get('id')
            and str(item.get('resource') or '').strip().lstrip('/').lower() == wanted]


def _info(answer, resource):
    answer = answer if isinstance(answer, dict) else {}
    expiration = parse_datetime(answer.get('expirationDateTime'))
    if not answer.get('id') or expiration is None:
        raise errors.GraphError("Graph answered a subscription without id or expirationDateTime.")
    return SubscriptionInfo(id=str(answer['id']), resource=str(answer.get('resource') or resource or ''),
                            expiration=expiration)
