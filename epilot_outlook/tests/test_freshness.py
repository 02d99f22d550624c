""" Freshness you can see (issue 18, item 5): each address's age of its last successful round, the connection's
figures (mailboxes, lag p95, Graph requests against Microsoft's limit, throttled calls), and one notice to the
editors when an address lags, one when it recovers. """
from datetime import timedelta

from odoo import fields
from odoo.tests import tagged

from .mail_sync_common import SUPPORT, OutlookMailSyncCase


@tagged('post_install', '-at_install')
class TestFreshness(OutlookMailSyncCase):

    def setUp(self):
        super().setUp()
        self.address = self.add_address(SUPPORT)
        self.run_backfill(self.address)
        self.run_delta(self.address)

    def notes(self):
        return self.connection.message_ids.filtered(lambda message: 'mailboxes' in (message.body or ''))

    def test_graph_requests_are_counted_per_mailbox_with_the_throttled_ones(self):
        Usage = self.env['epilot.outlook.graph.usage']

        def requests():
            Usage._outlook_flush()   # what this process counted and has not written yet
            Usage.invalidate_model()
            return sum(Usage.search([('mailbox', '=', SUPPORT)]).mapped('requests'))

        before = requests()
        self.run_delta(self.address)
        after = requests()
        self.assertEqual(after - before, 2, "an idle round: one request per folder")
        self.sandbox.control('POST', '/faults', {'graph': {'429': 5, 'retry_after': 30}})
        self.run_delta(self.address)
        self.sandbox.control('POST', '/faults', {'graph': None})
        self.connection.invalidate_recordset()
        self.assertEqual(self.connection.graph_throttled_day, 2, "each folder's round was throttled once")
        self.assertEqual(self.connection.graph_busiest_mailbox, SUPPORT)
        self.assertGreaterEqual(self.connection.graph_busiest_requests, 2)
        self.assertEqual(self.connection.graph_limit, 10000)
        self.assertEqual(self.connection.synced_mailbox_count, 1)

    def test_one_notice_when_an_address_lags_and_one_when_it_recovers(self):
        Connection = self.env['epilot.outlook.connection']
        self.assertEqual(self.address.sync_lag_minutes, 0)
        Connection._cron_outlook_freshness()
        self.assertFalse(self.notes(), "in sync: nothing to say")
        # Graph fails for a while: the folders' last successful rounds grow old (interval 1 minute).
        syncs = self.address.folder_sync_ids
        syncs.write({'last_round_date': fields.Datetime.now() - timedelta(minutes=10)})
        self.address.invalidate_recordset(['sync_lag_minutes'])
        self.assertEqual(self.address.sync_lag_minutes, 10)
        self.assertEqual(self.connection.lag_p95_minutes, 10)
        Connection._cron_outlook_freshness()
        Connection._cron_outlook_freshness()
        [late] = self.notes()
        self.assertIn(SUPPORT, late.body)
        self.assertIn('not synced for longer than 3 polling intervals', late.body)
        self.assertTrue(self.address.lag_notified)
        self.connection.invalidate_recordset()
        self.assertEqual(self.connection.lagging_count, 1)
        # The next round works: one more notice, then quiet.
        self.run_delta(self.address)
        Connection._cron_outlook_freshness()
        Connection._cron_outlook_freshness()
        self.assertEqual(len(self.notes()), 2)
        self.assertIn('in sync again', self.notes()[0].body)
        self.assertFalse(self.address.lag_notified)
