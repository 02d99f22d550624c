"""GraphClient against a scripted session: retries, allow-list, paging, $batch, concurrency, logging.

The same behaviours are exercised over HTTPS against the sandbox in ``test_graph_sandbox.py``; these tests
pin the edge cases (timeouts, exact sleeps, huge Retry-After) that a live server makes awkward.
"""
import json
import logging
import threading
import time

import pytest
import requests

from outlook_core import errors
from outlook_core.graph import GraphClient, batch_item_error, mask, quote_segment

BASE = 'https://graph.microsoft.com/v1.0'


def response(status=200, body=None, headers=None):
    resp = requests.Response()
    resp.status_code = status
    resp.headers.update(headers or {})
    resp._content = json.dumps(body).encode() if body is not None else b''
    return resp


def envelope(code, message='m'):
    return {'error': {'code': code, 'message': message, 'innerError': {'request-id': 'rid'}}}


class ScriptedSession:
    """A stand-in for ``requests.Session``: answers from a list (or a function) and records every call."""

    def __init__(self, script):
        self.script = list(script) if not callable(script) else script
        self.calls = []
        self.verify = True

    def request(self, method, url, **kwargs):
        self.calls.append({'method': method, 'url': url, **kwargs})
        answer = self.script(method, url, kwargs) if callable(self.script) else self.script.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def client(script, **kwargs):
    session = ScriptedSession(script)
    sleeps = []
    tokens = iter('token-%d' % n for n in range(1000))
    graph = GraphClient(kwargs.pop('base_url', BASE), lambda: next(tokens), session=session,
                        sleep=sleeps.append, **kwargs)
    return graph, session, sleeps


# === ALLOW-LIST === #

def test_base_url_must_be_allowed_and_https():
    with pytest.raises(errors.HostNotAllowed) as info:
        GraphClient('https://evil.example/v1.0', lambda: 't')
    assert info.value.params == {'host': 'evil.example'}   # the Odoo layer names the host in its wording
    with pytest.raises(errors.HostNotAllowed):
        GraphClient('http://graph.microsoft.com/v1.0', lambda: 't')
    GraphClient('https://127.0.0.1:8443/v1.0', lambda: 't', allowed_hosts=('127.0.0.1:8443',))
    GraphClient('https://graph.microsoft.com:443/v1.0', lambda: 't')
    # A bare host allows any port (as the Odoo side passes urlsplit(...).hostname); host:port only that port.
    GraphClient('https://127.0.0.1:8443/v1.0', lambda: 't', allowed_hosts=('127.0.0.1',))
    with pytest.raises(errors.HostNotAllowed):
        GraphClient('https://127.0.0.1:9443/v1.0', lambda: 't', allowed_hosts=('127.0.0.1:8443',))


@pytest.mark.parametrize('link', [
    'https://evil.example/v1.0/users/x/messages?$skiptoken=1',
    'http://graph.microsoft.com/v1.0/users/x/messages?$skiptoken=1',
    'https://graph.microsoft.com@evil.example/v1.0/users/x/messages',
    'https://graph.microsoft.com\\@evil.example/v1.0/users/x/messages',
    'https://graph.microsoft.com.evil.example/v1.0/users/x/messages',
])
def test_next_link_outside_allow_list_is_refused_before_sending(link):
    graph, session, _ = client([response(200, {'value': [1], '@odata.nextLink': link})])
    pages = graph.iter_pages('/users/x/messages')
    assert next(pages).items == [1]
    with pytest.raises(errors.HostNotAllowed):
        next(pages)
    assert len(session.calls) == 1   # the token never left for the forged host


# === PAGING === #

def test_iter_pages_follows_next_link_verbatim():
    link = BASE + "/users/a%40b.com/messages?%24select=subject&%24skip=13&%24skiptoken=Zm9v%2Bbar%3D%3D"
    graph, session, _ = client([
        response(200, {'value': [1, 2], '@odata.nextLink': link}),
        response(200, {'value': [], '@odata.nextLink': link + 'x'}),   # empty page, more to come
        response(200, {'value': [3]}),
    ])
    pages = list(graph.iter_pages('/users/a@b.com/messages', params={'$select': 'subject', '$top': 2}))
    assert [page.items for page in pages] == [[1, 2], [], [3]]
    assert session.calls[0]['url'] == BASE + '/users/a@b.com/messages'
    assert session.calls[0]['params'] == {'$select': 'subject', '$top': 2}
    assert session.calls[1]['url'] == link and session.calls[1]['params'] is None
    assert session.calls[2]['url'] == link + 'x'


def test_a_repeating_next_link_stops_paging():
    link = BASE + '/users/x/messages?$skiptoken=1'
    graph, session, _ = client([response(200, {'value': [1], '@odata.nextLink': link}),
                                response(200, {'value': [2], '@odata.nextLink': link})])
    with pytest.raises(errors.GraphError):
        list(graph.iter_pages('/users/x/messages'))
    assert len(session.calls) == 2


def test_delta_sends_prefer_on_every_page_and_ends_with_delta_link():
    graph, session, _ = client([
        response(200, {'value': [{'id': 'a'}], '@odata.nextLink': BASE + '/d?$skiptoken=1'}),
        response(200, {'value': [{'id': 'b', '@removed': {'reason': 'deleted'}}],
                       '@odata.deltaLink': BASE + '/d?$deltatoken=2'}),
    ])
    pages = list(graph.delta('/users/x/mailFolders/inbox/messages/delta', params={'$select': 'subject'},
                             page_size=25, immutable_ids=True))
    assert pages[-1].delta_link == BASE + '/d?$deltatoken=2' and pages[0].delta_link is None
    for call in session.calls:
        assert call['headers']['Prefer'] == 'odata.maxpagesize=25, IdType="ImmutableId"'


# === RETRIES === #

def test_retry_after_is_honoured():
    graph, session, sleeps = client([response(429, envelope('TooManyRequests'), {'Retry-After': '7'}),
                                     response(503, envelope('serviceNotAvailable'), {'Retry-After': '2'}),
                                     response(200, {'ok': True})])
    assert graph.get('/users/x/messages') == {'ok': True}
    assert sleeps == [7, 2]
    # A fresh token is asked for on every attempt.
    assert [c['headers']['Authorization'] for c in session.calls] == ['Bearer token-0', 'Bearer token-1',
                                                                      'Bearer token-2']


def test_backoff_with_jitter_when_no_retry_after():
    graph, _, sleeps = client([response(429, envelope('TooManyRequests'))] * 3 + [response(200, {})])
    graph.get('/me/messages')
    assert len(sleeps) == 3
    for attempt, slept in enumerate(sleeps):
        assert 0 <= slept <= 2 ** attempt


def test_retries_are_bounded():
    graph, session, sleeps = client([response(429, envelope('TooManyRequests'), {'Retry-After': '1'})] * 10,
                                    max_retries=2)
    with pytest.raises(errors.Throttled) as info:
        graph.get('/me/messages')
    assert info.value.retry_after == 1
    assert len(session.calls) == 3 and sleeps == [1, 1]


def test_long_retry_after_goes_to_the_caller():
    graph, session, sleeps = client([response(429, envelope('TooManyRequests'), {'Retry-After': '3600'})])
    with pytest.raises(errors.Throttled) as info:
        graph.get('/me/messages')
    assert info.value.retry_after == 3600 and sleeps == [] and len(session.calls) == 1


def test_total_wait_is_bounded():
    graph, session, sleeps = client([response(429, envelope('TooManyRequests'), {'Retry-After': '25'})] * 5,
                                    max_wait=60)
    with pytest.raises(errors.Throttled):
        graph.get('/me/messages')
    assert sleeps == [25, 25] and len(session.calls) == 3   # a third wait would pass 60 s


def test_get_is_retried_after_timeout_but_post_is_not():
    graph, session, sleeps = client([requests.ReadTimeout(), response(200, {'v': 1})])
    assert graph.get('/me/messages') == {'v': 1}
    assert len(sleeps) == 1

    graph, session, sleeps = client([requests.ReadTimeout(), response(202)])
    with pytest.raises(errors.TransientError) as info:
        graph.post('/users/x/sendMail', json={'message': {}})
    assert info.value.status is None and len(session.calls) == 1   # no double send
    # A connect timeout never reached Graph: safe to resend even a POST.
    graph, session, _ = client([requests.ConnectTimeout(), response(202)])
    assert graph.post('/users/x/sendMail', json={}) is None and len(session.calls) == 2


def test_5xx_retried_for_get_not_for_post():
    graph, session, _ = client([response(502), response(200, {'v': 1})])
    assert graph.get('/me') == {'v': 1}
    graph, session, _ = client([response(500, envelope('generalException'))])
    with pytest.raises(errors.TransientError):
        graph.post('/users/x/sendMail', json={})
    assert len(session.calls) == 1


def test_connection_errors_become_transient_after_retries():
    graph, session, _ = client([requests.ConnectionError('boom')] * 3, max_retries=2)
    with pytest.raises(errors.TransientError):
        graph.get('/me')
    assert len(session.calls) == 3


# === ERROR MAPPING === #

@pytest.mark.parametrize('status, code, expected', [
    (401, 'InvalidAuthenticationToken', errors.Unauthorized),
    (403, 'ErrorAccessDenied', errors.Forbidden),
    (403, 'ErrorSendAsDenied', errors.SendAsDenied),
    (404, 'ErrorInvalidUser', errors.NotFound),
    (410, '', errors.SyncReset),
    (400, 'syncStateNotFound', errors.SyncReset),
])
def test_errors_are_mapped_and_not_retried(status, code, expected):
    graph, session, sleeps = client([response(status, envelope(code), {'request-id': 'r-1'})])
    with pytest.raises(expected) as info:
        graph.get('/users/x/messages')
    assert info.value.request_id == 'r-1'
    assert len(session.calls) == 1 and sleeps == []


def test_redirects_are_not_followed():
    graph, session, _ = client([response(200, {})])
    graph.get('/me')
    assert session.calls[0]['allow_redirects'] is False


# === BATCH === #

def test_batch_validates_items():
    graph, _, _ = client([])
    with pytest.raises(ValueError):
        graph.batch([{'id': str(n), 'method': 'GET', 'url': '/me'} for n in range(21)])
    with pytest.raises(ValueError):
        graph.batch([{'id': '1', 'method': 'GET', 'url': '/me'}, {'id': '1', 'method': 'GET', 'url': '/me'}])
    with pytest.raises(ValueError):
        graph.batch([{'id': '1', 'method': 'GET', 'url': 'https://evil.example/x'}])
    with pytest.raises(ValueError):
        graph.batch([{'id': '1', 'method': 'GET', 'url': '//evil.example/x'}])


def test_batch_retries_throttled_items_after_longest_retry_after():
    first = {'responses': [
        {'id': '2', 'status': 429, 'headers': {'Retry-After': '3'}, 'body': envelope('TooManyRequests')},
        {'id': '1', 'status': 200, 'headers': {}, 'body': {'v': 1}},
        {'id': '3', 'status': 429, 'headers': {'Retry-After': '9'}, 'body': envelope('TooManyRequests')},
        {'id': '4', 'status': 424, 'headers': {}, 'body': envelope('FailedDependency')},
    ]}
    second = {'responses': [{'id': '3', 'status': 200, 'body': {'v': 3}},
                            {'id': '2', 'status': 200, 'body': {'v': 2}},
                            {'id': '4', 'status': 201, 'body': {'v': 4}}]}
    graph, session, sleeps = client([response(200, first), response(200, second)])
    results = graph.batch([
        {'id': 1, 'method': 'GET', 'url': '/users/a/messages'},
        {'id': '2', 'method': 'GET', 'url': '/users/b/messages'},
        {'id': '3', 'method': 'PATCH', 'url': '/users/c/messages/m', 'body': {'isRead': True}},
        {'id': '4', 'method': 'POST', 'url': '/users/c/messages/m/reply', 'body': {}, 'dependsOn': ['3', '1']},
    ])
    assert sleeps == [9]
    assert {k: v['status'] for k, v in results.items()} == {'1': 200, '2': 200, '3': 200, '4': 201}
    resent = session.calls[1]['json']['requests']
    assert sorted(item['id'] for item in resent) == ['2', '3', '4']
    assert [item for item in resent if item['id'] == '4'][0]['dependsOn'] == ['3']   # '1' already done
    assert session.calls[0]['json']['requests'][2]['headers'] == {'Content-Type': 'application/json'}
    assert session.calls[0]['url'] == BASE + '/$batch'


def test_batch_resends_indirect_dependents_of_a_throttled_item():
    first = {'responses': [
        {'id': 'a', 'status': 429, 'headers': {'Retry-After': '1'}},
        {'id': 'b', 'status': 424}, {'id': 'c', 'status': 424}, {'id': 'd', 'status': 404},
    ]}
    second = {'responses': [{'id': key, 'status': 200} for key in 'abc']}
    graph, session, _ = client([response(200, first), response(200, second)])
    results = graph.batch([
        {'id': 'a', 'method': 'GET', 'url': '/me'},
        {'id': 'b', 'method': 'GET', 'url': '/me', 'dependsOn': ['a']},
        {'id': 'c', 'method': 'GET', 'url': '/me', 'dependsOn': ['b']},
        {'id': 'd', 'method': 'GET', 'url': '/me/messages/x'},
    ])
    assert [item['id'] for item in session.calls[1]['json']['requests']] == ['a', 'b', 'c']
    assert results['d']['status'] == 404 and results['c']['status'] == 200


def test_batch_envelope_424_is_read_like_200():
    body = {'responses': [{'id': '1', 'status': 404, 'body': envelope('ErrorItemNotFound')}]}
    graph, _, _ = client([response(424, body)])
    results = graph.batch([{'id': '1', 'method': 'GET', 'url': '/users/a/messages/x'}])
    assert isinstance(batch_item_error(results['1']), errors.NotFound)
    assert batch_item_error({'status': 200}) is None


# === CONCURRENCY === #

def test_at_most_four_requests_in_flight_per_mailbox():
    lock, in_flight, peak = threading.Lock(), {'a': 0, 'b': 0}, {'a': 0, 'b': 0}

    def slow(method, url, kwargs):
        box = url.split('/users/')[1].split('/')[0].lower()   # 'A' is the same mailbox as 'a'
        with lock:
            in_flight[box] += 1
            peak[box] = max(peak[box], in_flight[box])
        time.sleep(0.02)
        with lock:
            in_flight[box] -= 1
        return response(200, {})

    graph, _, _ = client(slow)
    threads = [threading.Thread(target=graph.get, args=('/users/%s/messages/%d' % (box, n),))
               for n in range(12) for box in ('a', 'A' if n % 2 else 'b')]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 2 <= peak['a'] <= 4 and peak['b'] <= 4   # 18 requests for a (a and A), 6 for b


class RecordingSlots:
    """A slot provider that records what it is asked, holding nothing (or refusing every slot)."""

    def __init__(self, busy=False):
        self.busy = busy
        self.events = []

    def acquire(self, key, timeout):
        slots = self

        class Hold:
            def __enter__(self):
                slots.events.append(('enter', key, timeout))
                if slots.busy:
                    raise errors.MailboxBusy('busy')
                return self

            def __exit__(self, *_exc):
                slots.events.append(('exit', key))
                return False
        return Hold()


def test_a_custom_slot_provider_holds_each_attempt_on_a_mailbox():
    slots = RecordingSlots()
    graph, session, _ = client([response(503, envelope('ServiceUnavailable'), {'Retry-After': '1'}),
                                response(200, {}), response(200, {})], slots=slots, slot_wait=7)
    graph.get('/users/Support%40Contoso.com/messages')
    graph.post('/$batch', json={'requests': []})   # addresses no mailbox: no slot
    key = ('graph.microsoft.com', 'support@contoso.com')
    assert slots.events == [('enter', key, 7), ('exit', key)] * 2   # released while the retry slept
    assert len(session.calls) == 3


def test_a_slot_provider_refusing_raises_mailbox_busy_and_sends_nothing():
    graph, session, sleeps = client([response(200, {})], slots=RecordingSlots(busy=True))
    with pytest.raises(errors.Throttled) as info:   # handled like throttling: a cron reschedules
        graph.get('/users/a/messages')
    assert isinstance(info.value, errors.MailboxBusy) and info.value.status is None
    assert session.calls == [] and sleeps == []


def test_the_default_slots_wait_a_bounded_time_then_raise_mailbox_busy():
    release, entered = threading.Event(), threading.Semaphore(0)

    def held(method, url, kwargs):
        if '/users/busy/' in url:
            entered.release()
            release.wait(10)
        return response(200, {})

    graph, session, _ = client(held, slot_wait=0.2)
    threads = [threading.Thread(target=graph.get, args=('/users/busy/messages',)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for _ in threads:
        assert entered.acquire(timeout=10)   # the 4 slots are taken
    try:
        started = time.monotonic()
        with pytest.raises(errors.MailboxBusy):
            graph.get('/users/BUSY/messages')
        assert 0.15 <= time.monotonic() - started < 5
        assert len(session.calls) == 4
        graph.get('/users/other/messages')   # another mailbox has slots of its own
    finally:
        release.set()
        for thread in threads:
            thread.join()
    graph.get('/users/busy/messages')   # freed slots are taken again
    assert len(session.calls) == 6


# === LOGGING === #

def test_logs_carry_path_status_request_id_but_no_token(caplog):
    graph, _, _ = client([response(429, envelope('TooManyRequests'), {'Retry-After': '1', 'request-id': 'r-9'}),
                          response(200, {}, {'request-id': 'r-10'})])
    with caplog.at_level(logging.DEBUG, logger='outlook_core'):
        graph.get('/users/x/messages', params={'$filter': "from/emailAddress/address eq 'a@b.c'"})
    text = caplog.text
    assert '/v1.0/users/x/messages' in text and 'r-9' in text and 'r-10' in text and '429' in text
    assert 'token-' not in text and 'Bearer' not in text and "a@b.c" not in text


def test_mask_hides_sensitive_keys_recursively():
    masked = mask({'Authorization': 'Bearer x', 'refresh_token': 'rt', 'nested': [{'client_secret': 's'}],
                   'scope': 'Mail.Read'})
    assert masked == {'Authorization': '[REDACTED]', 'refresh_token': '[REDACTED]',
                      'nested': [{'client_secret': '[REDACTED]'}], 'scope': 'Mail.Read'}


def test_quote_segment_keeps_a_value_inside_its_segment():
    assert quote_segment('support@contoso.com') == 'support@contoso.com'
    assert quote_segment('a/../../subscriptions?x=1#y') == 'a%2F..%2F..%2Fsubscriptions%3Fx=1%23y'
    graph, session, _ = client([response(200, {})])
    graph.get('/users/%s/messages' % quote_segment('odd name/x'))
    assert session.calls[0]['url'] == BASE + '/users/odd%20name%2Fx/messages'


def test_a_path_mentioning_a_url_is_still_a_path():
    graph, session, _ = client([response(200, {})])
    graph.get("/users/x/messages?$search=\"https://example.com\"")
    assert session.calls[0]['url'].startswith(BASE + '/users/x/messages?')


# === UPLOAD SESSIONS === #

def test_upload_ranges_go_to_outlooks_upload_host_without_the_token():
    graph, session, _sleeps = client([response(200, {'nextExpectedRanges': ['3']}), response(201)])
    url = "https://outlook.office.com/api/v2.0/Users('u')/Messages('m')/AttachmentSessions('s')?authtoken=x"
    assert graph.put_range(url, b'abc', 0, 6) == {'nextExpectedRanges': ['3']}
    assert graph.put_range(url, b'def', 3, 6) is None
    first, second = session.calls
    assert 'Authorization' not in first['headers'] and first['headers']['Content-Range'] == 'bytes 0-2/6'
    assert second['headers']['Content-Range'] == 'bytes 3-5/6' and second['data'] == b'def'


def test_upload_hosts_are_not_graph_hosts():
    graph, session, _sleeps = client([])
    # An authorized request (the token) never goes to the upload host, and an upload never elsewhere.
    with pytest.raises(errors.HostNotAllowed):
        graph.get("https://outlook.office.com/api/v2.0/me")
    with pytest.raises(errors.HostNotAllowed):
        graph.put_range("https://evil.example.com/upload?authtoken=x", b'a', 0, 1)
    assert session.calls == []
