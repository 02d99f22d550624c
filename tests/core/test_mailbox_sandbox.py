"""mailbox.py's ``MailboxReader`` against the sandbox's Graph mail room over HTTPS (docs/microsoft-graph.md §3, §5, §6).

Messages are made through the control API (``/control/mail/generate``, ``/deliver``, ``/move``, ``/delete``,
``/delta/expire``); the cost of each step is counted twice: the HTTP requests the client sent (a counting
``requests.Session``) and the Graph requests the sandbox served for the mailbox (``/control/mail/counts``,
where every ``$batch`` item counts as one).
"""
import datetime as dt
import json
import re
import threading
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import requests

from m365_sandbox.seed import CONNECTOR_SCOPES
from outlook_core import errors
from outlook_core.graph import GraphClient
from outlook_core.mailbox import (
    BACKFILL_BATCH_MESSAGES, BACKFILL_PAGE_SIZE, DeltaRequest, MailboxProbe, MailboxReader, delta_pages,
    fetch_messages_of,
)
from outlook_core.mapping import map_delta_item, map_messages

DOMAIN = 'contoso.onmicrosoft.com'
SUPPORT = 'support@' + DOMAIN          # service account: Full Access + Send As
HR = 'hr@' + DOMAIN                    # service account: no rights


class CountingSession(requests.Session):
    """Records every request the client sends: (method, url, params, json)."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def request(self, method, url, *args, **kwargs):
        self.calls.append((method.upper(), url, kwargs.get('params'), kwargs.get('json')))
        return super().request(method, url, *args, **kwargs)


@pytest.fixture
def session():
    with CountingSession() as counting:
        yield counting


@pytest.fixture
def client(sandbox, demo, session):
    access, _ = sandbox.state.issue_tokens(demo['client_id'], demo['service_account']['id'], set(CONNECTOR_SCOPES))
    host = urlsplit(sandbox.graph_base).netloc
    return GraphClient(sandbox.graph_base, lambda: access.token, ca_bundle=sandbox.ca_path, allowed_hosts=(host,),
                       session=session, sleep=lambda _s: pytest.fail("no retry expected"))


@pytest.fixture
def reader(client):
    return MailboxReader(client, ' Support@Contoso.onmicrosoft.com ')


# === HELPERS === #

def control(http, sandbox, path, payload=None):
    response = (http.post(sandbox.control_base + path, json=payload) if payload is not None
                else http.get(sandbox.control_base + path))
    assert response.status_code in (200, 201), response.text
    return response.json()


def served(http, sandbox, mailbox=SUPPORT):
    """Graph requests the sandbox has served for ``mailbox`` so far."""
    return control(http, sandbox, '/mail/counts')['mailboxes'].get(mailbox, 0)


def folder_messages(sandbox, upn, folder):
    state = sandbox.state
    box = state.user_by_ref(upn)
    target = state.folder_by_ref(box.id, folder)
    return [message for message in state.messages.values() if target and message.folder_id == target.id]


def window_start(sandbox, days):
    """Naive UTC, whole seconds (what ``$filter`` carries), ``days`` before the sandbox's now."""
    return (sandbox.state.now() - dt.timedelta(days=days)).replace(tzinfo=None, microsecond=0)


def in_window(sandbox, upn, folder, since):
    since = since.replace(tzinfo=dt.timezone.utc)
    return {message.immutable_id: message for message in folder_messages(sandbox, upn, folder)
            if message.received >= since}


def run_delta_round(reader, folder, since, link=None):
    """Pages of one delta round to its delta link: (changes, delta link, pages)."""
    changes, pages = [], 0
    while True:
        page = reader.delta_page(folder, since, link)
        pages += 1
        changes += [map_delta_item(item) for item in page.items]
        assert bool(page.next_link) != bool(page.delta_link)
        if page.delta_link:
            return changes, page.delta_link, pages
        link = page.next_link
        assert pages < 100


# === PROBE === #

def test_probe_a_readable_mailbox_in_one_request(sandbox, http, reader, session):
    before = served(http, sandbox)
    probe = reader.probe()
    assert probe == MailboxProbe(display_name='Contoso Support',
                                 inbox_total=len(folder_messages(sandbox, SUPPORT, 'inbox')))
    assert probe.inbox_total == 8     # the demo's generated mail
    assert [(method, urlsplit(url).path) for method, url, _p, _j in session.calls] == [('POST', '/v1.0/$batch')]
    assert served(http, sandbox) - before == 3      # inbox, one sent item, ten received: three batch items


def test_probe_finds_the_display_name_in_sent_items_too(sandbox, http, reader):
    """With an empty Inbox the name comes from the mailbox's own sent mail."""
    for message in folder_messages(sandbox, SUPPORT, 'inbox'):
        control(http, sandbox, '/mail/delete', {'id': message.immutable_id, 'permanent': True})
    box = sandbox.state.user_by_ref(SUPPORT)
    control(http, sandbox, '/mail/generate', {'mailbox': SUPPORT, 'count': 1, 'folder': 'sentitems'})
    sent = folder_messages(sandbox, SUPPORT, 'sentitems')[0]
    sent.from_addr = {'name': box.display_name, 'address': box.upn}
    assert reader.probe() == MailboxProbe(display_name='Contoso Support', inbox_total=0)


def test_probe_without_rights_is_forbidden(sandbox, client):
    with pytest.raises(errors.Forbidden) as info:
        MailboxReader(client, HR).probe()
    assert info.value.status == 403 and info.value.code == 'ErrorAccessDenied'


def test_probe_of_an_unknown_address_is_not_found(sandbox, client):
    with pytest.raises(errors.NotFound) as info:
        MailboxReader(client, 'nobody@' + DOMAIN).probe()
    assert info.value.status == 404


# === WINDOW COUNTS === #

def test_count_window_counts_both_folders_in_one_request(sandbox, http, reader, session):
    control(http, sandbox, '/mail/generate', {'mailbox': SUPPORT, 'count': 120, 'days': 30, 'seed': 11})
    control(http, sandbox, '/mail/generate', {'mailbox': SUPPORT, 'count': 40, 'days': 30, 'seed': 12,
                                              'folder': 'sentitems'})
    since = window_start(sandbox, 12)
    expected = {folder: len(in_window(sandbox, SUPPORT, folder, since)) for folder in ('inbox', 'sentitems')}
    assert 0 < expected['inbox'] < 128 and 0 < expected['sentitems'] < 40     # the filter matters
    before = served(http, sandbox)
    assert reader.count_window(since) == expected
    assert len(session.calls) == 1 and served(http, sandbox) - before == 2


def test_count_window_of_a_forbidden_mailbox_raises(client):
    with pytest.raises(errors.Forbidden):
        MailboxReader(client, HR).count_window(dt.datetime(2024, 1, 1))


# === BACKFILL === #

def test_backfill_pages_newest_first_to_the_end_with_every_message_once(sandbox, http, reader, session):
    control(http, sandbox, '/mail/generate', {'mailbox': SUPPORT, 'count': 120, 'days': 30, 'seed': 7})
    since = window_start(sandbox, 27)
    expected = in_window(sandbox, SUPPORT, 'inbox', since)
    assert BACKFILL_PAGE_SIZE * 2 < len(expected) < 128        # several pages, and the window leaves some out
    before = served(http, sandbox)

    pages, link = [], None
    while True:
        page = reader.backfill_page('inbox', since, link)
        pages.append(page)
        assert page.delta_link is None and len(page.items) <= BACKFILL_PAGE_SIZE
        if not page.next_link:
            break
        link = page.next_link
        assert len(pages) < 20

    # nextLinks followed verbatim: each request after the first is exactly the previous page's link
    assert len(session.calls) == len(pages) == served(http, sandbox) - before
    for (_m, url, params, _j), previous in zip(session.calls[1:], pages):
        assert url == previous.next_link and params is None
    first_method, first_url, first_params, _j = session.calls[0]
    assert first_url.endswith('/users/support@contoso.onmicrosoft.com/mailFolders/inbox/messages')
    assert first_params['$orderby'] == 'receivedDateTime desc' and first_params['$expand'] == 'attachments'

    messages, skipped = map_messages([item for page in pages for item in page.items], 'inbox')
    ids = [message.graph_id for message in messages]
    assert skipped == 0
    assert len(ids) == len(set(ids)) == len(expected) and set(ids) == set(expected)     # immutable ids, once each
    assert not set(ids) & {message.id for message in expected.values()}              # never the mutable ones
    received = [message.received_at for message in messages]
    assert received == sorted(received, reverse=True)                                # newest first
    assert all(message.body_html and message.from_ and message.change_key for message in messages)
    # what only $select / $expand bring: headers of replies, file attachments with their bytes
    with_parent = [message for message in messages if expected[message.graph_id].in_reply_to]
    assert with_parent and all(message.in_reply_to == expected[message.graph_id].in_reply_to
                               for message in with_parent)
    attached = [(attachment, message) for message in messages for attachment in message.attachments]
    assert attached
    for attachment, message in attached:
        source = next(a for a in expected[message.graph_id].attachments if a.id == attachment.graph_id)
        assert attachment.content == source.content and attachment.is_inline == source.is_inline


def test_backfill_resumes_from_a_stored_next_link(sandbox, http, reader):
    control(http, sandbox, '/mail/generate', {'mailbox': SUPPORT, 'count': 120, 'days': 30, 'seed': 8})
    since = window_start(sandbox, 60)
    first = reader.backfill_page('inbox', since)
    # a new reader (another cron run) continues from the checkpoint alone
    resumed = MailboxReader(reader.client, SUPPORT)
    ids, link = [item['id'] for item in first.items], first.next_link
    while link:
        page = resumed.backfill_page('inbox', dt.datetime(2099, 1, 1), link)     # since is ignored with a link
        ids += [item['id'] for item in page.items]
        link = page.next_link
    assert sorted(ids) == sorted(in_window(sandbox, SUPPORT, 'inbox', since)) and len(ids) == 128


def test_backfill_pages_reads_pages_of_50_until_the_batch_is_full(sandbox, http, reader, session):
    control(http, sandbox, '/mail/generate', {'mailbox': SUPPORT, 'count': 120, 'days': 30, 'seed': 9})
    since = window_start(sandbox, 60)
    expected = in_window(sandbox, SUPPORT, 'inbox', since)
    assert len(expected) == 128

    first = reader.backfill_pages('inbox', since, max_messages=100)
    assert len(first.items) == 100 and first.next_link      # two Graph pages of 50 (and any empty one), as one
    assert session.calls[0][2]['$top'] == BACKFILL_PAGE_SIZE and len(session.calls) >= 2
    assert all(url.endswith('/users/support@contoso.onmicrosoft.com/mailFolders/inbox/messages') or params is None
               for _m, url, params, _j in session.calls)              # then the nextLinks, verbatim
    rest = reader.backfill_pages('inbox', since, first.next_link, max_messages=100)
    assert len(rest.items) == 28 and rest.next_link is None
    ids = [item['id'] for item in first.items + rest.items]
    assert len(ids) == len(set(ids)) and set(ids) == set(expected)
    # the default batch holds the whole window here: three pages, up to the folder's end
    whole = reader.backfill_pages('inbox', since)
    assert BACKFILL_BATCH_MESSAGES >= 128 and len(whole.items) == 128 and whole.next_link is None


def test_backfill_pages_stop_at_the_content_size(sandbox, http, reader, session):
    control(http, sandbox, '/mail/generate', {'mailbox': SUPPORT, 'count': 120, 'days': 30, 'seed': 9})
    since = window_start(sandbox, 60)
    page = reader.backfill_pages('inbox', since, max_messages=1000, max_bytes=1)
    assert len(page.items) == BACKFILL_PAGE_SIZE and len(session.calls) == 1 and page.next_link


def test_backfill_pages_end_before_a_page_that_fails_and_raise_only_the_first_pages_error(
        sandbox, http, demo, session):
    control(http, sandbox, '/mail/generate', {'mailbox': SUPPORT, 'count': 120, 'days': 30, 'seed': 9})
    since = window_start(sandbox, 60)
    access, _ = sandbox.state.issue_tokens(demo['client_id'], demo['service_account']['id'], set(CONNECTOR_SCOPES))

    class StormAfterFirstPage(requests.Session):
        """Once the first page has arrived, the sandbox answers the next request 503 (Retry-After 10 s)."""
        sent = 0

        def request(self, *args, **kwargs):
            if self.sent == 1:
                sandbox.state.faults['graph'] = {'503': 1}
            self.sent += 1
            return super().request(*args, **kwargs)

    with StormAfterFirstPage() as storm:
        client = GraphClient(sandbox.graph_base, lambda: access.token, ca_bundle=sandbox.ca_path,
                             allowed_hosts=(urlsplit(sandbox.graph_base).netloc,), session=storm, max_retries=0)
        reader = MailboxReader(client, SUPPORT)
        page = reader.backfill_pages('inbox', since, max_messages=200)
        assert storm.sent == 2 and len(page.items) == BACKFILL_PAGE_SIZE and page.next_link
        # the checkpoint is the failed page's link: reading from it later gets the rest, nothing is skipped
        rest = reader.backfill_pages('inbox', since, page.next_link, max_messages=200)
        ids = [item['id'] for item in page.items + rest.items]
        assert len(ids) == len(set(ids)) == 128 and rest.next_link is None
        # an error on the batch's first page is raised, as backfill_page raises it
        sandbox.state.faults['graph'] = {'503': 1}
        with pytest.raises(errors.OutlookError):
            reader.backfill_pages('inbox', since, page.next_link)
    sandbox.state.faults['graph'] = {}


# === DELTA === #

def test_delta_initial_round_then_new_read_and_moved_out(sandbox, http, reader, client, session):
    control(http, sandbox, '/mail/generate', {'mailbox': SUPPORT, 'count': 120, 'days': 30, 'seed': 5})
    since = window_start(sandbox, 20)
    expected = in_window(sandbox, SUPPORT, 'inbox', since)

    changes, delta_link, pages = run_delta_round(reader, 'inbox', since)
    assert {change.graph_id for change in changes} == set(expected)          # replays allowed, nothing missing
    assert not any(change.removed for change in changes)
    unread = {message.immutable_id for message in expected.values() if not message.is_read}
    assert {change.graph_id for change in changes if change.is_read is False} == unread
    assert all(change.received_at and change.change_key for change in changes)
    first_params = session.calls[0][2]
    assert set(first_params) == {'$select', '$filter'}
    assert all(params is None for _m, _u, params, _j in session.calls[1:])

    # a delivered message, a read flag changed, a message moved out of the Inbox
    delivered = control(http, sandbox, '/mail/deliver', {
        'mailbox': SUPPORT, 'from': {'name': 'Ann', 'address': 'ann@example.com'}, 'subject': 'Neues Ticket',
        'body_html': '<p>Hallo</p>'})
    to_read, to_move = sorted(unread)[:2]
    old_change_key = expected[to_read].change_key
    client.patch('/users/%s/messages/%s' % (SUPPORT, to_read), json={'isRead': True})
    client.post('/users/%s/messages/%s/move' % (SUPPORT, to_move), json={'destinationId': 'deleteditems'})

    changes, second_link, _pages = run_delta_round(reader, 'inbox', since, delta_link)
    by_id = {}
    for change in changes:
        by_id.setdefault(change.graph_id, change)
    assert set(by_id) == {delivered['immutable_id'], to_read, to_move}
    new = by_id[delivered['immutable_id']]
    assert not new.removed and new.subject == 'Neues Ticket' and new.is_read is False and new.received_at
    read = by_id[to_read]
    assert not read.removed and read.is_read is True and read.subject is None      # only what changed
    assert read.change_key == sandbox.state.messages[to_read].change_key != old_change_key
    assert by_id[to_move].removed is True                      # moved out: @removed, under its immutable id
    assert second_link != delta_link

    # nothing happened since: an empty round
    changes, _link, _pages = run_delta_round(reader, 'inbox', since, second_link)
    assert changes == []


@pytest.mark.parametrize('mode, status', [('syncStateNotFound', 400), ('410', 410)])
def test_delta_expired_link_raises_sync_reset(sandbox, http, reader, mode, status):
    since = window_start(sandbox, 60)
    _changes, delta_link, _pages = run_delta_round(reader, 'inbox', since)
    assert control(http, sandbox, '/mail/delta/expire', {'mode': mode, 'mailbox': SUPPORT})['mode'] == mode
    with pytest.raises(errors.SyncReset) as info:
        reader.delta_page('inbox', since, delta_link)
    assert info.value.status == status
    if status == 410:
        assert info.value.location and '/mailFolders/inbox/messages/delta' in info.value.location
    else:
        assert info.value.code == 'syncStateNotFound'
    # a new round without a link starts over and works
    changes, new_link, _pages = run_delta_round(reader, 'inbox', since)
    assert {change.graph_id for change in changes} == set(in_window(sandbox, SUPPORT, 'inbox', since))
    assert new_link != delta_link


# === FETCH BY ID === #

def test_fetch_25_messages_in_two_batches_with_a_deleted_one_missing(sandbox, http, reader, session):
    control(http, sandbox, '/mail/generate', {'mailbox': SUPPORT, 'count': 30, 'days': 30, 'seed': 9})
    ids = sorted(message.immutable_id for message in folder_messages(sandbox, SUPPORT, 'inbox'))[:25]
    gone = ids[13]
    control(http, sandbox, '/mail/delete', {'id': gone, 'permanent': True})
    before = served(http, sandbox)

    found, missing = reader.fetch_messages(ids)

    assert missing == [gone]
    messages, skipped = map_messages(found, 'inbox')
    assert skipped == 0 and [message.graph_id for message in messages] == [i for i in ids if i != gone]
    state_messages = sandbox.state.messages
    for message in messages:
        source = state_messages[message.graph_id]
        assert message.subject == source.subject and message.body_html == source.body
        assert message.internet_message_id == source.internet_message_id
        assert len(message.attachments) == len(source.attachments)
    batches = [(method, urlsplit(url).path, len(body['requests'])) for method, url, _p, body in session.calls]
    assert batches == [('POST', '/v1.0/$batch', 20), ('POST', '/v1.0/$batch', 5)]
    assert served(http, sandbox) - before == 25


def test_fetch_nothing_sends_nothing(reader, session):
    assert reader.fetch_messages([]) == ([], [])
    assert session.calls == []


def test_fetch_from_a_forbidden_mailbox_raises(client, sandbox):
    with pytest.raises(errors.Forbidden):
        MailboxReader(client, HR).fetch_messages(['AAMkAnything'])


# === READ STATE === #

def test_set_read_flags_both_ways_in_batches_of_20_with_a_deleted_one_done(sandbox, http, reader, session):
    control(http, sandbox, '/mail/generate', {'mailbox': SUPPORT, 'count': 25, 'days': 30, 'seed': 11})
    ids = sorted(message.immutable_id for message in folder_messages(sandbox, SUPPORT, 'inbox'))[:23]
    gone = ids[7]
    control(http, sandbox, '/mail/delete', {'id': gone, 'permanent': True})
    flags = {graph_id: index % 2 == 0 for index, graph_id in enumerate(ids)}

    outcome = reader.set_read_flags(flags)

    assert outcome == dict.fromkeys(ids), "applied, or gone (nothing left to mark): no error"
    state_messages = sandbox.state.messages
    assert all(bool(state_messages[graph_id].is_read) == flag for graph_id, flag in flags.items() if graph_id != gone)
    batches = [(urlsplit(url).path, [(item['method'], item['body']) for item in body['requests']])
               for _method, url, _p, body in session.calls]
    assert [(path, len(items)) for path, items in batches] == [('/v1.0/$batch', 20), ('/v1.0/$batch', 3)]
    assert batches[0][1][0] == ('PATCH', {'isRead': True}) and batches[0][1][1] == ('PATCH', {'isRead': False})


def test_set_read_flags_in_a_forbidden_mailbox_reports_the_error(client, sandbox):
    outcome = MailboxReader(client, HR).set_read_flags({'AAMkAnything': True})
    assert isinstance(outcome['AAMkAnything'], errors.Forbidden)


# === RECONCILIATION === #

def test_list_ids_of_the_window_in_pages_of_1000(sandbox, http, reader, session):
    control(http, sandbox, '/mail/generate', {'mailbox': SUPPORT, 'count': 1500, 'days': 30, 'seed': 4})
    since = window_start(sandbox, 25)
    expected = in_window(sandbox, SUPPORT, 'inbox', since)
    assert 1000 < len(expected) < 1508
    before = served(http, sandbox)
    assert reader.list_ids('inbox', since) == set(expected)
    # 1,000 ids per page (plus the sandbox's empty page with a nextLink), never a page of bodies
    assert len(session.calls) == served(http, sandbox) - before <= 3
    assert parse_qs(urlsplit(session.calls[-1][1]).query).get('$top') == ['1000']
    sent_ids = reader.list_ids('sentitems', since)
    assert sent_ids == set(in_window(sandbox, SUPPORT, 'sentitems', since)) == set()


def test_unknown_folder_is_refused_before_any_request(reader, session):
    with pytest.raises(ValueError):
        reader.backfill_page('drafts', dt.datetime(2024, 1, 1))
    assert session.calls == []


# === DELTA, SEVERAL FOLDERS AT ONCE === #

def test_delta_pages_of_several_folders_in_one_batch(sandbox, http, client, session):
    """ Four folders of two mailboxes: a new round each, then one page of each round from its delta link in one
    $batch request; a new message shows in its folder only, an expired link answers SyncReset for its folder
    alone. Each answer is the page delta_page gives alone, so a folder goes on from it. """
    billing = 'billing@' + DOMAIN
    since = window_start(sandbox, 60)
    links = {}
    for mailbox in (SUPPORT, billing):
        for folder in ('inbox', 'sentitems'):
            _changes, links[mailbox, folder], _pages = run_delta_round(MailboxReader(client, mailbox), folder, since)
    requests_list = [DeltaRequest((mailbox, folder), mailbox, folder, since, link)
                     for (mailbox, folder), link in links.items()]
    delivered = control(http, sandbox, '/mail/deliver', {
        'mailbox': billing, 'from': 'kunde@example.com', 'subject': 'Rechnung?', 'body_html': '<p>?</p>'})
    session.calls.clear()
    pages = delta_pages(client, requests_list)
    assert [call[0] for call in session.calls] == ['POST'], "one HTTP request for the four folders"
    assert set(pages) == set(links)
    assert [item['id'] for item in pages[billing, 'inbox'].items] == [delivered['immutable_id']]
    for key in set(links) - {(billing, 'inbox')}:
        assert pages[key].items == [] and pages[key].delta_link, key
    # an expired state: that folder's item answers SyncReset, the others their pages
    control(http, sandbox, '/mail/delta/expire', {'mode': '410', 'mailbox': SUPPORT})
    pages = delta_pages(client, [DeltaRequest(key, key[0], key[1], since, pages[key].delta_link) for key in links])
    assert isinstance(pages[SUPPORT, 'inbox'], errors.SyncReset)
    assert isinstance(pages[billing, 'sentitems'].items, list)
    # a new round without a link, in a batch, is the initial round delta_page starts
    fresh = delta_pages(client, [DeltaRequest('new', SUPPORT, 'inbox', since)])['new']
    alone = MailboxReader(client, SUPPORT).delta_page('inbox', since)
    assert [item['id'] for item in fresh.items] == [item['id'] for item in alone.items]


class BatchesInFlight:
    """Watches every ``$batch`` request of the process (``requests.Session.send``, pool threads included): the
    mailboxes each names, and which were in flight at once. With ``hold`` set, a batch waits (up to 10 s) until
    another is in flight: batches sent one after the other fail the test instead of passing by chance."""

    def __init__(self, monkeypatch):
        self.lock = threading.Lock()
        self.in_flight, self.sent, self.together, self.hold = [], [], [], None
        send = requests.Session.send

        def watching_send(session, request, **kwargs):
            if not urlsplit(request.url).path.endswith('/$batch'):
                return send(session, request, **kwargs)
            urls = [item['url'] for item in json.loads(request.body)['requests']]
            mailboxes = frozenset(unquote(match.group(1)).lower() for url in urls
                                  if (match := re.search(r'/users/([^/?]+)', url)))
            with self.lock:
                self.together += [(other, mailboxes) for other in self.in_flight]
                self.in_flight.append(mailboxes)
                self.sent.append(mailboxes)
                if self.hold and len(self.in_flight) > 1:
                    self.hold.set()
            try:
                if self.hold:
                    self.hold.wait(10)
                return send(session, request, **kwargs)
            finally:
                with self.lock:
                    self.in_flight.remove(mailboxes)

        monkeypatch.setattr(requests.Session, 'send', watching_send)


def test_many_folders_pages_and_new_messages_in_batches_sent_together(sandbox, http, client, monkeypatch):
    """ bench_scale with Graph's latency: Outlook runs 4 items of a batch at a time, so a round of 1,000 mailboxes
    was 100 batches one after the other (39.8 s with 150 ms per answer), and each folder with new mail fetched it
    in a batch of its own. Now 15 mailboxes' 30 folders are two batches in flight together, and the 40 new
    messages of all of them are fetched together in two more, where a mailbox in two batches never has both in
    flight (Outlook's 4 requests per mailbox). """
    made = control(http, sandbox, '/mailboxes', {'prefix': 'team', 'count': 15, 'grant': {
        'user': 'svc-helpdesk@' + DOMAIN, 'full_access': True}})['addresses']
    since = window_start(sandbox, 1)
    requests_list = []
    for mailbox in made:
        for folder in ('inbox', 'sentitems'):
            _changes, link, _pages = run_delta_round(MailboxReader(client, mailbox), folder, since)
            requests_list.append(DeltaRequest((mailbox, folder), mailbox, folder, since, link))
    delivered = control(http, sandbox, '/mail/deliver-many', {'mailboxes': made, 'from': 'kunde@example.com',
                                                              'subject': 'Frage', 'body_html': '<p>?</p>'})['value']
    last = made[-1]
    for number in range(25):
        delivered.append(control(http, sandbox, '/mail/deliver', {
            'mailbox': last, 'from': 'kunde@example.com', 'subject': 'Noch %d' % number, 'body_html': '<p>!</p>'}))
    batches = BatchesInFlight(monkeypatch)
    batches.hold = threading.Event()
    pages = delta_pages(client, requests_list)
    assert len(batches.sent) == 2 and batches.together, "the two batches of pages were in flight together"
    assert not batches.sent[0] & batches.sent[1], "a mailbox's two folders go in one batch"
    new = {key: [item['id'] for item in page.items] for key, page in pages.items() if page.items}
    assert {key[0] for key in new} == set(made) and all(key[1] == 'inbox' for key in new)
    assert len(new[last, 'inbox']) == 26
    batches.hold, batches.sent, batches.together = None, [], []
    fetched = fetch_messages_of(client, {key: (key[0], ids) for key, ids in new.items()})
    assert len(batches.sent) == 2, "40 messages: two batches of 20"
    assert last in batches.sent[0] and last in batches.sent[1]
    assert all(not first & second for first, second in batches.together), "never one mailbox in two at once"
    assert {key: sorted(message['id'] for message in found) for key, (found, missing) in fetched.items()} == {
        key: sorted(ids) for key, ids in new.items()}
    assert all(missing == [] for _found, missing in fetched.values())
    assert sorted(message['immutable_id'] for message in delivered) == sorted(sum(new.values(), []))
