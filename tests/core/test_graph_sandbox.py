"""graph.py against the sandbox's Graph mail room over HTTPS: paging that follows links verbatim (the sandbox
signs its ``$skiptoken``/``$deltatoken`` and rejects rebuilt links), delta rounds and resets, Retry-After,
401/403/404 mapping, the host allow-list, the per-mailbox concurrency limit and ``$batch`` item retries.

Faults are injected through ``state.faults["graph"]`` (``m365_sandbox/throttle.py``): ``{"429": N, "503": N,
"504": N, "retry_after": S, "latency_ms": X}``.
"""
import threading
from urllib.parse import urlsplit

import pytest
import requests

from m365_sandbox import mail_delta
from m365_sandbox.mail_store import deliver_inbound
from m365_sandbox.mailgen import generate_mail
from m365_sandbox.seed import CONNECTOR_SCOPES
from outlook_core import errors
from outlook_core.graph import GraphClient, batch_item_error

DOMAIN = 'contoso.onmicrosoft.com'
SUPPORT = 'support@' + DOMAIN          # service account: Full Access + Send As
HR = 'hr@' + DOMAIN                    # service account: no rights
INBOX = '/users/%s/mailFolders/inbox/messages' % SUPPORT


@pytest.fixture
def token(sandbox, demo):
    access, _ = sandbox.state.issue_tokens(demo['client_id'], demo['service_account']['id'], set(CONNECTOR_SCOPES))
    return access.token


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def graph(sandbox, token, sleeps):
    return make_client(sandbox, lambda: token, sleeps)


def make_client(sandbox, token_provider, sleeps, **kwargs):
    host = urlsplit(sandbox.graph_base).netloc
    return GraphClient(sandbox.graph_base, token_provider, ca_bundle=sandbox.ca_path, allowed_hosts=(host,),
                       sleep=sleeps.append, **kwargs)


def inbox_count(sandbox, upn):
    state = sandbox.state
    box = state.user_by_ref(upn)
    inbox = state.folder_by_ref(box.id, 'inbox')
    return sum(1 for message in state.messages.values() if message.folder_id == inbox.id)


# === PAGING === #

def test_iter_pages_follows_next_links_verbatim(sandbox, graph):
    generate_mail(sandbox.state, SUPPORT, 37, seed=3)
    pages = list(graph.iter_pages(INBOX, params={'$top': 5, '$select': 'subject,receivedDateTime'}))
    ids = [item['id'] for page in pages for item in page.items]
    assert len(ids) == len(set(ids)) == inbox_count(sandbox, SUPPORT)
    assert len(pages) >= 8 and pages[-1].next_link is None
    assert all(set(item) <= {'id', 'subject', 'receivedDateTime', '@odata.etag'} for item in pages[0].items)


def test_the_sandbox_rejects_a_rebuilt_link(sandbox, graph):
    """Proves the test above means something: re-adding $select to a nextLink is refused."""
    generate_mail(sandbox.state, SUPPORT, 12, seed=4)
    first = next(graph.iter_pages(INBOX, params={'$top': 5, '$select': 'subject'}))
    with pytest.raises(errors.GraphError) as info:
        graph.get(first.next_link, params={'$select': 'subject'})
    assert info.value.status == 400


def test_delta_rounds_and_reset(sandbox, graph):
    path = '/users/%s/mailFolders/inbox/messages/delta' % SUPPORT
    first_round = list(graph.delta(path, params={'$select': 'subject'}, page_size=3))
    seen = {item['id'] for page in first_round for item in page.items}
    assert len(seen) == inbox_count(sandbox, SUPPORT)
    delta_link = first_round[-1].delta_link
    assert delta_link and all(page.delta_link is None for page in first_round[:-1])

    new = deliver_inbound(sandbox.state, SUPPORT, from_addr={'name': 'Ann', 'address': 'ann@example.com'},
                          subject='New ticket', body_html='<p>Hi</p>')
    second_round = list(graph.delta(delta_link, page_size=3))
    assert new.id in {item['id'] for page in second_round for item in page.items}

    mail_delta.expire_tokens(sandbox.state, 'syncStateNotFound')
    with pytest.raises(errors.SyncReset):
        list(graph.delta(second_round[-1].delta_link))
    third_link = list(graph.delta(path, page_size=50))[-1].delta_link
    mail_delta.expire_tokens(sandbox.state, '410')
    with pytest.raises(errors.SyncReset) as info:
        list(graph.delta(third_link))
    assert info.value.status == 410 and info.value.location


# === THROTTLING === #

def test_429_and_503_retry_after_are_honoured(sandbox, graph, sleeps):
    sandbox.state.faults['graph'] = {'429': 2, '503': 1, 'retry_after': 3}
    assert graph.get(INBOX, params={'$top': 1})['value']
    assert sleeps == [3, 3, 3]


def test_504_is_retried_with_backoff(sandbox, graph, sleeps):
    sandbox.state.faults['graph'] = {'504': 1}
    assert graph.get(INBOX, params={'$top': 1})['value']
    assert len(sleeps) == 1 and 0 <= sleeps[0] <= 1


def test_throttling_that_outlasts_the_retries_is_raised(sandbox, graph, sleeps):
    sandbox.state.faults['graph'] = {'429': 10, 'retry_after': 1}
    with pytest.raises(errors.Throttled) as info:
        graph.get(INBOX)
    assert info.value.retry_after == 1 and len(sleeps) == graph.max_retries
    sandbox.state.faults['graph'] = {'429': 1, 'retry_after': 3600}
    with pytest.raises(errors.Throttled) as info:
        graph.get(INBOX)
    assert info.value.retry_after == 3600


def test_four_in_flight_per_mailbox_avoids_the_sandbox_429(sandbox, graph, token, sleeps):
    sandbox.state.faults['graph'] = {'latency_ms': 250}

    # Without the client: 8 concurrent requests on one mailbox, some get 429 (Outlook allows 4).
    def raw():
        return requests.get(sandbox.graph_base + INBOX, headers={'Authorization': 'Bearer ' + token},
                            verify=sandbox.ca_path, timeout=10).status_code
    statuses = run_concurrently(raw, 8)
    assert 429 in statuses

    # Through the client: the same load, no 429 at all (no retry slept).
    results = run_concurrently(lambda: graph.get(INBOX, params={'$top': 1}), 8)
    assert all(result['value'] for result in results)
    assert sleeps == []


def run_concurrently(function, count):
    results, threads = [None] * count, []
    for index in range(count):
        def target(index=index):
            results[index] = function()
        threads.append(threading.Thread(target=target))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


# === ERROR MAPPING === #

def test_401_for_a_bad_or_expired_token_is_not_retried(sandbox, demo, sleeps):
    graph = make_client(sandbox, lambda: 'eySBX.at.garbage', sleeps)
    with pytest.raises(errors.Unauthorized) as info:
        graph.get(INBOX)
    assert info.value.code == 'InvalidAuthenticationToken' and info.value.request_id
    assert sleeps == []


def test_token_provider_is_asked_on_every_request(sandbox, demo, sleeps):
    state, svc = sandbox.state, demo['service_account']['id']
    issued = []

    def provider():
        issued.append(state.issue_tokens(demo['client_id'], svc, set(CONNECTOR_SCOPES))[0].token)
        return issued[-1]
    graph = make_client(sandbox, provider, sleeps)
    graph.get(INBOX)
    graph.get(INBOX)
    assert len(set(issued)) == 2


def test_expired_token_is_unauthorized(sandbox, graph):
    sandbox.state.advance_clock(2 * 3600)
    with pytest.raises(errors.Unauthorized):
        graph.get(INBOX)


def test_403_without_mailbox_rights(graph):
    with pytest.raises(errors.Forbidden) as info:
        graph.get('/users/%s/messages' % HR)
    assert info.value.code == 'ErrorAccessDenied' and not isinstance(info.value, errors.SendAsDenied)


def test_403_send_as_denied(graph):
    message = {'message': {'subject': 'x', 'body': {'contentType': 'text', 'content': 'x'},
                           'toRecipients': [{'emailAddress': {'address': 'a@example.com'}}],
                           'from': {'emailAddress': {'address': HR}}}}
    with pytest.raises(errors.SendAsDenied):
        graph.post('/users/%s/sendMail' % HR, json=message)


def test_404_unknown_mailbox_and_message(graph):
    with pytest.raises(errors.NotFound):
        graph.get('/users/nobody@%s/messages' % DOMAIN)
    with pytest.raises(errors.NotFound):
        graph.get('/users/%s/messages/AAMkNoSuchMessage' % SUPPORT)


# === HOST ALLOW-LIST === #

def test_host_allow_list(sandbox, graph, token):
    with pytest.raises(errors.HostNotAllowed):
        graph.get('https://evil.example/v1.0/users/x/messages')
    with pytest.raises(errors.HostNotAllowed):
        graph.get(sandbox.graph_base.replace('https://', 'http://') + INBOX)
    with pytest.raises(errors.HostNotAllowed):   # the default allow-list knows only graph.microsoft.com
        GraphClient(sandbox.graph_base, lambda: token, ca_bundle=sandbox.ca_path)


# === BATCH === #

def test_batch_retries_throttled_items(sandbox, graph, sleeps):
    sandbox.state.settings.update(throttle_concurrency=1, throttle_concurrency_retry_after=1)
    sandbox.state.faults['graph'] = {'latency_ms': 100}
    graph.max_retries = 6
    results = graph.batch([{'id': str(n), 'method': 'GET', 'url': INBOX + '?$top=1'} for n in range(4)])
    assert {item_id: response['status'] for item_id, response in results.items()} == dict.fromkeys('0123', 200)
    assert sleeps and set(sleeps) == {1}   # each round waited for the items' own Retry-After


def test_batch_item_errors_are_mapped(graph):
    results = graph.batch([{'id': 'ok', 'method': 'GET', 'url': INBOX + '?$top=1'},
                           {'id': 'hr', 'method': 'GET', 'url': '/users/%s/messages' % HR}])
    assert batch_item_error(results['ok']) is None
    assert isinstance(batch_item_error(results['hr']), errors.Forbidden)


# === USAGE === #

def test_usage_counts_each_request_and_batch_item_per_mailbox(sandbox, graph):
    """ What Outlook counts against its limit per mailbox: every attempt (a throttled one too) and every $batch
    item, under the mailbox it addresses; the $batch envelope itself names no mailbox. """
    sandbox.state.faults['graph'] = {'429': 1, 'retry_after': 0}
    graph.get(INBOX, params={'$top': 1})                       # 429, then 200
    graph.get('/users/%s/mailFolders/sentitems' % SUPPORT)
    graph.batch([{'id': '1', 'method': 'GET', 'url': '/users/%s/mailFolders/inbox' % SUPPORT},
                 {'id': '2', 'method': 'GET', 'url': '/users/%s/mailFolders/inbox' % ('billing@' + DOMAIN)}])
    assert graph.usage == {SUPPORT: [4, 1], 'billing@' + DOMAIN: [1, 0]}
