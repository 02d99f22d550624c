from datetime import timedelta

from odoo import fields
from odoo.tests import new_test_user, tagged

from .mail_sync_common import SUPPORT, OutlookMailSyncCase


@tagged('post_install', '-at_install')
class TestOutlookTriage(OutlookMailSyncCase):
    """ Triage both ways with Outlook (issue 19, item 5), against the sandbox: closing a conversation in Odoo moves
    its received e-mails to the mailbox's Archive folder (a cron, never the agent's request); archiving them in
    Outlook closes it in Odoo; deleting or filing elsewhere does not; a new e-mail reopens it. Off by default. """

    def setUp(self):
        super().setUp()
        self.address = self.add_address(SUPPORT)
        self.run_backfill(self.address)
        self.inbox = self.address.shared_inbox_id
        self.agent = new_test_user(self.env, 'eo_triage_agent', groups='epilot_outlook.group_agent')
        self.inbox.member_user_ids = [(4, self.agent.id)]
        self.triage_cron = self.env.ref('epilot_outlook.ir_cron_outlook_triage')
        self.archive_id = self.graph('GET', '/users/%s/mailFolders/archive?$select=id' % SUPPORT)['id']
        self.inbox_id = self.graph('GET', '/users/%s/mailFolders/inbox?$select=id' % SUPPORT)['id']

    # --- helpers ------------------------------------------------------------------------------------------

    def enable(self):
        self.inbox.with_user(self.odoo_admin).outlook_sync_triage = True

    def delivered(self, **values):
        """ Deliver an e-mail to the shared mailbox, sync it, and return its sync record. """
        delivered = self.deliver(**values)
        self.run_delta(self.address)
        record = self.env['epilot.outlook.message'].search([('graph_id', '=', delivered['immutable_id'])])
        self.assertEqual(len(record), 1)
        return record

    def folder_of(self, record):
        return self.graph('GET', '/users/%s/messages/%s?$select=parentFolderId' % (
            SUPPORT, record.graph_id))['parentFolderId']

    def move_in_outlook(self, record, destination):
        self.graph('POST', '/users/%s/messages/%s/move' % (SUPPORT, record.graph_id), {'destinationId': destination})

    def age(self, conversation):
        """ What Odoo holds of the conversation dates from an hour ago: the next e-mail comes later (Odoo's dates
        are whole seconds, and the sandbox delivers within the same one). """
        self.env.flush_all()
        self.env.cr.execute(
            "UPDATE epilot_outlook_message SET date = date - interval '1 hour' WHERE conversation_id = %s",
            [conversation.id])
        self.env.cr.execute(
            "UPDATE epilot_shared_conversation SET last_inbound_date = last_inbound_date - interval '1 hour' "
            "WHERE id = %s", [conversation.id])
        self.env.invalidate_all()

    def closed_in_outlook_notes(self, conversation):
        self.env.flush_all()
        self.env.cr.precommit.run()   # tracking messages are written at commit
        conversation.invalidate_recordset(['message_ids'])
        return conversation.message_ids.filtered(lambda message: 'Closed in Outlook' in str(message.body))

    # --- Odoo -> Outlook ----------------------------------------------------------------------------------

    def test_close_in_odoo_archives_in_outlook_and_a_reply_reopens(self):
        self.enable()
        first = self.delivered(subject="Broken hinge")
        conversation = first.conversation_id
        second = self.delivered(subject="RE: Broken hinge", in_reply_to=first.internet_message_id)
        self.assertEqual(second.conversation_id, conversation)
        other = self.delivered(subject="Another matter")
        self.assertNotEqual(other.conversation_id, conversation)

        conversation.with_user(self.agent).write({'state': 'closed'})
        self.assertEqual(self.folder_of(first), self.inbox_id, "Graph is called by the cron, not in the request")
        self.assertTrue(first.archive_pending and second.archive_pending)
        self.assertFalse(other.archive_pending)

        self.run_cron(self.triage_cron)
        self.assertEqual(self.folder_of(first), self.archive_id, "moved to the mailbox's Archive folder")
        self.assertEqual(self.folder_of(second), self.archive_id)
        self.assertEqual(self.folder_of(other), self.inbox_id, "another conversation stays in the Inbox")
        self.assertFalse(first.archive_pending)
        self.assertTrue(first.archived_by_odoo and first.removed_in_outlook)
        triage = self.env['epilot.outlook.triage'].search([('address_id', '=', self.address.id)])
        self.assertEqual((triage.moved_count, triage.retry_at), (2, False))
        # Never a delete: both are listed in Archive by their immutable ids, Deleted Items holds nothing of them.
        archived = self.outlook_ids(SUPPORT, 'archive')
        self.assertLessEqual({first.graph_id, second.graph_id}, set(archived))
        self.assertFalse({first.graph_id, second.graph_id} & set(self.outlook_ids(SUPPORT, 'deleteditems')))

        # Delta's echo of Odoo's own move (the Inbox's @removed) is no close event: nothing looked up, nothing said.
        self.run_delta(self.address)
        self.assertEqual(conversation.state, 'closed')
        self.assertFalse(self.closed_in_outlook_notes(conversation))
        self.assertFalse(first.triage_check_pending)

        # The customer writes again: the conversation reopens, as it always did; the new e-mail is in the Inbox.
        self.age(conversation)
        third = self.delivered(subject="RE: Broken hinge", in_reply_to=second.internet_message_id)
        self.assertEqual(third.conversation_id, conversation)
        self.assertEqual(conversation.state, 'open')
        self.assertEqual(self.folder_of(third), self.inbox_id)
        # Closed again: only the new e-mail moves (the others are archived already).
        conversation.with_user(self.agent).write({'state': 'closed'})
        self.assertEqual((first.archive_pending, third.archive_pending), (False, True))
        self.run_cron(self.triage_cron)
        self.assertEqual(self.folder_of(third), self.archive_id)
        self.run_delta(self.address)
        self.assertEqual(conversation.state, 'closed')

    def test_own_moves_do_not_come_back_as_a_close(self):
        """ Closed, archived by the cron, reopened by an agent before the next delta round: delta's removal of the
        e-mail from the Inbox is Odoo's own move, not an archive in Outlook, and must not close it again. """
        self.enable()
        record = self.delivered(subject="Moved by Odoo")
        conversation = record.conversation_id
        conversation.with_user(self.agent).write({'state': 'closed'})
        self.run_cron(self.triage_cron)
        self.assertEqual(self.folder_of(record), self.archive_id)
        conversation.with_user(self.agent).write({'state': 'open'})
        self.run_delta(self.address)
        self.assertEqual(conversation.state, 'open')
        self.assertFalse(self.closed_in_outlook_notes(conversation))
        self.assertFalse(record.archive_pending, "reopening moves nothing back: Outlook is left as it is")

    def test_option_off_nothing_moves(self):
        self.assertFalse(self.inbox.outlook_sync_triage, "off by default")
        record = self.delivered(subject="Leave it where it is")
        record.conversation_id.with_user(self.agent).write({'state': 'closed'})
        self.assertFalse(record.archive_pending)
        self.assertFalse(self.env['epilot.outlook.triage'].search([]))
        self.run_cron(self.triage_cron)
        self.assertEqual(self.folder_of(record), self.inbox_id)
        # Archived in Outlook with the option off: Odoo does not close (nor look up where it went).
        reopened = self.delivered(subject="Another one")
        self.move_in_outlook(reopened, 'archive')
        self.run_delta(self.address)
        self.assertTrue(reopened.removed_in_outlook)
        self.assertEqual(reopened.conversation_id.state, 'new')

    def test_reopened_or_turned_off_before_the_cron_nothing_moves(self):
        self.enable()
        reopened = self.delivered(subject="Changed my mind")
        reopened.conversation_id.with_user(self.agent).write({'state': 'closed'})
        reopened.conversation_id.with_user(self.agent).write({'state': 'open'})
        turned_off = self.delivered(subject="Option turned off")
        turned_off.conversation_id.with_user(self.agent).write({'state': 'closed'})
        self.inbox.with_user(self.odoo_admin).outlook_sync_triage = False
        self.run_cron(self.triage_cron)
        self.assertEqual((self.folder_of(reopened), self.folder_of(turned_off)), (self.inbox_id, self.inbox_id))
        self.assertFalse(reopened.archive_pending or turned_off.archive_pending)

    def test_throttled_moves_wait_their_retry_and_move_later(self):
        self.enable()
        record = self.delivered(subject="Throttled")
        record.conversation_id.with_user(self.agent).write({'state': 'closed'})
        self.sandbox.control('POST', '/faults', {'graph': {'429': 100, 'retry_after': 30}})
        self.addCleanup(self.sandbox.control, 'POST', '/faults', {'graph': None})
        before = fields.Datetime.now()
        self.run_cron(self.triage_cron)
        triage = self.env['epilot.outlook.triage'].search([('address_id', '=', self.address.id)])
        self.assertTrue(record.archive_pending, "still queued")
        self.assertGreaterEqual(triage.retry_at, before + timedelta(seconds=29), "Graph's Retry-After is kept")
        self.assertTrue(triage.last_error)
        self.assertTrue(self.env['ir.cron.trigger'].search([
            ('cron_id', '=', self.triage_cron.id), ('call_at', '=', triage.retry_at)]), "the cron comes back then")
        # Before its retry time the queue is not due: the next run leaves it alone, Graph or not.
        self.sandbox.control('POST', '/faults', {'graph': None})
        self.run_cron(self.triage_cron)
        self.assertTrue(record.archive_pending)
        # At its retry time, it moves.
        triage.retry_at = fields.Datetime.now() - timedelta(seconds=1)
        self.run_cron(self.triage_cron)
        self.assertFalse(record.archive_pending)
        self.assertEqual(self.folder_of(record), self.archive_id)
        self.assertFalse(triage.retry_at or triage.last_error)

    # --- Outlook -> Odoo ----------------------------------------------------------------------------------

    def test_archive_in_outlook_closes_when_every_received_email_is_out(self):
        self.enable()
        first = self.delivered(subject="Invoice copy")
        conversation = first.conversation_id
        second = self.delivered(subject="RE: Invoice copy", in_reply_to=first.internet_message_id)
        self.assertEqual(conversation.state, 'new')

        self.move_in_outlook(first, 'archive')
        self.run_delta(self.address)
        self.assertTrue(first.removed_in_outlook)
        self.assertEqual(conversation.state, 'new', "the reply is still in the Inbox")
        self.move_in_outlook(second, 'archive')
        self.run_delta(self.address)
        self.assertEqual(conversation.state, 'closed', "archived in Outlook: closed in Odoo")
        self.assertEqual(len(self.closed_in_outlook_notes(conversation)), 1, "said once in the chatter")
        tracked = conversation.message_ids.tracking_value_ids.filtered(
            lambda value: value.field_id.name == 'state')
        self.assertEqual(tracked.mapped('new_value_char'), ['Closed'])
        self.assertFalse(first.archive_pending or second.archive_pending, "nothing to move back: no loop")
        self.assertFalse(first.archived_by_odoo)
        self.assertFalse(self.env['epilot.outlook.triage'].search([]))

        # A new e-mail reopens it, and the next round's removals (none) close nothing again.
        self.age(conversation)
        self.delivered(subject="RE: Invoice copy", in_reply_to=second.internet_message_id)
        self.assertEqual(conversation.state, 'open')
        self.run_delta(self.address)
        self.assertEqual(conversation.state, 'open')
        self.assertEqual(len(self.closed_in_outlook_notes(conversation)), 1)

    def test_deleted_or_filed_elsewhere_in_outlook_does_not_close(self):
        self.enable()
        deleted = self.delivered(subject="Spam-ish")
        self.graph('DELETE', '/users/%s/messages/%s' % (SUPPORT, deleted.graph_id))
        junk = self.delivered(subject="Junk")
        self.move_in_outlook(junk, 'junkemail')
        self.run_delta(self.address)
        for record in (deleted, junk):
            self.assertTrue(record.removed_in_outlook)
            self.assertFalse(record.triage_check_pending, "looked up once")
            self.assertEqual(record.conversation_id.state, 'new', "only Archive closes")
            self.assertFalse(self.closed_in_outlook_notes(record.conversation_id))
        self.assertEqual(self.address.archive_folder_ref, self.archive_id, "asked once, kept on the address")
