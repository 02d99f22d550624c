"""outlook_core.subscriptions against the sandbox (create, renew, reauthorize, delete, 409, 403) and
outlook_core.notifications on its own (batch parsing and the checks of each item)."""
import datetime as dt
import importlib.util
import json
import os
import sys
from urllib.parse import urlsplit

import pytest

from m365_sandbox.seed import CONNECTOR_SCOPES
from outlook_core import errors, notifications, subscriptions
from outlook_core.graph import GraphClient

_HELPERS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'sandbox',
                        'subscription_helpers.py')
_spec = importlib.util.spec_from_file_location('subscription_helpers', _HELPERS)
subscription_helpers = sys.modules.setdefault('subscription_helpers', importlib.util.module_from_spec(_spec))
if not hasattr(subscription_helpers, 'Receiver'):
    _spec.loader.exec_module(subscription_helpers)
receiver_session = subscription_helpers.receiver_session
receiver = subscription_helpers.receiver

SUPPORT = 'support@contoso.onmicrosoft.com'


@pytest.fixture
def client(sandbox, demo):
    access, _ = sandbox.state.issue_tokens(demo['client_id'], demo['service_account']['id'], set(CONNECTOR_SCOPES))
    return GraphClient(sandbox.graph_base, lambda: access.token, ca_bundle=sandbox.ca_path,
                       allowed_hosts=(urlsplit(sandbox.graph_base).netloc,), sleep=lambda _s: None)


def create(client, receiver, folder='inbox', client_state=None):  # noqa: F811
    return subscriptions.create(client, SUPPORT, folder, receiver.url('/notify'), receiver.url('/lifecycle'),
                                client_state or subscriptions.new_client_state())


def test_create_renew_reauthorize_delete(sandbox, client, receiver):  # noqa: F811
    sandbox.state.settings['shared_mailbox_subscriptions'] = 'lenient'
    state = subscriptions.new_client_state()
    assert len(state) >= 43 and state != subscriptions.new_client_state()
    info = create(client, receiver, client_state=state)
    sub = sandbox.state.subscriptions[info.id]
    assert sub.client_state == state and sub.immutable_ids and sub.change_type == 'created,updated,deleted'
    assert info.expiration == sub.expiration.astimezone(dt.timezone.utc).replace(tzinfo=None, microsecond=info
                                                                                   .expiration.microsecond)
    assert info.expiration > dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) + dt.timedelta(minutes=10060)
    renewed = subscriptions.renew(client, info.id)
    assert renewed.id == info.id and renewed.expiration >= info.expiration
    sandbox.state.settings['reauthorize_patch_bug_window_s'] = 0
    subscriptions.reauthorize(client, info.id)
    assert subscriptions.delete(client, info.id) is True
    assert subscriptions.delete(client, info.id) is False, "already gone counts as deleted"
    with pytest.raises(errors.NotFound):
        subscriptions.renew(client, info.id)


def test_create_409_replaces_the_lost_one(sandbox, client, receiver):  # noqa: F811
    sandbox.state.settings['shared_mailbox_subscriptions'] = 'lenient'
    lost = create(client, receiver)
    again = create(client, receiver)
    assert again.id != lost.id
    assert [s.id for s in sandbox.state.subscriptions.values() if not s.removed] == [again.id]


def test_create_refused_on_a_shared_mailbox(client, receiver):  # noqa: F811
    with pytest.raises(errors.Forbidden) as refused:
        create(client, receiver)
    assert refused.value.code == 'ExtensionError'


def test_create_throttled_then_done(sandbox, client, receiver):  # noqa: F811
    sandbox.state.settings['shared_mailbox_subscriptions'] = 'lenient'
    sandbox.state.faults['graph'] = {'429': 1, '503': 1, 'retry_after': 0}
    assert create(client, receiver).id


def test_resource_for_quotes_the_mailbox():
    assert subscriptions.resource_for(' Support@Contoso.com ', 'sentitems') == \
        'users/support@contoso.com/mailFolders/sentitems/messages'
    assert '/' not in subscriptions.resource_for('a/b@c.com', 'inbox').split('/')[1]
    with pytest.raises(ValueError):
        subscriptions.resource_for('a@b.com', 'drafts')


# === NOTIFICATIONS === #

def item(**fields):
    return {'subscriptionId': 'abc-1', 'clientState': 'secret', 'tenantId': 'T1', 'changeType': 'created', **fields}


def test_parse_batch_and_check_items():
    raw = json.dumps({'value': [item(), item(clientState='nope'), item(tenantId='T2'), item(changeType='x'),
                                {'subscriptionId': 'abc-1', 'clientState': 'secret', 'tenantId': 'T1', 'lifecycleEvent': 'missed'},
                                'junk', item(subscriptionId='../../etc')]}).encode()
    parsed = notifications.parse_batch(raw)
    outcomes = [notifications.check_item(n, 'secret', 't1') for n in parsed]
    assert outcomes == ['ok', 'client_state_mismatch', 'tenant_mismatch', 'malformed', 'ok', 'malformed',
                        'malformed']
    assert parsed[4].lifecycle and parsed[4].event == 'missed'
    assert notifications.check_item(parsed[0], None, 't1') == 'unknown_subscription'


@pytest.mark.parametrize('raw, code', [
    (b'', 'not_json'), (b'\xff', 'not_json'), (b'[]', 'not_a_batch'), (b'{"value": 1}', 'not_a_batch'),
    (b'[' * 100000, 'not_json'), (json.dumps({'value': [{}] * 1001}).encode(), 'too_many'),
])
def test_parse_batch_refuses(raw, code):
    with pytest.raises(notifications.BatchError) as refused:
        notifications.parse_batch(raw)
    assert refused.value.code == code


def test_same_secret():
    assert notifications.same_secret('a\ud800', 'a\ud800')
    assert not notifications.same_secret(None, 'a') and not notifications.same_secret('a', None)
    assert not notifications.same_secret('a', 'b')
