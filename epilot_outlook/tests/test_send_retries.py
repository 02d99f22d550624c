import time
from datetime import timedelta
from types import SimpleNamespace

from odoo import fields
from odoo.tests import tagged
from odoo.tools import mute_logger

from ..models import epilot_outlook_connection_tokens as tokens_module
from .send_common import OutlookSendCase


@tagged('post_install', '-at_install')
class TestSendRetries(OutlookSendCase):
    """ Send retries are Odoo's mail queue's (issue 18 item 1): a ``mail.mail`` Graph could not take now goes back
    to the queue with its ``scheduled_date`` set by the one retry policy (``errors.retry_delay``), and the queue's
    cron is triggered for then. """

    def assertQueueComesBack(self, mail):
        """ The mail queue's cron is triggered for when ``mail`` is due (its ``scheduled_date`` is whole seconds,
        the trigger's time may not be). """
        cron = self.env.ref('mail.ir_cron_mail_scheduler_action')
        calls = self.env['ir.cron.trigger'].sudo().search([('cron_id', '=', cron.id)]).mapped('call_at')
        self.assertTrue(any(timedelta(0) <= call - mail.scheduled_date < timedelta(seconds=1) for call in calls),
                        "the queue comes back for it then (%s, %s)" % (mail.scheduled_date, calls))

    @mute_logger('odoo.addons.mail.models.mail_mail')
    def test_throttled_send_comes_back_after_graph_retry_after(self):
        conversation, _delivered = self.customer_writes()
        self.sandbox.control('POST', '/faults', {'graph': {'429': 3, 'retry_after': 30}})
        self.addCleanup(self.sandbox.control, 'POST', '/faults', {'graph': None})
        before = fields.Datetime.now()
        mail = self.mails_of(self.reply(conversation))
        self.assertEqual(mail.state, 'outgoing')
        self.assertGreaterEqual(mail.scheduled_date, before + timedelta(seconds=29), "Graph's Retry-After")
        self.assertLessEqual(mail.scheduled_date, fields.Datetime.now() + timedelta(seconds=31))
        self.assertQueueComesBack(mail)

    @mute_logger('odoo.addons.mail.models.mail_mail',
                 'odoo.addons.epilot_outlook.models.epilot_outlook_connection_tokens')
    def test_token_refresh_failing_transiently_puts_the_mail_back_in_the_queue(self):
        """ Microsoft's identity platform answers 503 to the refresh the send needs (after the refresh's own
        retries): a failure that passes by itself. The mail waits in the queue (5-60 s), instead of failing with
        a red envelope that an agent must retry by hand; then it goes, once. """
        conversation, _delivered = self.customer_writes()
        clock = {name: getattr(time, name) for name in dir(time) if not name.startswith('_')}
        self.patch(tokens_module, 'time', SimpleNamespace(**dict(clock, sleep=lambda _seconds: None)))
        self.connection.sudo().access_token_expiry = fields.Datetime.now() - timedelta(minutes=1)
        self.env.flush_all()   # the refresh reads the connection in a transaction of its own
        tokens_module._tokens_refreshed_here.pop((self.env.cr.dbname, self.connection.id), None)
        self.sandbox.control('POST', '/faults', {'token_endpoint': {'status': 503, 'times': 50}})
        self.addCleanup(self.sandbox.control, 'POST', '/faults', {'token_endpoint': None})
        before = fields.Datetime.now()
        message = self.reply(conversation)
        mail = self.mails_of(message)
        self.assertEqual(mail.state, 'outgoing', "back in the queue, not failed")
        self.assertGreaterEqual(mail.scheduled_date, before + timedelta(seconds=5))
        self.assertLessEqual(mail.scheduled_date, fields.Datetime.now() + timedelta(seconds=60))
        self.assertQueueComesBack(mail)
        self.assertEqual(self.connection.state, 'connected', "nothing to reconnect")
        self.assertEqual(self.sent(), [])

        self.sandbox.control('POST', '/faults', {'token_endpoint': None})
        mail.scheduled_date = False
        self.run_mail_queue()
        self.assertFalse(mail.exists(), "sent")
        self.assertEqual(message.notification_ids.mapped('notification_status'), ['sent'])
        self.assertEqual(len(self.sent()), 1)
