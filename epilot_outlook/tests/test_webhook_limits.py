import logging
import time

from odoo.tests import TransactionCase, tagged

from ..models import epilot_outlook_push_event as push_event
from ..outlook_core.logsafe import LogLimit
from ..models.epilot_outlook_subscription import MISMATCH_QUEUE_MAX
from .test_push import OutlookPushCase

# The controller (refused bodies) and the push queue (ignored notifications) both log under it.
WEBHOOK_LOGGER = 'odoo.addons.epilot_outlook'


@tagged('post_install', '-at_install')
class TestWebhookLimits(OutlookPushCase):
    """ Whoever learnt a subscription's id (it travels in every notification) can post forged notifications
    without end: they cost a bounded number of queued rows and of log lines, they are all counted, and the email
    settings editors are still told. """

    def setUp(self):
        super().setUp()
        # What earlier tests left in this process's limits: a fresh start, as in a new worker.
        self.patch(push_event.WEBHOOK_LOG_LIMIT, '_entries', {})
        self.patch(push_event, '_held_mismatches', {})

    def refused_lines(self, logs):
        return [line for line in logs.output if 'body refused' in line]

    def test_forged_notifications_cost_bounded_rows_and_log_lines(self):
        address = self.live_address()
        self.run_push_round()
        sub = self.subscription(address)
        # logging.INFO, not 'INFO': Odoo names another level (25) INFO too.
        with self.assertLogs(WEBHOOK_LOGGER, level=logging.INFO) as logs:
            for number in range(40):
                response = self.post_webhook({'value': [self.notification(sub, client_state='forged%d' % number)]})
                self.assertEqual(response.status_code, 202)
            for _number in range(20):
                self.assertEqual(self.post_webhook(b'not json').status_code, 400)
        mismatches = self.push_events().filtered(lambda event: event.kind == 'mismatch')
        self.assertEqual(len(mismatches), MISMATCH_QUEUE_MAX, "a bounded number of rows for 40 forged notifications")
        self.assertEqual(sum(mismatches.mapped('count')), MISMATCH_QUEUE_MAX, "the rest is counted, not stored")
        self.assertEqual(len([line for line in logs.output if 'notifications ignored' in line]), 1)
        self.assertEqual(len(self.refused_lines(logs)), 1)

        self.run_push_round()
        self.assertEqual(sub.mismatch_count, MISMATCH_QUEUE_MAX)
        alerts = self.connection.message_ids.filtered(lambda message: 'rejected' in (message.body or ''))
        self.assertEqual(len(alerts), 1, "the editors are told, once")
        self.assertIn(self.odoo_admin.partner_id, alerts.partner_ids)
        # The next forged notification, once the queue was read, brings the count of those held back.
        self.post_webhook({'value': [self.notification(sub, client_state='forged again')]})
        self.run_push_round()
        self.assertEqual(sub.mismatch_count, 41)
        self.assertInSync(address)

    def test_the_next_line_says_how_many_were_not_logged(self):
        self.patch(push_event.WEBHOOK_LOG_LIMIT, '_entries', {})
        self.patch(push_event.WEBHOOK_LOG_LIMIT, 'interval', 0.5)
        with self.assertLogs(WEBHOOK_LOGGER, level=logging.INFO) as logs:
            for _number in range(3):
                self.post_webhook(b'not json')
            time.sleep(0.6)
            self.post_webhook(b'[]')
        first, second = self.refused_lines(logs)
        self.assertIn('body refused (not_json, 8 bytes) from 127.0.0.1', first)
        self.assertNotIn('since the previous line', first)
        self.assertIn('body refused (not_a_batch, 2 bytes) from 127.0.0.1 (3 bodies refused from there since the '
                      'previous line)', second)


@tagged('post_install', '-at_install')
class TestWebhookLogLimit(TransactionCase):

    def test_many_senders_share_one_line(self):
        limit = LogLimit(interval=60, max_senders=2)
        self.assertEqual([limit.take('refused', sender) for sender in ('a', 'b', 'c', 'd', 'a')], [1, 1, 1, None, None])
        self.assertEqual(limit.take('malformed', 'a', 5), 5, "each kind of line has its own minute")
        self.assertLessEqual(len(limit._entries), 4, "senders past the bound are not remembered one by one")
