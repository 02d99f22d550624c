""" The delta lanes' wake-up: an idle Odoo cron worker looks for due triggers once a minute only, so the process
that triggers a lane for the next folder's due time also wakes the workers then (tools/cron_wake.py). """
import select
import time

from odoo import sql_db
from odoo.tests import TransactionCase, tagged

from ..tools import cron_wake


@tagged('post_install', '-at_install')
class TestCronWake(TransactionCase):

    def listen(self):
        """ A connection of its own on the cron workers' channel, as theirs (server.py's cron_thread). """
        cr = sql_db.db_connect('postgres').cursor()
        self.addCleanup(cr.close)
        cr.execute("LISTEN cron_trigger")
        cr.commit()
        return cr._cnx

    def received(self, connection, timeout, dbname):
        """ The databases notified on the channel until ``dbname`` is or ``timeout`` seconds passed (other test
        runs on this PostgreSQL notify theirs). """
        deadline, payloads = time.monotonic() + timeout, []
        while dbname not in payloads and time.monotonic() < deadline:
            select.select([connection], [], [], max(0.0, deadline - time.monotonic()))
            connection.poll()
            payloads += [notify.payload for notify in connection.notifies if notify.channel == 'cron_trigger']
            connection.notifies.clear()
        return payloads

    def test_the_workers_are_woken_when_the_trigger_falls_due_not_before(self):
        dbname = self.env.cr.dbname
        connection = self.listen()
        cron_wake.wake_at(dbname, 1.5)
        self.assertAlmostEqual(cron_wake.pending(dbname), 1.5, delta=0.5)
        self.assertNotIn(dbname, self.received(connection, 0.5, dbname), "not before its time")
        self.assertIn(dbname, self.received(connection, 10, dbname))
        self.assertIsNone(cron_wake.pending(dbname), "done")

    def test_the_earliest_wake_up_of_a_database_wins(self):
        dbname = self.env.cr.dbname
        self.addCleanup(lambda: (entry := cron_wake._timers.pop(dbname, None)) and entry[1].cancel())
        cron_wake.wake_at(dbname, 300)
        cron_wake.wake_at(dbname, 120)
        self.assertAlmostEqual(cron_wake.pending(dbname), 120, delta=5, msg="an earlier one replaces it")
        cron_wake.wake_at(dbname, 600)
        self.assertAlmostEqual(cron_wake.pending(dbname), 120, delta=5, msg="a later one does not")
