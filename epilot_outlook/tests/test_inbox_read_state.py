from odoo.tests import new_test_user, tagged

from .mail_sync_common import SUPPORT, OutlookMailSyncCase


@tagged('post_install', '-at_install')
class TestReadStateWithOutlook(OutlookMailSyncCase):
    """ Read state both ways against the sandbox: reading in Odoo marks the e-mails read in the shared mailbox
    (``PATCH isRead``), reading in Outlook comes back through delta. """

    def setUp(self):
        super().setUp()
        self.address = self.add_address(SUPPORT)
        self.run_backfill(self.address)
        self.agent = new_test_user(self.env, 'eo_read_agent', groups='epilot_outlook.group_agent')
        self.address.shared_inbox_id.member_user_ids = [(4, self.agent.id)]
        self.push_cron = self.env.ref('epilot_outlook.ir_cron_outlook_push_read_state')

    def delivered_record(self, **values):
        delivered = self.deliver(**values)
        self.run_delta(self.address)
        record = self.env['epilot.outlook.message'].search([('graph_id', '=', delivered['immutable_id'])])
        self.assertEqual(len(record), 1)
        return record

    def inbox_unread(self):
        inbox = self.address.shared_inbox_id
        inbox.invalidate_recordset(['unread_conversation_count'])
        return inbox.unread_conversation_count

    def outlook_is_read(self, record):
        return self.graph('GET', '/users/%s/messages/%s?$select=isRead' % (SUPPORT, record.graph_id))['isRead']

    def test_read_in_odoo_then_in_outlook(self):
        record = self.delivered_record(subject="Read me")
        conversation = record.conversation_id
        self.assertTrue(conversation.is_unread)
        self.assertFalse(self.outlook_is_read(record))
        unread_before = self.inbox_unread()

        conversation.with_user(self.agent).action_outlook_mark_read()
        self.assertFalse(conversation.is_unread)
        self.assertEqual(self.inbox_unread(), unread_before - 1)
        self.assertFalse(self.outlook_is_read(record), "Graph is told by the cron, not by the request")
        self.run_cron(self.push_cron)
        self.assertTrue(self.outlook_is_read(record), "read in the shared mailbox")
        self.assertFalse(record.read_push_pending)
        self.run_delta(self.address)
        self.assertFalse(conversation.is_unread, "delta's echo of the change agrees")

        # Someone marks it unread in Outlook: Odoo follows at the next delta round.
        self.graph('PATCH', '/users/%s/messages/%s' % (SUPPORT, record.graph_id), {'isRead': False})
        self.run_delta(self.address)
        self.assertTrue(conversation.is_unread)
        self.assertEqual(self.inbox_unread(), unread_before)
        # And read there again.
        self.graph('PATCH', '/users/%s/messages/%s' % (SUPPORT, record.graph_id), {'isRead': True})
        self.run_delta(self.address)
        self.assertFalse(conversation.is_unread)
        self.assertInSync(self.address)

    def test_graph_outage_does_not_break_reading_and_the_flag_follows_later(self):
        record = self.delivered_record(subject="During an outage")
        self.sandbox.control('POST', '/faults', {'graph': {'503': 50, 'retry_after': 5}})
        self.addCleanup(self.sandbox.control, 'POST', '/faults', {'graph': None})
        record.conversation_id.with_user(self.agent).action_outlook_mark_read()
        self.assertFalse(record.conversation_id.is_unread, "read in Odoo at once")
        self.run_cron(self.push_cron)
        self.assertTrue(record.read_push_pending, "still queued")
        item = self.env['epilot.outlook.read.push'].search([('address_id', '=', self.address.id)])
        self.assertTrue(item.retry_at and item.last_error, "the failure is recorded on the address's work item")
        triggers = self.env['ir.cron.trigger'].search([('cron_id', '=', self.push_cron.id)])
        self.assertIn(item.retry_at, triggers.mapped('call_at'), "the cron comes back then")
        # A delta round during the outage's end still says unread: Odoo's newer flag wins.
        self.sandbox.control('POST', '/faults', {'graph': None})
        self.run_delta(self.address)
        self.assertFalse(record.conversation_id.is_unread)
        item.retry_at = False   # Graph's Retry-After has passed
        self.run_cron(self.push_cron)
        self.assertFalse(record.read_push_pending)
        self.assertTrue(self.outlook_is_read(record))

    def test_message_deleted_in_outlook_before_the_push(self):
        record = self.delivered_record(subject="Gone soon")
        record.conversation_id.action_outlook_mark_read()
        self.graph('DELETE', '/users/%s/messages/%s' % (SUPPORT, record.graph_id))
        self.run_cron(self.push_cron)
        self.assertFalse(record.read_push_pending, "nothing left to mark: done, not retried forever")
