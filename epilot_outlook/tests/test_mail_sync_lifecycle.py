from odoo.tests import tagged
from odoo.tools import mute_logger

from .mail_sync_common import SUPPORT, OutlookMailSyncCase


class _LifecycleMixin:

    def graph_requests(self, mailbox=SUPPORT):
        """ Every Graph request the sandbox has answered for ``mailbox`` so far. """
        return self.sandbox.control('GET', '/mail/counts')['mailboxes'].get(mailbox, 0)

    def token_requests(self):
        return self.sandbox.control('GET', '/state')['counts']['token_requests']

    def inbox_emails(self, inbox):
        """ The e-mails (mail.message) on the conversations of ``inbox``. """
        conversations = inbox.env['epilot.shared.conversation'].search([('inbox_id', '=', inbox.id)])
        return inbox.env['mail.message'].search([
            ('model', '=', 'epilot.shared.conversation'), ('res_id', 'in', conversations.ids),
            ('message_type', '=', 'email'),
        ])

    def inbox_records(self, inbox):
        return inbox.env['epilot.outlook.message'].search([('inbox_id', '=', inbox.id)])


@tagged('post_install', '-at_install')
class TestCrashAndRevocation(_LifecycleMixin, OutlookMailSyncCase):
    """ A backfill interrupted by a crash or by the tenant revoking access resumes at its checkpoint. """

    def setUp(self):
        super().setUp()
        self.sandbox.control('POST', '/mail/generate', {'mailbox': SUPPORT, 'count': 120, 'days': 20, 'seed': 11})

    def test_crash_mid_page_loses_nothing_and_imports_nothing_twice(self):
        address = self.add_address(SUPPORT)
        backfill = address.backfill_id
        backfill._outlook_run_page()   # counts the window
        backfill._outlook_run_page()   # the first page
        inbox = address.shared_inbox_id
        done = backfill.done
        self.assertEqual(done, 50)
        self.assertEqual(len(self.inbox_records(inbox)), 50)

        # The worker dies in the middle of the next page, every time it tries while the fault lasts: the
        # page's conversations, e-mails, attachments and sync records are written, its checkpoint not yet.
        Message = type(self.env['epilot.outlook.message'])
        original_create = Message.create
        crashes = []

        def create_then_crash(records, vals_list):
            created = original_create(records, vals_list)
            crashes.append(len(created))
            raise RuntimeError("the worker died mid-page")

        self.patch(Message, 'create', create_then_crash)
        with mute_logger('odoo.addons.base.models.ir_cron'):
            self.backfill_cron.method_direct_trigger()
        self.env.invalidate_all()
        self.assertTrue(crashes)
        self.assertEqual(set(crashes), {50}, "the crash came after the page's records were created")
        # (The checkpoint may have moved over an empty page Graph sent first; never over the crashed one.)
        self.assertEqual(backfill.done, done, "the crashed page is not counted: its checkpoint did not move")
        self.assertTrue(backfill.next_link)
        self.assertEqual(len(self.inbox_records(inbox)), 50, "the page's sync records went with the crash")
        self.assertEqual(len(self.inbox_emails(inbox)), 50, "and so did its e-mails")
        self.assertEqual(len(inbox.conversation_ids), len(self.inbox_records(inbox).conversation_id))
        Message.create = original_create   # the worker is back (the patch's cleanup restores it again)

        # The next run starts at the checkpoint and reads the page again.
        self.run_backfill(address)
        self.assertEqual(backfill.state, 'done')
        self.assertEqual(backfill.done, backfill.total)
        self.assertEqual(backfill.imported, backfill.total, "every message new exactly once")
        records = self.inbox_records(inbox)
        self.assertEqual(len(records), backfill.total)
        self.assertEqual(len(self.inbox_emails(inbox)), len(records), "no e-mail without its sync record")
        self.assertFalse(inbox.conversation_ids.filtered(lambda conversation: not conversation.email_count),
                         "no empty conversation left by the crash")
        self.assertInSync(address)

    def test_revocation_mid_backfill_pauses_at_checkpoint_and_resumes(self):
        address = self.add_address(SUPPORT)
        backfill = address.backfill_id
        backfill._outlook_run_page()
        backfill._outlook_run_page()
        checkpoint, done = backfill.next_link, backfill.done
        self.assertTrue(checkpoint)

        # The tenant admin withdraws consent; an hour later the access token Odoo holds has expired.
        self.sandbox.control('POST', '/tenants/%s/consent/revoke' % self.demo['tenant_id'])
        self.sandbox.control('POST', '/clock/advance', {'seconds': 3700})
        self.run_cron(self.backfill_cron)   # Graph refuses the token, the refresh is refused: no crash
        self.connection.invalidate_recordset()
        self.assertEqual(self.connection.state, 'needs_reconnect')
        self.assertTrue(self.connection.needs_admin_consent)
        self.assertEqual(address.sync_state, 'paused')
        self.assertEqual(address.paused_from_state, 'backfilling')
        self.assertEqual(backfill.next_link, checkpoint, "paused at its checkpoint")
        self.assertEqual(backfill.done, done)
        self.assertEqual(len(self.inbox_records(address.shared_inbox_id)), done)

        # While paused nothing reaches Microsoft, however often the crons run.
        graph_before, tokens_before = self.graph_requests(), self.token_requests()
        self.deliver(subject="Sent while paused")
        self.run_cron(self.backfill_cron)
        self.run_delta(address)
        self.run_cron(self.backfill_cron)
        self.assertFalse(backfill._outlook_due())
        self.assertEqual(self.graph_requests(), graph_before, "no Graph request while paused")
        self.assertEqual(self.token_requests(), tokens_before, "no token request while paused")
        self.assertEqual(backfill.next_link, checkpoint)

        # The admin consents again and the service account signs in: sync resumes at the checkpoint.
        self.connect()
        self.assertEqual(self.connection.state, 'connected')
        self.assertEqual(address.sync_state, 'backfilling')
        self.graph_token = self.sandbox_token()
        self.run_backfill(address)
        self.run_delta(address)
        # Every message of the window was new once to the backfill (the mail delivered while paused landed on
        # top of the newest-first list, past the checkpoint: delta brought it, and the one message it pushed onto
        # the next page was read twice but recognized).
        self.assertEqual(backfill.state, 'done')
        self.assertEqual(backfill.imported, backfill.total, "nothing imported twice, nothing lost")
        self.assertEqual(len(self.inbox_records(address.shared_inbox_id)), backfill.total + 1)
        self.assertEqual(len(self.inbox_emails(address.shared_inbox_id)), backfill.total + 1)
        self.assertIn("Sent while paused", address.shared_inbox_id.conversation_ids.mapped('name'))
        self.assertInSync(address)


@tagged('post_install', '-at_install')
class TestDisconnect(_LifecycleMixin, OutlookMailSyncCase):
    """ Removing the address, then disconnecting the tenant, stops every sync and keeps all the mail. """

    def assertNothingRuns(self):
        graph_before = self.graph_requests()
        self.run_cron(self.backfill_cron)
        self.env['epilot.outlook.folder.sync'].search([]).write({'last_round_date': False, 'retry_at': False})
        self.run_cron(self.delta_cron)
        self.assertEqual(self.graph_requests(), graph_before, "a sync step still reached Graph")

    def test_disconnect_address_and_connection_then_readd_imports_nothing_twice(self):
        self.sandbox.control('POST', '/mail/generate', {'mailbox': SUPPORT, 'count': 80, 'days': 20, 'seed': 5})
        address = self.add_address(SUPPORT)
        backfill = address.backfill_id
        for _step in range(3):   # mid-backfill: counted, two pages
            backfill._outlook_run_page()
        self.deliver(subject="Before the disconnect")
        self.run_delta(address)
        inbox = address.shared_inbox_id
        records = self.inbox_records(inbox)
        kept = {record.graph_id: record.mail_message_id for record in records}
        conversations = inbox.conversation_ids
        self.assertIn("Before the disconnect", conversations.mapped('name'))

        # 1. The address is removed: its backfill and delta stop, its mail stays.
        address.with_user(self.odoo_admin).unlink()
        self.assertFalse(backfill.exists(), "the backfill went with its address")
        self.deliver(subject="After the address was removed")
        self.assertNothingRuns()
        self.assertEqual(self.inbox_records(inbox), records, "the sync records stay")
        self.assertEqual(inbox.conversation_ids, conversations)
        self.assertEqual(len(self.inbox_emails(inbox)), len(records))

        # Re-added: the same inbox, nothing imported twice, what was missed is imported.
        again = self.add_address(SUPPORT)
        self.assertEqual(again.shared_inbox_id, inbox)
        self.run_backfill(again)
        self.run_delta(again)
        self.assertInSync(again)
        records = self.inbox_records(inbox)
        for record in records.filtered(lambda record: record.graph_id in kept):
            self.assertEqual(record.mail_message_id, kept[record.graph_id], "the e-mail Odoo had is kept")
        self.assertEqual(len(self.inbox_emails(inbox)), len(records))
        self.assertEqual(again.backfill_id.imported, len(records) - len(kept))

        # 2. The connection is disconnected: every address goes, nothing runs, the mail stays.
        self.connection.with_user(self.odoo_admin).action_outlook_disconnect()
        self.assertFalse(again.exists())
        self.deliver(subject="After the disconnect")
        tokens_before = self.token_requests()
        self.assertNothingRuns()
        self.assertEqual(self.token_requests(), tokens_before)
        self.assertEqual(self.inbox_records(inbox), records)
        self.assertEqual(len(self.inbox_emails(inbox)), len(records))

        # Reconnected later (consent still stands: only the service account signs in) and re-added.
        url = self.click_connect()
        self.odoo_callback(self.microsoft_pages(url, 'service_account'))
        self.connection.invalidate_recordset()
        self.assertEqual(self.connection.state, 'connected')
        self.graph_token = self.sandbox_token()
        third = self.add_address(SUPPORT)
        self.assertEqual(third.shared_inbox_id, inbox)
        self.run_backfill(third)
        self.run_delta(third)
        self.assertEqual(third.backfill_id.imported, 1, "only the message delivered while disconnected is new")
        self.assertIn("After the disconnect", inbox.conversation_ids.mapped('name'))
        self.assertEqual(len(self.inbox_emails(inbox)), len(self.inbox_records(inbox)))
        self.assertInSync(third)

