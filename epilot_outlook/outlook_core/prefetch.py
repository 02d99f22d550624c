"""Read the next page of a listing while the caller imports the current one.

A backfill step reads its pages from Graph, then spends several times as long writing them to the database;
the next step's link is known as soon as the current pages arrive. :class:`PagePrefetcher` reads those pages in a
background thread meanwhile, so the next step finds it ready instead of waiting on Graph and the sandbox or
Exchange behind it.

It is an optimisation only, and never decides anything:

- a page is handed out once, to the caller asking for exactly its key (database, record, link), and is dropped
  unread when nobody asks for it (another worker took the next step; a crash; a cancel);
- a read that failed is handed out as nothing: the caller reads the page itself and meets the error where it
  is handled (throttling, a 401 to refresh, a lost right). The background read does not retry nor wait;
- it holds at most ``capacity`` pages, so a process never keeps more than a few pages of mail in memory.

Each background thread keeps its own HTTP session (:attr:`PagePrefetcher.sessions`), so its HTTPS connection
to Graph stays open from one page to the next: a new one per page spent more time in the TLS handshake than
in reading the page (py-spy on bench/bench_backfill.py).
"""
import logging
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor, TimeoutError as FutureTimeout

import requests

_logger = logging.getLogger(__name__)

# Seconds a step waits for a page read in the background before reading it itself.
TAKE_TIMEOUT_S = 30.0


class PagePrefetcher:
    """Pages read ahead in background threads, by key.

    :param int capacity: Pages held (read or in flight) at most; the oldest are dropped first.
    :param int workers: Background threads.
    """

    def __init__(self, capacity=4, workers=2):
        self.capacity = capacity
        self.sessions = ThreadLocalSession()
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix='graph-prefetch')
        self._pending = OrderedDict()
        self._lock = threading.Lock()

    def start(self, key, read):
        """Start ``read()`` in the background for ``key`` (nothing when ``key`` is already on its way).

        :param tuple key: Identifies the page: whoever asks for it with the same key gets it.
        :param callable read: Returns the page; it must not touch the caller's database cursor.
        """
        with self._lock:
            if key in self._pending:
                return
            self._pending[key] = self._executor.submit(read)
            while len(self._pending) > self.capacity:
                _key, dropped = self._pending.popitem(last=False)
                dropped.cancel()

    def take(self, key, timeout=TAKE_TIMEOUT_S):
        """The page read for ``key``, or ``None`` (none started, it failed, or it took longer than ``timeout``).

        :rtype: object or None
        """
        with self._lock:
            future = self._pending.pop(key, None)
        if future is None:
            return None
        try:
            return future.result(timeout=timeout)
        except FutureTimeout:
            future.cancel()
            return None
        except Exception as error:  # noqa: BLE001 - the caller reads the page again and handles the error
            _logger.debug("Graph prefetch of a page failed (%s); it is read again", type(error).__name__)
            return None


class ThreadLocalSession:
    """ A ``requests.Session`` per thread, kept for the thread's life, behind the one method
    :class:`graph.GraphClient` calls: a client made in one thread and used in a background one uses the
    background thread's session (sessions are not shared between threads). """

    def __init__(self):
        self._local = threading.local()

    def request(self, *args, **kwargs):
        session = getattr(self._local, 'session', None)
        if session is None:
            session = self._local.session = requests.Session()
        return session.request(*args, **kwargs)
