"""Outlook's 4 concurrent requests per mailbox, held across every Odoo process and server on one database.

The plain layer's default slots are semaphores of one process; Odoo runs many (prefork workers, cron
workers, several servers on one database). Here a slot is a PostgreSQL advisory lock, which every session on
the database sees: ``pg_try_advisory_xact_lock(k1, k2)`` with ``k1`` a stable 32-bit hash of (Graph host,
mailbox) and ``k2`` the slot number, 0 to 3.

The lock is taken in a transaction of its own, on a connection borrowed from Odoo's pool through
``sql_db.db_connect(dbname).cursor()``, not through ``registry.cursor()``:

* it must never be the caller's transaction: that one may run for minutes after the request, and PostgreSQL
  grants an advisory lock again to the session already holding it, so two requests of one transaction would
  share a slot;
* under Odoo's test mode ``registry.cursor()`` wraps the test's own transaction (a savepoint of it), with
  exactly that effect.

A transaction-level lock goes with the transaction: closing the cursor rolls back and frees the slot, and a
process that dies frees it with its connection. The pool connection is returned between two rounds of
waiting, so a waiting request holds no connection while it sleeps.
"""
import hashlib
import logging
import random
import time
from contextlib import contextmanager

import psycopg2
from psycopg2.pool import PoolError

from odoo import sql_db
from odoo.tools import SQL

from ..outlook_core import const
from ..outlook_core.graph import mailbox_busy

_logger = logging.getLogger(__name__)

# Seconds between two rounds of trying the slots; each sleep is jittered (x0.5 to x1.5) so waiters on one
# mailbox do not retry in step.
SLOT_ROUND_S = 0.2
# Mixed into the hash so this addon's advisory locks do not meet another module's two-key locks.
_KEY_NAMESPACE = b'epilot_outlook.graph_slot'


def slot_lock_key(key):
    """Return ``k1`` of a mailbox's advisory locks: a stable signed 32-bit hash of ``(graph host, mailbox)``.

    Stable across processes and Python versions (``hash()`` is salted per process).

    :param tuple key: ``(graph host, mailbox)`` as :class:`GraphClient` passes it.
    :rtype: int
    """
    digest = hashlib.sha256(b'\0'.join([_KEY_NAMESPACE, *(str(part).encode() for part in key)])).digest()
    return int.from_bytes(digest[:4], 'big', signed=True)


class OutlookGraphSlots:
    """Slot provider for :class:`GraphClient` shared by every session on the database ``dbname``.

    :param str dbname: The database whose sessions share the slots.
    :param int limit: Slots per mailbox.
    """

    def __init__(self, dbname, limit=const.MAX_CONCURRENT_PER_MAILBOX):
        self.dbname = dbname
        self.limit = limit

    @contextmanager
    def acquire(self, key, timeout):
        """Hold one of the mailbox's slots for the ``with`` block.

        Tries the slots in turn, and again every :data:`SLOT_ROUND_S` (jittered) until ``timeout``.

        :param tuple key: ``(graph host, mailbox)``.
        :param float timeout: Seconds to wait for a slot.
        :raise MailboxBusy: No slot freed up within ``timeout``.
        """
        lock_key = slot_lock_key(key)
        deadline = time.monotonic() + timeout
        while True:
            cr = self._try_slots(lock_key)
            if cr is not None:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                raise mailbox_busy(key, timeout)
            time.sleep(min(left, SLOT_ROUND_S * random.uniform(0.5, 1.5)))
        try:
            yield
        finally:
            try:
                cr.close()  # Rolls back: the slot's lock goes with the transaction.
            except psycopg2.Error as error:
                # The connection died, and its lock with it. The request's outcome must reach the caller: a
                # sendMail that went out, reported as failed, would be sent again.
                _logger.warning("Graph slots: closing the slot's connection failed: %s", error)

    def _try_slots(self, lock_key):
        """One round: return the cursor whose transaction now holds a slot, or ``None`` (all taken).

        :rtype: odoo.sql_db.Cursor or None
        """
        try:
            cr = sql_db.db_connect(self.dbname).cursor()
        except PoolError:
            # This process has every connection of its pool in use: as good as no slot this round.
            _logger.info("Graph slots: the connection pool is full; waiting for a slot")
            return None
        try:
            for slot in range(self.limit):
                cr.execute(SQL("SELECT pg_try_advisory_xact_lock(%s, %s)", lock_key, slot))
                if cr.fetchone()[0]:
                    return cr
        except BaseException:
            cr.close()
            raise
        cr.close()
        return None
