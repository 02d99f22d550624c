"""The one request helper for Microsoft Graph: nothing else in the addon speaks HTTP to Graph.

:class:`GraphClient` adds, on every call:

* the ``Authorization`` header from ``token_provider()``, asked per request so the caller can refresh;
* the host allow-list, checked on every URL including ``@odata.nextLink``/``@odata.deltaLink`` (a forged link
  must not make Odoo send its token elsewhere: SSRF);
* at most 4 requests in flight per mailbox (Outlook's limit, docs/microsoft-graph.md §5), through a slot provider: the
  process's semaphores by default, one shared by every process where there are several (the Odoo layer's);
  a request waits a bounded time for a slot, then raises :class:`~.errors.MailboxBusy`;
* ``Retry-After`` on 429/503, exponential backoff with jitter otherwise, a bounded number of retries;
* Graph's error envelope mapped to ``errors`` (401 is raised at once: refreshing is the caller's decision).

Paging follows ``@odata.nextLink`` **verbatim**: the server encodes ``$select``/``$filter``/``$skip`` into its
links, and rebuilding them breaks paging (docs/microsoft-graph.md §3.1, §3.2).

Logs carry the method, URL path (no query), status and ``request-id``; never headers or bodies.
"""
import base64
import copy
import logging
import random
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

import requests

from . import errors
from .const import (
    BACKOFF_BASE_S, BACKOFF_MAX_S, BATCH_MAX_REQUESTS, BATCH_PARALLEL, DEFAULT_GRAPH_HOSTS, GRAPH_MAX_RETRIES,
    GRAPH_MAX_WAIT_S, GRAPH_SLOT_WAIT_S, GRAPH_TIMEOUT, MASK, MAX_CONCURRENT_PER_MAILBOX, MICROSOFT_UPLOAD_HOSTS,
    SENSITIVE_KEYS,
)
from .logsafe import install_log_filters, redact

_logger = logging.getLogger(__name__)
# urllib3 logs each request line, query included (an upload session's ``authtoken``), at DEBUG.
install_log_filters()

# Methods safe to resend after a timeout or a 5xx: the first attempt may have been executed.
_IDEMPOTENT_METHODS = frozenset({'GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE'})
# Statuses meaning "not executed, come back later": safe to resend for any method.
_THROTTLE_STATUSES = frozenset({429, 503})
# Statuses worth resending for idempotent methods only.
_RETRYABLE_5XX = frozenset({500, 502, 504})
_ABSOLUTE_URL_RE = re.compile(r'^[a-zA-Z][a-zA-Z0-9+.-]*://')
_UPLOAD_HOSTS = frozenset(MICROSOFT_UPLOAD_HOSTS)
_MAILBOX_RE = re.compile(r'/(?:users|mailboxes)/([^/?#]+)', re.IGNORECASE)


# === LOG MASKING === #

def mask(data):
    """Return a copy of ``data`` with the values of sensitive keys replaced (recursively).

    :param data: A dict, list or scalar (e.g. a token response, request headers, a form body).
    :return: The same shape, with ``SENSITIVE_KEYS`` (case-insensitive) values replaced by ``[REDACTED]``.
    """
    if isinstance(data, dict):
        return {key: MASK if str(key).lower() in SENSITIVE_KEYS else mask(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return type(data)(mask(value) for value in data)
    return data


def quote_segment(value):
    """Quote one path segment (a mailbox address, a message or folder id) for a Graph URL.

    ``@`` stays readable; ``/``, ``?``, ``#``, ``%`` and spaces are escaped, so a value can never change the
    path or start a query.

    :param str value: The raw segment.
    :rtype: str
    """
    return quote(str(value), safe="@!$&'()*+,;=:-._~")


# === PAGES === #

@dataclass(frozen=True)
class GraphPage:
    """One page of a collection.

    :param list items: The page's ``value`` (may be empty even when more pages follow).
    :param str next_link: ``@odata.nextLink``, verbatim; store it as a checkpoint to resume.
    :param str delta_link: ``@odata.deltaLink`` (last page of a delta round), verbatim.
    :param dict raw: The whole decoded JSON.
    """

    items: list
    next_link: str = None
    delta_link: str = None
    raw: dict = None


# === PER-MAILBOX CONCURRENCY === #

class ProcessSlots:
    """Outlook's 4 slots per mailbox as semaphores of this process: the default slot provider.

    It holds the limit among the threads of one process only. Where several processes or servers call Graph
    for the same mailbox, pass :class:`GraphClient` a provider they share (the Odoo layer's uses PostgreSQL).

    A slot provider is any object with ``acquire(key, timeout)`` returning a context manager that holds one of
    the mailbox's slots from ``__enter__`` to ``__exit__``; ``__enter__`` waits at most ``timeout`` seconds and
    then raises :class:`~.errors.MailboxBusy`. ``key`` is ``(graph host, mailbox)``, both lowercase.

    :param int limit: Slots per mailbox.
    """

    def __init__(self, limit=MAX_CONCURRENT_PER_MAILBOX):
        self.limit = limit
        self._lock = threading.Lock()
        self._semaphores = {}

    def acquire(self, key, timeout):
        """Return a context manager holding one slot of ``key``'s mailbox (see the class docstring).

        :param tuple key: ``(graph host, mailbox)``.
        :param float timeout: Seconds to wait for a slot.
        :rtype: contextlib.AbstractContextManager
        """
        with self._lock:
            semaphore = self._semaphores.get(key)
            if semaphore is None:
                semaphore = self._semaphores[key] = threading.BoundedSemaphore(self.limit)
        return _SemaphoreSlot(semaphore, key, timeout)


class _SemaphoreSlot:
    def __init__(self, semaphore, key, timeout):
        self._semaphore, self._key, self._timeout = semaphore, key, timeout

    def __enter__(self):
        if not self._semaphore.acquire(timeout=self._timeout):
            raise mailbox_busy(self._key, self._timeout)
        return self

    def __exit__(self, *_exc):
        self._semaphore.release()
        return False


def mailbox_busy(key, timeout):
    """The error a slot provider raises when none of ``key``'s slots freed up within ``timeout`` seconds.

    :rtype: MailboxBusy
    """
    return errors.MailboxBusy("No free slot for mailbox %s on %s after %.0f s" % (key[1], key[0], timeout),
                              code='mailboxConcurrencyLimit')


# Shared by every client of the process that is given no provider of its own.
_PROCESS_SLOTS = ProcessSlots()

# One HTTPS session per thread and Graph endpoint, kept for the life of the process: its pooled connections
# spare each sync step a new TCP and TLS handshake with Graph (issue 18: an idle round is one request per folder).
# Per thread, as a requests.Session is not meant to be shared between threads; a handful of endpoints at most.
_THREAD_SESSIONS = threading.local()


def thread_session(base_url, ca_bundle=None):
    """The ``requests.Session`` this thread uses for ``base_url`` with ``ca_bundle`` (made on first use).

    The CA bundle is part of the key: requests keeps its connection pools by host and port only, and a pooled
    connection reconnects with the CA it was made with. A connection whose CA bundle changed (or, in the tests,
    a sandbox restarted on a port an earlier one had, with a new CA) would otherwise fail the TLS check with the
    old one: ``CERTIFICATE_VERIFY_FAILED``, seen in the full suite.

    :param str base_url: The Graph endpoint.
    :param str ca_bundle: The CA bundle path the client verifies with, or ``None`` for the system's.
    :rtype: requests.Session
    """
    sessions = _THREAD_SESSIONS.__dict__.setdefault('by_endpoint', {})
    key = (base_url, ca_bundle)
    if key not in sessions:
        sessions[key] = requests.Session()
    return sessions[key]


# The threads that send a caller's parallel ``$batch`` requests (GraphClient.batch_many), for the life of the
# process: each keeps its HTTPS sessions (thread_session), so a round reuses its connections to Graph.
_BATCH_POOL = None
_BATCH_POOL_LOCK = threading.Lock()


def _batch_pool():
    global _BATCH_POOL   # noqa: PLW0603 (made on first use: most processes never send parallel batches)
    with _BATCH_POOL_LOCK:
        if _BATCH_POOL is None:
            _BATCH_POOL = ThreadPoolExecutor(max_workers=BATCH_PARALLEL * 4, thread_name_prefix='graph-batch')
        return _BATCH_POOL


class _NoSlot:
    def __enter__(self):
        return self

    def __exit__(self, *_exc):
        return False


# === CLIENT === #

class GraphClient:
    """Calls Microsoft Graph on behalf of one connection.

    :param str base_url: ``https://graph.microsoft.com/v1.0`` or the sandbox's ``/v1.0``.
    :param token_provider: Callable returning a valid access token; called before every request.
    :param ca_bundle: CA bundle path to trust (the sandbox), or ``None`` for the system's.
    :param allowed_hosts: Hosts that may be called; ``base_url``'s must be one. ``host`` allows that host on
        any port (the name is what identifies the party), ``host:port`` only that port.
    :param timeout: ``requests`` timeout in seconds (one number: Odoo's test guard cannot compare a pair).
    :param int max_retries: Retries after the first attempt, for throttling and transient failures.
    :param session: A ``requests.Session`` to reuse (default: a new one).
    :param sleep: ``time.sleep``, replaceable in tests.
    :param float max_wait: Seconds one call may sleep in total between retries; past it, the error
        (:class:`Throttled` with its ``retry_after``) goes to the caller, which reschedules instead of
        blocking a worker.
    :param slots: The slot provider holding Outlook's 4 concurrent requests per mailbox (see
        :class:`ProcessSlots`); default: this process's semaphores, shared by all its clients.
    :param float slot_wait: Seconds a request waits for a slot before :class:`MailboxBusy` goes to the
        caller (once per attempt: a retry waits again).
    :raise HostNotAllowed: When ``base_url`` is not https or its host is not allowed.
    """

    def __init__(self, base_url, token_provider, *, ca_bundle=None, allowed_hosts=DEFAULT_GRAPH_HOSTS,
                 timeout=GRAPH_TIMEOUT, max_retries=GRAPH_MAX_RETRIES, session=None, sleep=time.sleep,
                 max_wait=GRAPH_MAX_WAIT_S, slots=None, slot_wait=GRAPH_SLOT_WAIT_S):
        self.base_url = base_url.rstrip('/')
        self._token_provider = token_provider
        self.allowed_hosts = frozenset(_normalise_host(host) for host in allowed_hosts)
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_wait = max_wait
        self.slot_wait = slot_wait
        self._slots = slots or _PROCESS_SLOTS
        self._sleep = sleep
        self._session = session or requests.Session()
        # Requests sent per mailbox (each attempt, each $batch item, as Outlook counts them against its limit of
        # 10,000 per 10 minutes per app and mailbox), and how many of those were throttled: ``{mailbox: [sent,
        # throttled]}``, for the caller to record (the connection's freshness figures).
        self.usage = {}
        # Passed on every request: requests lets REQUESTS_CA_BUNDLE override a session's ``verify``.
        self._verify = ca_bundle or True
        self._ca_bundle = ca_bundle
        self.check_url(self.base_url)

    # === BUSINESS METHODS - VERBS === #

    def get(self, path_or_url, params=None, headers=None):
        """GET and return the decoded JSON (``None`` for an empty body).

        :raise GraphError: The mapped error (see ``errors.graph_error_from_parts``).
        """
        return _json_or_none(self.request('GET', path_or_url, params=params, headers=headers))

    def post(self, path_or_url, json=None, headers=None, *, idempotent=False):
        """POST and return the decoded JSON (``None`` for 202/204 and empty bodies).

        :param bool idempotent: Allow resending after a timeout or a 5xx (only if the call is safe to repeat;
            ``sendMail`` is not). Throttled calls (429/503) are always resent: Graph did not run them.
        """
        return _json_or_none(self.request('POST', path_or_url, json=json, headers=headers, idempotent=idempotent))

    def patch(self, path_or_url, json=None, headers=None):
        """PATCH and return the decoded JSON. A PATCH sets values, so resending it is safe."""
        return _json_or_none(self.request('PATCH', path_or_url, json=json, headers=headers, idempotent=True))

    def delete(self, path_or_url, headers=None):
        """DELETE (204 expected)."""
        return _json_or_none(self.request('DELETE', path_or_url, headers=headers))

    def post_mime(self, path_or_url, mime, headers=None):
        """POST a MIME message as Graph takes it (base64 text, ``Content-Type: text/plain``) and return the decoded
        JSON. Not resent after a timeout (a second draft would be made).

        :param bytes mime: The RFC 5322 message.
        """
        return _json_or_none(self.request('POST', path_or_url, data=base64.b64encode(mime),
                                          headers={**(headers or {}), 'Content-Type': 'text/plain'},
                                          idempotent=False))

    def put_range(self, upload_url, chunk, start, total):
        """PUT one byte range to an upload session's pre-authenticated ``uploadUrl`` (no ``Authorization`` header:
        the URL carries its own credential, and the token must not go to the upload host).

        :param str upload_url: The session's ``uploadUrl``, verbatim (a Graph host or Outlook's upload hosts).
        :param bytes chunk: The bytes from ``start``.
        :param int total: The file's size.
        :return: The decoded JSON (``nextExpectedRanges``), or ``None`` for the last range (201, empty).
        """
        return _json_or_none(self.request('PUT', upload_url, data=chunk, authorize=False, headers={
            'Content-Type': 'application/octet-stream',
            'Content-Range': 'bytes %d-%d/%d' % (start, start + len(chunk) - 1, total),
        }))

    def download(self, path_or_url, headers=None):
        """GET raw bytes (an attachment's ``$value``, a message's MIME ``$value``).

        :rtype: bytes
        """
        return self.request('GET', path_or_url, headers=headers).content

    # === BUSINESS METHODS - PAGING === #

    def iter_pages(self, path_or_url, params=None, headers=None):
        """Yield every page of a collection, following ``@odata.nextLink`` verbatim.

        ``params`` go on the first request only; later requests use the server's link as-is. To resume after a
        crash, pass a stored ``next_link`` as ``path_or_url`` (without ``params``).

        :rtype: iterator of GraphPage
        """
        url, page_params = path_or_url, params
        while url:
            body = self.get(url, params=page_params, headers=headers) or {}
            page = GraphPage(items=body.get('value') or [], next_link=body.get('@odata.nextLink'),
                             delta_link=body.get('@odata.deltaLink'), raw=body)
            yield page
            if page.next_link and page.next_link == url:
                # A server bug would otherwise keep a cron busy forever.
                raise errors.GraphError("Graph returned the same nextLink twice; paging stopped.",
                                        code='nextLinkLoop')
            url, page_params = page.next_link, None

    def delta(self, path_or_link, params=None, *, page_size=None, immutable_ids=False, headers=None):
        """Run one delta round: yield its pages; the last page carries ``delta_link`` for the next round.

        Start with the delta path (``/users/{id}/mailFolders/{id}/messages/delta``) and ``params`` (``$select``,
        ``$filter``...), or continue from a stored ``next_link``/``delta_link`` (then no ``params``: the server
        encoded them into the link). ``Prefer: odata.maxpagesize`` and ``IdType`` are sent on every request.

        :param int page_size: Preferred page size (``Prefer: odata.maxpagesize``).
        :param bool immutable_ids: Ask for immutable ids (``Prefer: IdType="ImmutableId"``).
        :rtype: iterator of GraphPage
        :raise SyncReset: When the delta state expired (410, ``syncStateNotFound``): start over without a link.
        """
        preferences = []
        if page_size:
            preferences.append('odata.maxpagesize=%d' % page_size)
        if immutable_ids:
            preferences.append('IdType="ImmutableId"')
        all_headers = dict(headers or {})
        if preferences:
            all_headers['Prefer'] = ', '.join(preferences)
        return self.iter_pages(path_or_link, params=params, headers=all_headers)

    # === BUSINESS METHODS - BATCH === #

    def batch(self, requests_list):
        """Send up to 20 requests as one JSON ``$batch``; retry throttled items; return responses by id.

        Items are ``{"id", "method", "url" (relative, e.g. "/users/x/messages"), "headers"?, "body"?,
        "dependsOn"?}``. A ``Content-Type: application/json`` header is added to items with a body. Items
        answered 429/503 are resent after the longest ``Retry-After`` among them (bounded by ``max_retries``),
        together with the items that failed with 424 because they depended on them. Failed items are returned,
        not raised: use :func:`batch_item_error` on each.

        :param list requests_list: The items.
        :return: ``{id: {"id", "status", "headers", "body"}}``.
        :rtype: dict
        :raise ValueError: More than 20 items, duplicate ids, or an absolute item URL.
        """
        items = [self._batch_item(item) for item in requests_list]
        ids = [item['id'] for item in items]
        if len(items) > BATCH_MAX_REQUESTS:
            raise ValueError("A $batch holds at most %d requests, got %d" % (BATCH_MAX_REQUESTS, len(items)))
        if len(set(ids)) != len(ids):
            raise ValueError("$batch request ids must be unique")

        results, pending, waited = {}, items, 0.0
        for attempt in range(self.max_retries + 1):
            for response in self._send_batch(pending):
                results[str(response.get('id'))] = response
            for item in pending:
                if mailbox_key := self._mailbox_key(self.url_for(item['url'])):
                    self._count(mailbox_key, results.get(item['id'], {}).get('status') in _THROTTLE_STATUSES)
            throttled = {item['id'] for item in pending
                         if results.get(item['id'], {}).get('status') in _THROTTLE_STATUSES}
            if not throttled:
                break
            delays = [errors.parse_retry_after(_lower_keys(results[item_id].get('headers')).get('retry-after'))
                      for item_id in throttled]
            delay = max((d for d in delays if d is not None), default=None)
            delay = delay if delay is not None else self._backoff(attempt)
            if attempt >= self.max_retries or waited + delay > self.max_wait:
                break
            waited += delay
            _logger.info("Graph $batch: %d of %d items throttled; retrying in %.1f s", len(throttled),
                         len(items), delay)
            self._sleep(delay)
            pending = self._items_to_resend(items, results, throttled)
        return results

    def batch_many(self, chunks):
        """Send several ``$batch`` requests (each up to 20 items, as for :meth:`batch`) at once, at most
        :data:`~.const.BATCH_PARALLEL` in flight and never two that name the same mailbox: Outlook runs 4 items of
        one batch at a time, so with Graph's latency a round of many folders is bound by round trips, not by
        Outlook's per-mailbox limits (docs/microsoft-graph.md §5).

        The access token is asked for once, in the caller's thread (a provider may read the caller's database
        cursor, which other threads must not touch); each request goes from a thread of the process's pool with
        that thread's own HTTPS session. Every batch is sent and retried as :meth:`batch` does, and the usage of
        each is counted on this client.

        :param list chunks: Lists of batch items.
        :return: One answer per chunk, in order: ``{id: response}`` as :meth:`batch` returns it.
        :rtype: list
        :raise GraphError: The first error a whole batch raised (a 401, throttling of the envelope...), once
            every batch of its wave has finished.
        """
        waves = self._batch_waves(chunks)
        if all(len(wave) == 1 for wave in waves):   # one batch, or one mailbox's: one after the other, here
            return [self.batch(chunk) for chunk in chunks]
        token = self._token_provider()
        answers = [None] * len(chunks)
        for wave in waves:
            futures = [(index, _batch_pool().submit(self._batch_with_token, token, chunks[index])) for index in wave]
            failure = None
            for index, future in futures:
                answers[index], error, usage = future.result()
                for mailbox, (sent, throttled) in usage.items():
                    counts = self.usage.setdefault(mailbox, [0, 0])
                    counts[0] += sent
                    counts[1] += throttled
                failure = failure or error
            if failure is not None:
                raise failure
        return answers

    def _batch_waves(self, chunks):
        """Chunk indexes grouped into waves of at most :data:`BATCH_PARALLEL` that share no mailbox, in order."""
        waves = []
        for index, chunk in enumerate(chunks):
            mailboxes = {self._mailbox_key(self.url_for(item['url'])) for item in chunk} - {None}
            for indexes, taken in waves:
                if len(indexes) < BATCH_PARALLEL and not taken & mailboxes:
                    indexes.append(index)
                    taken |= mailboxes
                    break
            else:
                waves.append(([index], mailboxes))
        return [indexes for indexes, _taken in waves]

    def _batch_with_token(self, token, chunk):
        """One batch of :meth:`batch_many`, in a pool thread: ``(answer, error, usage)``, never raising (the
        caller's thread raises)."""
        client = copy.copy(self)
        client._token_provider = lambda: token
        client._session = thread_session(self.base_url, self._ca_bundle)
        client.usage = {}
        try:
            return client.batch(chunk), None, client.usage
        except Exception as error:   # noqa: BLE001 (handed to the caller's thread, which raises it)
            return None, error, client.usage

    def _send_batch(self, items):
        response = self.request('POST', '/$batch', json={'requests': items}, ok_statuses=(424,),
                                idempotent=False)
        body = _json_or_none(response) or {}
        return body.get('responses') or []

    @staticmethod
    def _batch_item(item):
        item = dict(item)
        item['id'] = str(item['id'])
        if urlsplit(item['url']).scheme or urlsplit(item['url']).netloc:
            # Batch URLs are relative to the batch endpoint; an absolute one would dodge the host allow-list.
            raise ValueError("$batch item URLs must be relative, got an absolute URL for id %s" % item['id'])
        if 'body' in item and item['body'] is not None:
            headers = dict(item.get('headers') or {})
            if 'content-type' not in _lower_keys(headers):
                headers['Content-Type'] = 'application/json'
            item['headers'] = headers
        return item

    @staticmethod
    def _items_to_resend(items, results, throttled):
        """The throttled items plus those that failed with 424 because they depend (even indirectly) on one;
        ``dependsOn`` keeps only the dependencies that are resent too (the others already succeeded)."""
        resend = set(throttled)
        grew = True
        while grew:
            dependents = {item['id'] for item in items if item['id'] not in resend
                          and results.get(item['id'], {}).get('status') == 424
                          and resend & set(item.get('dependsOn') or ())}
            resend |= dependents
            grew = bool(dependents)
        pending = []
        for item in items:
            if item['id'] not in resend:
                continue
            item = dict(item)
            depends_on = [dep for dep in item.pop('dependsOn', None) or () if dep in resend]
            if depends_on:
                item['dependsOn'] = depends_on
            pending.append(item)
        return pending

    # === REQUEST HELPERS === #

    def check_url(self, url, upload=False):
        """Raise :class:`HostNotAllowed` unless ``url`` is https on an allowed host.

        :param str url: An absolute URL.
        :param bool upload: An upload session's URL: Outlook's upload hosts are allowed too.
        :raise HostNotAllowed: Otherwise.
        """
        parts = urlsplit(url)
        netloc = parts.netloc.lower()
        hosts = self.allowed_hosts | (_UPLOAD_HOSTS if upload else frozenset())
        allowed = (_normalise_host(netloc) in hosts or (parts.hostname or '').lower() in hosts)
        if parts.scheme != 'https' or '@' in netloc or '\\' in netloc or not allowed:
            raise errors.HostNotAllowed("Refusing to call %s://%s: not an allowed Graph host."
                                        % (parts.scheme or '?', parts.hostname or '?'),
                                        params={'host': parts.hostname or '?'})

    def relative_url(self, url):
        """A link Graph gave (a next or delta link), relative to ``base_url``, for a ``$batch`` item: its path
        and query kept verbatim. The link must be on this client's endpoint.

        :raise HostNotAllowed: A link to another host.
        :raise ValueError: A link outside ``base_url``'s path.
        """
        self.check_url(url)
        absolute = self.url_for(url)
        if not absolute.startswith(self.base_url + '/'):
            raise ValueError("The link is not under %s" % self.base_url)
        return absolute[len(self.base_url):]

    def url_for(self, path_or_url):
        """Return the absolute URL for a path under ``base_url``, or an absolute URL unchanged (verbatim)."""
        if _ABSOLUTE_URL_RE.match(path_or_url):
            return path_or_url
        return '%s/%s' % (self.base_url, path_or_url.lstrip('/'))

    def request(self, method, path_or_url, *, params=None, json=None, headers=None, idempotent=None,
                ok_statuses=(), data=None, authorize=True):
        """Send one Graph request with auth, allow-list, per-mailbox slot, retries and error mapping.

        :param str method: HTTP method.
        :param str path_or_url: A path under ``base_url`` or an absolute Graph URL (used verbatim).
        :param dict params: Query parameters (not for links from Graph: they are complete).
        :param json: JSON body.
        :param dict headers: Extra headers (``Prefer``, ``ConsistencyLevel``, ...).
        :param bool idempotent: Whether resending after a timeout/5xx is safe (default: by method).
        :param tuple ok_statuses: Non-2xx statuses to return instead of raising (``$batch``'s 424).
        :param bytes data: A raw body (instead of ``json``).
        :param bool authorize: Send the access token; ``False`` for an upload session's pre-authenticated URL
            (which may then be on Outlook's upload hosts).
        :rtype: requests.Response
        :raise HostNotAllowed: The URL is outside the allow-list.
        :raise Unauthorized: 401 (not retried).
        :raise Throttled: 429/503 still there after the retries, or a ``Retry-After`` too long to wait.
        :raise MailboxBusy: (a :class:`Throttled`) No slot of the mailbox freed up within ``slot_wait``.
        :raise TransientError: 5xx, timeout or connection error after the retries.
        :raise GraphError: Any other mapped error (``Forbidden``, ``NotFound``, ``SyncReset``...).
        """
        method = method.upper()
        url = self.url_for(path_or_url)
        self.check_url(url, upload=not authorize)
        if idempotent is None:
            idempotent = method in _IDEMPOTENT_METHODS
        path = urlsplit(url).path
        mailbox_key = self._mailbox_key(url)
        waited = 0.0

        for attempt in range(self.max_retries + 1):
            retries_left = attempt < self.max_retries
            request_headers = {
                'Accept': 'application/json',
                'client-request-id': str(uuid.uuid4()),
                **(headers or {}),
            }
            if authorize:
                request_headers['Authorization'] = 'Bearer %s' % self._token_provider()
            started = time.monotonic()
            try:
                # A new hold per attempt: the slot is free while a retry sleeps.
                with self._slots.acquire(mailbox_key, self.slot_wait) if mailbox_key else _NoSlot():
                    response = self._session.request(
                        method, url, params=params, json=json, data=data, headers=request_headers,
                        timeout=self.timeout,
                        verify=self._verify,
                        allow_redirects=False,   # a redirect must not carry the token to another host
                    )
            except errors.MailboxBusy:
                _logger.warning("Graph %s %s: no free slot for its mailbox within %.0f s", method, path,
                                self.slot_wait)
                raise
            except requests.RequestException as exc:
                # A connect failure never reached Graph; a read timeout may have been executed.
                safe_to_resend = idempotent or isinstance(exc, requests.ConnectTimeout)
                delay = self._backoff(attempt)
                if retries_left and safe_to_resend and waited + delay <= self.max_wait:
                    _logger.warning("Graph %s %s: %s; retry %d in %.1f s", method, path, type(exc).__name__,
                                    attempt + 1, delay)
                    waited += delay
                    self._sleep(delay)
                    continue
                # requests' own message (host, path, SSL reason) helps the admin; it never holds headers, but it
                # quotes the URL with its query: an upload session's holds its credential (``authtoken``).
                _logger.warning("Graph %s %s failed: %s", method, path, redact(str(exc)))
                raise errors.TransientError("Graph %s %s failed: %s" % (method, path, type(exc).__name__)) \
                    from None

            status = response.status_code
            if mailbox_key:
                self._count(mailbox_key, status in _THROTTLE_STATUSES)
            request_id = response.headers.get('request-id')
            _logger.debug("Graph %s %s -> %s (request-id %s, %d ms)", method, path, status, request_id,
                          (time.monotonic() - started) * 1000)
            if 200 <= status < 300 or status in ok_statuses:
                return response

            error = errors.graph_error_from_response(response)
            retryable = status in _THROTTLE_STATUSES or (idempotent and status in _RETRYABLE_5XX)
            retry_after = getattr(error, 'retry_after', None)
            delay = retry_after if retry_after is not None else self._backoff(attempt)
            if retryable and retries_left and waited + delay <= self.max_wait:
                _logger.info("Graph %s %s -> %s (request-id %s); retry %d in %.1f s", method, path, status,
                             request_id, attempt + 1, delay)
                waited += delay
                self._sleep(delay)
                continue
            _logger.warning("Graph %s %s -> %s %s (request-id %s)", method, path, status, error.code, request_id)
            raise error
        raise AssertionError("unreachable")  # the loop always returns or raises

    def _mailbox_key(self, url):
        """The slot key ``(graph host, mailbox)`` of the mailbox ``url`` addresses (``/users/{id}/...``,
        ``/me/...``), or ``None``.

        The key is the mailbox segment as written, case-insensitive: address a mailbox the same way
        everywhere (its UPN, or its id) or the two spellings get a limit each.
        """
        path = urlsplit(url).path
        match = _MAILBOX_RE.search(path)
        if match:
            mailbox = unquote(match.group(1)).strip("'()").lower()
        elif '/me/' in path + '/':
            mailbox = 'me'
        else:
            return None
        return urlsplit(self.base_url).netloc.lower(), mailbox

    def _count(self, mailbox_key, throttled):
        counts = self.usage.setdefault(mailbox_key[1], [0, 0])
        counts[0] += 1
        counts[1] += bool(throttled)

    @staticmethod
    def _backoff(attempt):
        """Exponential backoff with full jitter: uniform in [0, min(max, base * 2**attempt)]."""
        return random.uniform(0, min(BACKOFF_MAX_S, BACKOFF_BASE_S * (2 ** attempt)))


# === BATCH RESULT HELPERS === #

def batch_item_error(response):
    """Return the mapped exception for a failed ``$batch`` item, or ``None`` for a 2xx one.

    :param dict response: One value of :meth:`GraphClient.batch`'s result.
    :rtype: GraphError or None
    """
    status = int(response.get('status') or 0)
    if 200 <= status < 300:
        return None
    return errors.graph_error_from_parts(status, response.get('body'), response.get('headers'))


# === HELPERS === #

def _normalise_host(netloc):
    """``Host:443`` -> ``host``; other ports kept (``127.0.0.1:8443``)."""
    netloc = netloc.strip().lower()
    return netloc[:-4] if netloc.endswith(':443') else netloc


def _lower_keys(mapping):
    return {str(key).lower(): value for key, value in (mapping or {}).items()}


def _json_or_none(response):
    if response.status_code == 204 or not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None

