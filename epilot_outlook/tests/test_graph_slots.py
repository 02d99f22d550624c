import threading
import time
from contextlib import ExitStack, nullcontext

import psycopg2

from odoo import sql_db
from odoo.tests import TransactionCase, tagged

from ..tools.graph_slots import OutlookGraphSlots, slot_lock_key
from ..outlook_core import graph
from ..outlook_core.errors import MailboxBusy, Throttled
from .outlook_sandbox_common import sign_in_service_account
from .sandbox_process import SandboxProcess

MAILBOX = ('graph.example', 'support@contoso.onmicrosoft.com')
OTHER_MAILBOX = ('graph.example', 'billing@contoso.onmicrosoft.com')
REDIRECT_URI = 'http://127.0.0.1:8069/epilot_outlook/oauth/callback'
INBOX = 'users/support@contoso.onmicrosoft.com/mailFolders/inbox/messages'


@tagged('post_install', '-at_install')
class TestGraphSlots(TransactionCase):
    """ The database-wide Graph slots against real, separate PostgreSQL sessions.

    "Another server" is a psycopg2 connection of its own, outside this process's pool; the provider's own
    holds each take a connection of the pool. The test's transaction is never involved.
    """

    def setUp(self):
        super().setUp()
        self.slots = OutlookGraphSlots(self.env.cr.dbname)

    def other_server_holds(self, key, slot):
        """ Hold slot ``slot`` of ``key`` from a session outside this process's pool; rollback releases it. """
        _dbname, info = sql_db.connection_info_for(self.env.cr.dbname)
        cnx = psycopg2.connect(**info)

        def release():
            # A rollback frees the slot before it returns; closing alone frees it only once the server's
            # backend has gone, which the next test may beat.
            cnx.rollback()
            cnx.close()

        self.addCleanup(release)
        with cnx.cursor() as cr:
            cr.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", (slot_lock_key(key), slot))
            self.assertTrue(cr.fetchone()[0])
        return cnx

    def slot_holders(self, key):
        """ {slot number: backend pid} of the advisory locks granted on ``key``, seen from a fresh session. """
        with sql_db.db_connect(self.env.cr.dbname).cursor() as cr:
            cr.execute("SELECT objid, pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                       " AND classid = %s AND objsubid = 2", (slot_lock_key(key) & 0xFFFFFFFF,))
            return dict(cr.fetchall())

    @staticmethod
    def pool_in_use():
        return sum(1 for cnx in sql_db._Pool._connections if cnx._pool_in_use)

    def test_a_fifth_request_waits_then_fails_and_a_released_slot_lets_it_through(self):
        others = [self.other_server_holds(MAILBOX, slot) for slot in range(4)]
        started = time.monotonic()
        with self.assertRaises(MailboxBusy), self.slots.acquire(MAILBOX, 1.0):
            self.fail("a fifth slot was granted")
        self.assertGreaterEqual(time.monotonic() - started, 0.9, "it waited for a slot to free up")

        others[2].rollback()   # That server's request ended.
        with self.slots.acquire(MAILBOX, 10):
            holders = self.slot_holders(MAILBOX)
            self.assertEqual(len(holders), 4)
            self.assertNotIn(holders[2], [cnx.get_backend_pid() for cnx in others], "slot 2 changed hands")
        self.assertEqual(len(self.slot_holders(MAILBOX)), 3, "the slot was released with the block")

    def test_a_slot_freed_while_waiting_is_taken(self):
        others = [self.other_server_holds(MAILBOX, slot) for slot in range(4)]
        timer = threading.Timer(0.5, others[0].rollback)
        timer.start()
        self.addCleanup(timer.cancel)
        with self.slots.acquire(MAILBOX, 20):
            self.assertEqual(len(self.slot_holders(MAILBOX)), 4)

    def test_mailboxes_do_not_block_each_other(self):
        for slot in range(4):
            self.other_server_holds(MAILBOX, slot)
        with ExitStack() as stack:
            for _ in range(4):   # Four at once, without waiting: each its own session and slot.
                stack.enter_context(self.slots.acquire(OTHER_MAILBOX, 0))
            self.assertEqual(sorted(self.slot_holders(OTHER_MAILBOX)), [0, 1, 2, 3])
            self.assertEqual(len(set(self.slot_holders(OTHER_MAILBOX).values())), 4)
            with self.assertRaises(MailboxBusy), self.slots.acquire(OTHER_MAILBOX, 0):
                pass
        self.assertNotEqual(slot_lock_key(MAILBOX), slot_lock_key(OTHER_MAILBOX))
        self.assertNotEqual(slot_lock_key(MAILBOX), slot_lock_key(('other.host', MAILBOX[1])))

    def test_no_connection_is_leaked(self):
        def backends():
            with sql_db.db_connect(self.env.cr.dbname).cursor() as cr:
                cr.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
                return cr.fetchone()[0]

        in_use, pooled, count = self.pool_in_use(), len(sql_db._Pool._connections), backends()
        for _ in range(20):
            with self.slots.acquire(MAILBOX, 5):
                pass
        with self.assertRaises(RuntimeError), self.slots.acquire(MAILBOX, 5):
            raise RuntimeError("the request failed")
        with ExitStack() as stack:   # Full: a waiter goes through several rounds, then gives up.
            for _ in range(4):
                stack.enter_context(self.slots.acquire(MAILBOX, 0))
            with self.assertRaises(MailboxBusy), self.slots.acquire(MAILBOX, 0.6):
                pass
            self.assertEqual(self.pool_in_use(), in_use + 4)
        self.assertEqual(self.pool_in_use(), in_use, "every connection went back to the pool")
        self.assertLessEqual(len(sql_db._Pool._connections), pooled + 4)
        self.assertLessEqual(backends(), count + 4)
        self.assertEqual(self.slot_holders(MAILBOX), {}, "no slot is left held")


class _Unlimited:
    """ A slot provider that lets every request through, to show the sandbox's limit bites without one. """

    def acquire(self, key, timeout):
        return nullcontext()


@tagged('post_install', '-at_install')
class TestGraphSlotsSandbox(TransactionCase):
    """ Eight concurrent Graph calls for one mailbox, each from a client of its own (as eight workers would),
    against the sandbox, which answers 429 past 4 concurrent requests per (app, mailbox).

    The threads share one process, and so the plain layer's semaphores of that process; those are lifted, as
    eight worker processes would not share them, so only slots shared through the database keep the limit.
    """

    def setUp(self):
        super().setUp()
        self.sandbox = SandboxProcess.get()
        demo = self.sandbox.reset_and_seed([REDIRECT_URI])
        self.access_token = sign_in_service_account(self.sandbox, demo, REDIRECT_URI).access_token
        self.sandbox.allow_in(self.env)
        company = self.env['res.company'].create({'name': "Slots Co"})
        self.connection = self.env['epilot.outlook.connection'].create({
            'company_id': company.id,
            'graph_endpoint': self.sandbox.info['graph_base_url'],
            'ca_bundle': self.sandbox.info['ca_bundle'],
        })
        # Every request lasts long enough for the eight to overlap.
        self.sandbox.control('POST', '/faults', {'graph': {'latency_ms': 300}})
        self.addCleanup(self.sandbox.control, 'POST', '/faults', {'graph': None})
        self.patch(graph, '_PROCESS_SLOTS', _Unlimited())

    def call_concurrently(self, count, **client_options):
        """ ``count`` threads, each with a client of its own and no retry; returns each one's outcome. """
        clients = [self.connection._outlook_graph_client(token_provider=lambda: self.access_token, max_retries=0,
                                                         **client_options) for _ in range(count)]
        outcomes = [None] * count

        def call(index):
            try:
                outcomes[index] = clients[index].get(INBOX, params={'$top': 1})
            except Throttled as error:
                outcomes[index] = error

        threads = [threading.Thread(target=call, args=(index,)) for index in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        return outcomes

    def test_eight_concurrent_calls_for_one_mailbox_get_no_429(self):
        unlimited = self.call_concurrently(8, slots=_Unlimited())
        self.assertIn(429, [getattr(outcome, 'status', None) for outcome in unlimited],
                      "without shared slots the sandbox refuses a fifth concurrent request")

        outcomes = self.call_concurrently(8)   # The slots the connection gives its clients.
        self.assertFalse([outcome for outcome in outcomes if not isinstance(outcome, dict)])
        self.assertTrue(all('value' in outcome for outcome in outcomes))
