"""Reading one shared mailbox through Graph: the request shapes of backfill, delta and reconciliation.

Everything goes through :class:`~.graph.GraphClient` (auth, allow-list, retries, the 4-per-mailbox limit).
This module only knows which URL, query and ``Prefer`` header each step needs (docs/microsoft-graph.md §3):

* ids are **immutable** (``Prefer: IdType="ImmutableId"`` on every request, §3.4), so a message moved in
  Outlook keeps the id Odoo stores as its key;
* paging links are stored and followed **verbatim** (§3.1, §3.2): a checkpoint is the ``nextLink`` itself;
* the window is ``receivedDateTime ge {start}`` with ``$orderby=receivedDateTime desc`` (newest first), the
  one filter/order pair both the list and delta accept;
* delta rounds select only the small facts (read flag, change key, subject); a message Odoo does not know yet
  is fetched in full through ``$batch`` (20 per request), so an initial delta round over a folder costs pages of
  ids, not a second copy of every body.
"""
from dataclasses import dataclass

from . import errors
from .const import BATCH_MAX_REQUESTS
from .graph import GraphPage, batch_item_error, quote_segment
from .mapping import FOLDERS, format_datetime

# Full message properties for import (``internetMessageHeaders`` only comes through ``$select``, §3.3).
MESSAGE_SELECT = ','.join((
    'id', 'conversationId', 'internetMessageId', 'subject', 'from', 'sender', 'toRecipients', 'ccRecipients',
    'replyTo', 'sentDateTime', 'receivedDateTime', 'lastModifiedDateTime', 'changeKey', 'isRead', 'isDraft',
    'parentFolderId', 'hasAttachments', 'body', 'internetMessageHeaders',
))
# What a delta round needs to apply changes to messages Odoo has (docs/microsoft-graph.md §3.2: updated items carry the
# changed properties).
DELTA_SELECT = 'id,changeKey,isRead,lastModifiedDateTime,subject,receivedDateTime,parentFolderId'
# Messages per backfill page: ~20 requests per 1,000 messages, small enough that bodies with attachments do
# not time out at the gateway (§3.1: big pages with full bodies risk 504).
BACKFILL_PAGE_SIZE = 50
# What a backfill imports per transaction, at most: pages of BACKFILL_PAGE_SIZE are read one after the other
# until this many messages, or this much content (bodies and attachments, as Graph sends them), is read. The
# database work of a page has a fixed part (lookups, one INSERT per table, the commit) as large as the work of
# its first few dozen messages: 200 messages per transaction took 35 % less time end to end than 50
# (bench/bench_backfill.py), while Graph's pages stay at the size that does not time out.
BACKFILL_BATCH_MESSAGES = 200
BACKFILL_BATCH_BYTES = 8 * 2**20
DELTA_PAGE_SIZE = 200
ID_PAGE_SIZE = 1000
IMMUTABLE = 'IdType="ImmutableId"'
IMPORT_PREFER = {'Prefer': '%s, outlook.body-content-type="html"' % IMMUTABLE}


@dataclass(frozen=True)
class MailboxProbe:
    """What one look at a mailbox found: the Inbox is readable; the mailbox's display name if Graph showed it
    (from its Sent Items or its Inbox's recipients: reading another user's profile would need a directory
    permission the product does not ask for)."""

    display_name: str
    inbox_total: int


class MailboxReader:
    """The Graph requests of one shared mailbox.

    :param graph.GraphClient client: The connection's client.
    :param str mailbox: The shared mailbox's SMTP address (or id).
    """

    def __init__(self, client, mailbox):
        self.client = client
        self.mailbox = mailbox.strip().lower()
        self._base = 'users/%s' % quote_segment(self.mailbox)

    def folder_path(self, folder):
        if folder not in FOLDERS:
            raise ValueError("Unknown folder %r" % folder)
        return '%s/mailFolders/%s' % (self._base, folder)

    # === ACCESS CHECK === #

    def probe(self):
        """Check in one request (a ``$batch``) that the service account can read the mailbox, and find its
        display name.

        :rtype: MailboxProbe
        :raise GraphError: The Inbox's own error (``Forbidden``, ``NotFound``...), unchanged.
        """
        results = self.client.batch([
            {'id': 'inbox', 'method': 'GET', 'url': '/%s?$select=id,displayName,totalItemCount'
                % self.folder_path('inbox')},
            {'id': 'sent', 'method': 'GET', 'url': '/%s/messages?$top=1&$select=from'
                % self.folder_path('sentitems')},
            {'id': 'received', 'method': 'GET', 'url': '/%s/messages?$top=10&$select=toRecipients,ccRecipients'
                % self.folder_path('inbox')},
        ])
        inbox = results.get('inbox') or {'status': 500}
        if error := batch_item_error(inbox):
            raise error
        return MailboxProbe(display_name=self._display_name(results), inbox_total=int(
            (inbox.get('body') or {}).get('totalItemCount') or 0))

    def _display_name(self, results):
        candidates = []
        for key, props in (('sent', ('from',)), ('received', ('toRecipients', 'ccRecipients'))):
            response = results.get(key) or {}
            if batch_item_error(response) or not isinstance(response.get('body'), dict):
                continue
            for item in response['body'].get('value') or ():
                for prop in props:
                    values = item.get(prop)
                    for value in values if isinstance(values, list) else [values]:
                        email = (value or {}).get('emailAddress') if isinstance(value, dict) else None
                        if isinstance(email, dict) and str(email.get('address') or '').lower() == self.mailbox:
                            candidates.append(str(email.get('name') or '').strip())
        names = [name for name in candidates if name and name.lower() != self.mailbox]
        return names[0] if names else ''

    # === BACKFILL === #

    def count_window(self, since):
        """Count each folder's messages received since ``since``, in one ``$batch``.

        :param datetime since: Naive UTC start of the window.
        :return: ``{folder: count}``.
        :rtype: dict
        """
        results = self.client.batch([{
            'id': folder, 'method': 'GET', 'url': '/%s/messages?$filter=%s&$count=true&$top=1&$select=id'
            % (self.folder_path(folder), self._window(since)),
        } for folder in FOLDERS])
        counts = {}
        for folder in FOLDERS:
            response = results.get(folder) or {'status': 500}
            if error := batch_item_error(response):
                raise error
            counts[folder] = int((response.get('body') or {}).get('@odata.count') or 0)
        return counts

    def backfill_page(self, folder, since, next_link=None):
        """One page of the window, newest first, with bodies and file attachments.

        :param str next_link: The stored checkpoint; ``None`` for the first page.
        :rtype: graph.GraphPage
        """
        if next_link:
            return self._page(next_link, None, IMPORT_PREFER)
        return self._page('%s/messages' % self.folder_path(folder), {
            '$filter': self._window_filter(since),
            '$orderby': 'receivedDateTime desc',
            '$top': BACKFILL_PAGE_SIZE,
            '$select': MESSAGE_SELECT,
            '$expand': 'attachments',
        }, IMPORT_PREFER)

    def backfill_pages(self, folder, since, next_link=None, max_messages=None, max_bytes=None):
        """Pages of the window read one after the other from ``next_link``, as one: until ``max_messages``
        messages or ``max_bytes`` of content are read (one page may go beyond), or the folder ends.

        Only the first page's errors are raised. A later page that fails ends the batch before it: its link is
        the batch's ``next_link``, so whoever reads from that checkpoint meets the error where it is handled
        (throttling, a token to refresh, a lost right), and nothing read is thrown away.

        :param int max_messages: Default :data:`BACKFILL_BATCH_MESSAGES`.
        :param int max_bytes: Default :data:`BACKFILL_BATCH_BYTES`.
        :return: The pages' items in order, and the ``nextLink`` of the last page read (``None`` at the end).
        :rtype: graph.GraphPage
        """
        max_messages = max_messages or BACKFILL_BATCH_MESSAGES
        max_bytes = max_bytes or BACKFILL_BATCH_BYTES
        page = self.backfill_page(folder, since, next_link)
        items, pages = list(page.items), 1
        size = sum(_content_size(item) for item in items)
        # Graph may send a page with no items and a nextLink (§3.1): those are read on, to a bound.
        while (page.next_link and len(items) < max_messages and size < max_bytes
               and pages * BACKFILL_PAGE_SIZE < 2 * max_messages):
            try:
                page = self.backfill_page(folder, since, page.next_link)
            except errors.OutlookError:
                break
            pages += 1
            items += page.items
            size += sum(_content_size(item) for item in page.items)
        return GraphPage(items=items, next_link=page.next_link)

    # === DELTA === #

    def delta_page(self, folder, since, link=None):
        """One page of a delta round: from ``link`` (a stored next or delta link), or a new initial round
        over the window.

        :rtype: graph.GraphPage
        :raise SyncReset: The stored link expired (``syncStateNotFound``, 410): start a new round.
        """
        headers = {'Prefer': '%s, odata.maxpagesize=%d' % (IMMUTABLE, DELTA_PAGE_SIZE)}
        if link:
            return self._page(link, None, headers)
        return self._page('%s/messages/delta' % self.folder_path(folder), {
            '$select': DELTA_SELECT,
            '$filter': self._window_filter(since),
        }, headers)

    def fetch_messages(self, graph_ids):
        """Fetch full messages by immutable id, 20 per ``$batch`` request (see :func:`fetch_messages_of`).

        :return: The messages found, and the ids Graph no longer has (deleted or moved out meanwhile).
        :rtype: tuple(list, list)
        :raise GraphError: Any other item error (throttling after the batch's retries, access...).
        """
        result = fetch_messages_of(self.client, {None: (self.mailbox, graph_ids)})[None]
        if isinstance(result, Exception):
            raise result
        return result

    def _fetch_item(self, graph_id):
        return {'method': 'GET', 'headers': dict(IMPORT_PREFER),
                'url': '/%s/messages/%s?$select=%s&$expand=attachments'
                % (self._base, quote_segment(graph_id), MESSAGE_SELECT)}

    # === RECONCILIATION === #

    def list_ids(self, folder, since):
        """Every id in the folder's window (``$select=id``, 1,000 per page).

        :rtype: set
        """
        ids = set()
        pages = self.client.iter_pages('%s/messages' % self.folder_path(folder), params={
            '$filter': self._window_filter(since), '$select': 'id', '$top': ID_PAGE_SIZE,
        }, headers={'Prefer': IMMUTABLE})
        for page in pages:
            ids.update(str(item['id']) for item in page.items if isinstance(item, dict) and item.get('id'))
        return ids

    # === READ STATE === #

    def set_read_flags(self, flags):
        """Set ``isRead`` on messages by immutable id, 20 ``PATCH`` requests per ``$batch``.

        :param dict flags: ``{graph_id: bool}``.
        :return: The outcome of each id: ``None`` when Graph applied it or no longer has the message
            (deleted or moved out: nothing left to mark), else the mapped error (throttled after the batch's
            retries, access lost...), to try again later.
        :rtype: dict
        """
        outcome = {}
        for graph_id, response in self._per_id(flags, lambda graph_id: {
                'method': 'PATCH', 'url': '/%s/messages/%s' % (self._base, quote_segment(graph_id)),
                'headers': {'Content-Type': 'application/json', 'Prefer': IMMUTABLE},
                'body': {'isRead': bool(flags[graph_id])}}):
            error = batch_item_error(response)
            outcome[graph_id] = None if isinstance(error, errors.NotFound) else error
        return outcome

    # === TRIAGE === #

    def folder_id(self, well_known_name):
        """The id of one of the mailbox's well-known folders (``archive``...). Folder ids are constant (Microsoft:
        containers have no immutable ids, their ids never change), so the caller may keep it.

        :rtype: str
        """
        body = self.client.get('%s/mailFolders/%s' % (self._base, quote_segment(well_known_name)),
                               params={'$select': 'id'}, headers={'Prefer': IMMUTABLE}) or {}
        return str(body.get('id') or '')

    def parent_folders(self, graph_ids):
        """Where messages are now: their ``parentFolderId`` by immutable id, 20 ``GET`` per ``$batch``.

        :return: ``{graph_id: folder id}``, ``None`` for a message Graph no longer has (deleted for good).
        :rtype: dict
        :raise GraphError: Any other item error (throttled after the batch's retries, access lost...).
        """
        where = {}
        for graph_id, response in self._per_id(graph_ids, lambda graph_id: {
                'method': 'GET', 'headers': {'Prefer': IMMUTABLE},
                'url': '/%s/messages/%s?$select=parentFolderId' % (self._base, quote_segment(graph_id))}):
            error = batch_item_error(response)
            if isinstance(error, errors.NotFound):
                where[graph_id] = None
            elif error:
                raise error
            else:
                where[graph_id] = str((response.get('body') or {}).get('parentFolderId') or '')
        return where

    def move_messages(self, graph_ids, destination):
        """Move messages by immutable id to ``destination`` (a folder id or a well-known name such as
        ``archive``), 20 ``POST …/move`` per ``$batch``. Immutable ids stay the same across the move
        (docs/microsoft-graph.md §3.4), so the caller's keys still name the moved messages. Nothing is deleted.

        :return: The outcome of each id: ``None`` when moved, ``NotFound`` when Graph no longer has it, else the
            mapped error (throttled after the batch's retries, access lost...), to try again later.
        :rtype: dict
        """
        responses = self._per_id(graph_ids, lambda graph_id: {
            'method': 'POST', 'url': '/%s/messages/%s/move' % (self._base, quote_segment(graph_id)),
            'headers': {'Content-Type': 'application/json', 'Prefer': IMMUTABLE},
            'body': {'destinationId': destination}})
        return {graph_id: batch_item_error(response) for graph_id, response in responses}

    # === HELPERS === #

    def _per_id(self, graph_ids, item):
        """One request per message, 20 to a ``$batch`` (the one way every per-message step batches, §5).

        :param graph_ids: Immutable ids.
        :param callable item: ``item(graph_id)``: the batch item without its ``id`` (method, url, headers, body).
        :return: ``(graph_id, response)`` in the order of ``graph_ids``; a response Graph left out is a 500.
        :rtype: iterator
        """
        graph_ids = list(graph_ids)
        for start in range(0, len(graph_ids), BATCH_MAX_REQUESTS):
            chunk = graph_ids[start:start + BATCH_MAX_REQUESTS]
            results = self.client.batch([{'id': str(index), **item(graph_id)} for index, graph_id in enumerate(chunk)])
            for index, graph_id in enumerate(chunk):
                yield graph_id, results.get(str(index)) or {'status': 500}

    def _page(self, path_or_url, params, headers):
        body = self.client.get(path_or_url, params=params, headers=headers) or {}
        return GraphPage(items=body.get('value') or [], next_link=body.get('@odata.nextLink'),
                         delta_link=body.get('@odata.deltaLink'), raw=body)

    @staticmethod
    def _window_filter(since):
        return 'receivedDateTime ge %s' % format_datetime(since)

    def _window(self, since):
        # Inside a $batch item URL the query is not encoded for us.
        return self._window_filter(since).replace(' ', '%20')


@dataclass(frozen=True)
class DeltaRequest:
    """The next page of one folder's delta round, for :func:`delta_pages`.

    :param key: The caller's handle for the answer (a folder sync id).
    :param str mailbox: The shared mailbox's address.
    :param str folder: One of ``FOLDERS``.
    :param datetime since: The window's start (a new round only).
    :param str link: The stored delta (or next) link, verbatim, or ``None`` for a new round.
    """

    key: object
    mailbox: str
    folder: str
    since: object
    link: str = None


def delta_pages(client, requests_list):
    """The next page of several folders' delta rounds, 20 to a ``$batch`` request (docs/microsoft-graph.md §3.2,
    §5): a folder with nothing new costs one batch item, not an HTTP request of its own. Each item is what
    :meth:`MailboxReader.delta_page` asks for alone (its link verbatim, relative to the batch endpoint, with the
    same ``Prefer``), so a folder goes on alone from its answer. The batches go out together
    (:meth:`~.graph.GraphClient.batch_many`), a mailbox's folders in one of them.

    :param graph.GraphClient client: The connection's client.
    :param list requests_list: :class:`DeltaRequest` items (at most two per mailbox: Outlook runs up to 4
        requests of one mailbox at once).
    :return: ``{key: GraphPage or GraphError}`` (``SyncReset`` for a link Graph forgot).
    :rtype: dict
    """
    prefer = '%s, odata.maxpagesize=%d' % (IMMUTABLE, DELTA_PAGE_SIZE)
    ordered = sorted(requests_list, key=lambda request: request.mailbox.strip().lower())
    chunks = [ordered[start:start + BATCH_MAX_REQUESTS] for start in range(0, len(ordered), BATCH_MAX_REQUESTS)]
    batches = []
    for chunk in chunks:
        items = []
        for index, request in enumerate(chunk):
            if request.link:
                url = client.relative_url(request.link)
            else:
                reader = MailboxReader(client, request.mailbox)
                url = '/%s/messages/delta?$select=%s&$filter=%s' % (
                    reader.folder_path(request.folder), DELTA_SELECT, reader._window(request.since))
            items.append({'id': str(index), 'method': 'GET', 'url': url, 'headers': {'Prefer': prefer}})
        batches.append(items)
    results = {}
    for chunk, answers in zip(chunks, client.batch_many(batches)):
        for index, request in enumerate(chunk):
            response = answers.get(str(index)) or {'status': 500}
            error = batch_item_error(response)
            if error is not None:
                results[request.key] = error
                continue
            body = response.get('body') or {}
            results[request.key] = GraphPage(
                items=body.get('value') or [], next_link=body.get('@odata.nextLink'),
                delta_link=body.get('@odata.deltaLink'), raw=body)
    return results


def fetch_messages_of(client, wanted):
    """Fetch full messages of several mailboxes (or folders) by immutable id: one ``GET`` each, 20 to a
    ``$batch``, the batches together (:meth:`~.graph.GraphClient.batch_many`): a round in which many folders got
    mail fetches it in as few round trips as it asked for their pages (bench_scale, Graph's latency).

    :param dict wanted: ``{key: (mailbox, graph_ids)}``.
    :return: ``{key: (found, missing)}``: the messages found and the ids Graph no longer has (deleted or moved
        out meanwhile); or ``{key: GraphError}`` when one of the key's items failed otherwise (throttled after
        the batch's retries, access...).
    :rtype: dict
    """
    requests_list = []
    for key, (mailbox, graph_ids) in sorted(wanted.items(), key=lambda entry: entry[1][0].strip().lower()):
        reader = MailboxReader(client, mailbox)
        requests_list += [(key, graph_id, reader._fetch_item(graph_id)) for graph_id in graph_ids]
    chunks = [requests_list[start:start + BATCH_MAX_REQUESTS]
              for start in range(0, len(requests_list), BATCH_MAX_REQUESTS)]
    answers = client.batch_many([[{'id': str(index), **item} for index, (_key, _graph_id, item) in enumerate(chunk)]
                                 for chunk in chunks])
    results = {key: ([], []) for key in wanted}
    for chunk, answer in zip(chunks, answers):
        for index, (key, graph_id, _item) in enumerate(chunk):
            if isinstance(results[key], Exception):
                continue
            response = answer.get(str(index)) or {'status': 500}
            error = batch_item_error(response)
            if isinstance(error, errors.NotFound):
                results[key][1].append(graph_id)
            elif error:
                results[key] = error
            else:
                results[key][0].append(response.get('body') or {})
    return results


def _content_size(item):
    """Characters of a Graph message's body and attachments (base64), about what it weighs in memory. Whatever
    is malformed counts as nothing here: mapping decides what to do with it."""
    if not isinstance(item, dict):
        return 0
    body = item.get('body')
    size = len(body.get('content') or '') if isinstance(body, dict) and isinstance(body.get('content'), str) else 0
    attachments = item.get('attachments')
    for attachment in attachments if isinstance(attachments, list) else ():
        if isinstance(attachment, dict) and isinstance(attachment.get('contentBytes'), str):
            size += len(attachment['contentBytes'])
    return size
