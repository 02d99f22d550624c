from datetime import timedelta
from urllib.parse import urlsplit
from unittest.mock import patch

import requests

from odoo import fields
from odoo.exceptions import UserError
from odoo.http import serialize_exception
from odoo.tests import tagged

from ..models import epilot_outlook_backfill as backfill_module
from ..models import epilot_outlook_folder_sync as folder_sync_module
from ..outlook_core import mailbox as mailbox_module
from ..outlook_core.mailbox import MailboxReader
from .mail_sync_common import BILLING, HR, SUPPORT, OutlookMailSyncCase


@tagged('post_install', '-at_install')
class TestAddAddress(OutlookMailSyncCase):
    """ Adding a shared mailbox: the access check, the inbox link, nothing half-made on failure. """

    def test_add_creates_inbox_named_after_mailbox_and_backfills(self):
        address = self.add_address(SUPPORT)
        self.assertEqual(address.sync_state, 'backfilling')
        self.assertEqual(address.sync_mode, 'polling')
        inbox = address.shared_inbox_id
        self.assertEqual(inbox.email, SUPPORT)
        self.assertEqual(inbox.name, "Contoso Support", "named after the mailbox's display name in Outlook")
        self.assertEqual(address.folder_sync_ids.mapped('folder'), ['inbox', 'sentitems'])

        self.run_backfill(address)
        backfill = address.backfill_id
        self.assertEqual(backfill.state, 'done')
        self.assertEqual(address.sync_state, 'live')
        self.assertGreater(backfill.total, 0)
        self.assertEqual(backfill.done, backfill.total)
        self.assertEqual(backfill.imported, backfill.total)
        self.assertEqual(address.gap_count, 0)
        self.assertEqual(address.outlook_count, address.odoo_count)
        self.assertInSync(address)

        # Importing notified nobody, followed nobody, tracked nothing, and left Exchange untouched.
        conversations = inbox.conversation_ids
        self.assertTrue(conversations)
        self.assertFalse(conversations.message_follower_ids)
        messages = conversations.message_ids
        self.assertEqual(set(messages.mapped('message_type')), {'email'})
        self.assertFalse(messages.notification_ids)
        self.assertFalse(messages.tracking_value_ids)
        self.assertFalse(self.sandbox.control('GET', '/mail/sent')['value'], "nothing was sent")
        unread = self.graph('GET', '/users/%s/mailFolders/inbox?$select=unreadItemCount' % SUPPORT)
        self.assertGreater(unread['unreadItemCount'], 0, "nothing was marked read in Outlook")

    def test_no_rights_explained_and_nothing_left(self):
        inboxes_before = self.env['epilot.shared.inbox'].search_count([])
        with self.assertRaises(UserError) as caught:
            self.add_address(HR)
        self.assertIn("Full Access", str(caught.exception))
        self.assertIn("Add-MailboxPermission", str(caught.exception))
        # the command names the account the connection signed in as, ready to paste; the dialog says what happened
        self.assertIn("-User svc-helpdesk@contoso.onmicrosoft.com ", str(caught.exception))
        self.assertNotIn("<service account>", str(caught.exception))
        self.assertEqual(serialize_exception(caught.exception)['context'], {
            'exception_class': 'epilot_outlook.titled_user_error', 'title': "Odoo may not open this mailbox"})
        self.assertFalse(self.env['epilot.outlook.email.address'].search([('email', '=', HR)]))
        self.assertEqual(self.env['epilot.shared.inbox'].search_count([]), inboxes_before)

    def test_unknown_mailbox_explained(self):
        with self.assertRaises(UserError) as caught:
            self.add_address('nobody-here@contoso.onmicrosoft.com')
        self.assertIn("no mailbox", str(caught.exception))
        self.assertEqual(serialize_exception(caught.exception)['context']['title'], "No such mailbox")
        self.assertFalse(self.env['epilot.outlook.email.address'].search(
            [('email', '=', 'nobody-here@contoso.onmicrosoft.com')]))

    def test_not_connected_explained(self):
        self.connection.action_outlook_disconnect()
        with self.assertRaises(UserError) as caught:
            self.add_address(SUPPORT)
        self.assertIn("Connect", str(caught.exception))

    def test_existing_inbox_relinked_and_readd_imports_nothing_twice(self):
        inbox = self.env['epilot.shared.inbox'].create({'name': "Billing Team", 'email': BILLING})
        address = self.add_address(BILLING)
        self.assertEqual(address.shared_inbox_id, inbox, "the inbox with this address is re-linked")
        self.run_backfill(address)
        self.assertInSync(address)
        count = self.env['epilot.outlook.message'].search_count([('inbox_id', '=', inbox.id)])

        address.unlink()   # the mail stays
        self.assertEqual(self.env['epilot.outlook.message'].search_count([('inbox_id', '=', inbox.id)]), count)
        again = self.add_address(BILLING)
        self.assertEqual(again.shared_inbox_id, inbox)
        self.run_backfill(again)
        self.run_delta(again)
        self.assertEqual(self.env['epilot.outlook.message'].search_count([('inbox_id', '=', inbox.id)]), count)
        self.assertEqual(self.env['epilot.shared.inbox'].search_count([('email', '=', BILLING)]), 1)
        self.assertInSync(again)


@tagged('post_install', '-at_install')
class TestBackfill(OutlookMailSyncCase):

    def setUp(self):
        super().setUp()
        self.sandbox.control('POST', '/mail/generate', {'mailbox': SUPPORT, 'count': 120, 'days': 20, 'seed': 7})

    def test_pages_checkpoint_and_progress(self):
        address = self.add_address(SUPPORT)
        backfill = address.backfill_id
        self.assertTrue(backfill._outlook_run_page())   # counts the window
        self.assertEqual(backfill.state, 'running')
        self.assertGreaterEqual(backfill.total, 128)
        before = self.sandbox.control('GET', '/mail/counts')['mailboxes'][SUPPORT]
        backfill._outlook_run_page()
        pages = 1
        self.assertTrue(backfill.next_link, "the nextLink is the checkpoint")
        self.assertEqual(backfill.folder, 'inbox')
        self.assertEqual(backfill.done, 50)
        # A crash here loses nothing: each next run starts at the stored link, not at the first page
        # (Graph may answer a page with no items and a nextLink: it still moves the checkpoint).
        # The next page is read in the background while a page is imported; still one request per page.
        while backfill.folder == 'inbox' and backfill.state == 'running':
            checkpoint = backfill.next_link
            backfill._outlook_run_page()
            pages += 1
            self.assertNotEqual(backfill.next_link, checkpoint)
        after = self.sandbox.control('GET', '/mail/counts')['mailboxes'][SUPPORT]
        self.assertEqual(after - before, self.pages_of(address, 'inbox'), "one Graph request per page, none read twice")
        self.assertLessEqual(pages, after - before, "a step reads a page with no items and goes on to the next")
        self.assertEqual(backfill.done, len(self.outlook_ids(SUPPORT, 'inbox')))
        self.assertGreater(backfill.rate, 0)
        self.run_backfill(address)
        self.assertEqual(backfill.done, backfill.total)
        self.assertInSync(address)

    def pages_of(self, address, folder):
        """ How many pages Graph lists for the backfill's window of ``folder``, by pages of 50 (read now). """
        since = address.backfill_id.window_start.isoformat() + 'Z'
        return len(list(self.graph_pages(
            "/users/%s/mailFolders/%s/messages?$top=%d&$select=id&$orderby=receivedDateTime desc"
            "&$filter=receivedDateTime ge %s" % (address.email, folder, mailbox_module.BACKFILL_PAGE_SIZE, since))))

    def test_planner_statistics_follow_the_inbox_as_it_grows(self):
        # The backfill refreshes them each time its count doubles from ANALYZE_FROM (here 16: at 16, 32, 64,
        # 128 messages); with statistics from before, every lookup of a page read all of the inbox's rows.
        address = self.add_address(SUPPORT)
        with patch.object(backfill_module, 'ANALYZE_FROM', 16):
            self.run_backfill(address)
        self.assertInSync(address)
        self.env.cr.execute("SELECT reltuples FROM pg_class WHERE relname = 'epilot_outlook_message'")
        [estimate] = self.env.cr.fetchone()
        rows = self.env['epilot.outlook.message'].search_count([])
        self.assertGreaterEqual(estimate, 128, "analyzed at 128 messages or more")
        self.assertLessEqual(estimate, rows)

    def test_cancel_stops_and_live_sync_goes_on(self):
        address = self.add_address(SUPPORT)
        backfill = address.backfill_id
        backfill._outlook_run_page()
        backfill._outlook_run_page()
        address.with_user(self.odoo_admin).action_outlook_cancel_backfill()
        self.assertEqual(backfill.state, 'cancelled')
        self.assertEqual(address.sync_state, 'live')
        done = backfill.done
        self.run_cron(self.backfill_cron)
        self.assertEqual(backfill.done, done, "a cancelled backfill imports nothing more")
        before = self.env['epilot.outlook.message'].search([('address_id', '=', address.id)])
        self.deliver(subject="After cancel")
        self.run_delta(address)
        self.assertIn("After cancel", address.shared_inbox_id.conversation_ids.mapped('name'))
        # Delta's first round lists the whole window: what the cancelled backfill left out stays out.
        added = self.env['epilot.outlook.message'].search([('address_id', '=', address.id)]) - before
        self.assertTrue(added)
        self.assertFalse(added.filtered(lambda record: record.received_date < backfill.started_date
                                        - timedelta(minutes=5)), "delta imported old mail behind the cancel")

    def test_throttled_page_reschedules_instead_of_sleeping(self):
        address = self.add_address(SUPPORT)
        backfill = address.backfill_id
        backfill._outlook_run_page()
        self.sandbox.control('POST', '/faults', {'graph': {'429': 10, 'retry_after': 30}})
        self.assertFalse(backfill._outlook_run_page())
        self.assertEqual(backfill.state, 'waiting')
        self.assertTrue(backfill.retry_at)
        self.assertNotIn(backfill, backfill._outlook_due(), "not due before Retry-After")
        triggers = self.env['ir.cron.trigger'].search([('cron_id', '=', self.backfill_cron.id)])
        self.assertTrue(any(trigger.call_at >= backfill.retry_at for trigger in triggers))
        self.sandbox.control('POST', '/faults', {'graph': None})
        self.run_backfill(address)
        self.assertInSync(address)

    def test_503_storm_then_recovers(self):
        address = self.add_address(SUPPORT)
        self.sandbox.control('POST', '/faults', {'graph': {'503': 30, 'retry_after': 5}})
        self.run_cron(self.backfill_cron)
        self.assertEqual(address.backfill_id.state, 'waiting')
        self.sandbox.control('POST', '/faults', {'graph': None})
        self.run_backfill(address)
        self.assertInSync(address)

    def test_401_mid_backfill_refreshes_and_continues(self):
        address = self.add_address(SUPPORT)
        backfill = address.backfill_id
        backfill._outlook_run_page()
        self.sandbox.control('POST', '/faults', {'graph': {'401': 1}})
        self.assertTrue(backfill._outlook_run_page())
        self.assertEqual(self.connection.state, 'connected')
        self.run_backfill(address)
        self.assertInSync(address)

    def test_message_arriving_during_backfill_appears_once(self):
        address = self.add_address(SUPPORT)
        backfill = address.backfill_id
        backfill._outlook_run_page()
        backfill._outlook_run_page()
        delivered = self.deliver(subject="Arrived during the backfill")
        self.run_delta(address)
        self.run_backfill(address)
        self.run_delta(address)
        records = self.env['epilot.outlook.message'].search([('graph_id', '=', delivered['immutable_id'])])
        self.assertEqual(len(records), 1)
        self.assertInSync(address)


@tagged('post_install', '-at_install')
class TestBackfillBatches(OutlookMailSyncCase):
    """ The production batch: a step reads Graph pages of 50 one after the other, up to 200 messages, and
    imports and commits them as one. """
    batch_messages = None

    def setUp(self):
        super().setUp()
        self.sandbox.control('POST', '/mail/generate', {'mailbox': SUPPORT, 'count': 120, 'days': 20, 'seed': 7})

    def served(self):
        return self.sandbox.control('GET', '/mail/counts')['mailboxes'][SUPPORT]

    def test_a_step_imports_several_pages_at_once(self):
        self.assertEqual(mailbox_module.BACKFILL_BATCH_MESSAGES, 200)
        address = self.add_address(SUPPORT)
        backfill = address.backfill_id
        backfill._outlook_run_page()   # counts the window
        inbox = len(self.outlook_ids(SUPPORT, 'inbox'))
        self.assertGreater(inbox, 2 * mailbox_module.BACKFILL_PAGE_SIZE)
        self.assertLessEqual(inbox, 200)
        before = self.served()
        self.assertTrue(backfill._outlook_run_page())
        self.assertEqual(backfill.done, inbox, "the Inbox's pages in one step")
        self.assertEqual(backfill.folder, 'sentitems')
        self.assertFalse(backfill.next_link)
        self.assertGreaterEqual(self.served() - before, 3, "pages of 50, as Graph is asked for")
        self.assertEqual(len(self.odoo_records(address, 'inbox')), inbox)
        self.run_backfill(address)
        self.assertEqual(backfill.done, backfill.total)
        self.assertInSync(address)

    def test_a_page_failing_within_a_step_ends_the_step_before_it(self):
        address = self.add_address(SUPPORT)
        backfill = address.backfill_id
        backfill._outlook_run_page()   # counts the window
        read_page = MailboxReader.backfill_page
        first = []

        def then_a_storm(reader, folder, since, next_link=None):
            page = read_page(reader, folder, since, next_link)
            if not first:   # Graph answers the next request 503, Retry-After 30 s
                first.append(page.next_link)
                self.sandbox.control('POST', '/faults', {'graph': {'503': 1, 'retry_after': 30}})
            return page

        with patch.object(MailboxReader, 'backfill_page', then_a_storm):
            self.assertTrue(backfill._outlook_run_page(), "the pages read before the failure are imported")
        self.addCleanup(self.sandbox.control, 'POST', '/faults', {'graph': None})
        self.assertEqual(backfill.done, mailbox_module.BACKFILL_PAGE_SIZE)
        self.assertEqual(backfill.next_link, first[0], "the checkpoint is the page that failed")
        self.assertEqual((backfill.state, backfill.retry_at), ('running', False))
        self.assertEqual(len(self.odoo_records(address, 'inbox')), mailbox_module.BACKFILL_PAGE_SIZE)
        self.run_backfill(address)
        self.assertEqual(backfill.done, backfill.total)
        self.assertInSync(address)


@tagged('post_install', '-at_install')
class TestDelta(OutlookMailSyncCase):

    def setUp(self):
        super().setUp()
        self.address = self.add_address(SUPPORT)
        self.run_backfill(self.address)
        self.run_delta(self.address)
        self.assertInSync(self.address)

    def record(self, immutable_id):
        return self.env['epilot.outlook.message'].search([('graph_id', '=', immutable_id)])

    def graph_requests(self):
        """ The Graph HTTP requests sent from now on, as ``(method, path)``: a list that fills up. """
        calls = []
        send = requests.Session.send

        def counting_send(session, request, **kwargs):
            if '/v1.0/' in urlsplit(request.url).path:
                calls.append((request.method, urlsplit(request.url).path))
            return send(session, request, **kwargs)

        self.patch(requests.Session, 'send', counting_send)
        return calls

    def test_create_update_move_delete(self):
        delivered = self.deliver(subject="New question", body_html='<p>Is it <b>done</b>?</p>')
        self.run_delta(self.address)
        record = self.record(delivered['immutable_id'])
        self.assertEqual(len(record), 1)
        self.assertEqual(record.mail_message_id.subject, "New question")
        self.assertIn('<b>done</b>', record.mail_message_id.body)
        self.assertEqual(record.internet_message_id, delivered['internetMessageId'])
        self.assertEqual(record.conversation_id.graph_conversation_id, delivered['conversationId'])
        self.assertFalse(record.is_read)

        # Read in Outlook (a received message's subject cannot be changed through Graph:
        # ErrorInvalidPropertyUpdateSentMessage; the flag and the categories can).
        path = '/users/%s/messages/%s' % (SUPPORT, delivered['immutable_id'])
        change_key = record.change_key
        self.graph('PATCH', path, {'isRead': True, 'categories': ['Urgent']})
        self.run_delta(self.address)
        self.assertTrue(record.is_read)
        self.assertNotEqual(record.change_key, change_key)
        self.assertEqual(len(self.record(delivered['immutable_id'])), 1)

        self.sandbox.control('POST', '/mail/move', {'id': delivered['immutable_id'], 'folder': 'deleteditems'})
        self.run_delta(self.address)
        self.assertTrue(record.removed_in_outlook, "moved out: marked, kept")
        self.assertTrue(record.mail_message_id.exists())
        self.sandbox.control('POST', '/mail/move', {'id': delivered['immutable_id'], 'folder': 'inbox'})
        self.run_delta(self.address)
        self.assertFalse(record.removed_in_outlook, "moved back: the same record again")
        self.assertEqual(len(self.record(delivered['immutable_id'])), 1)
        self.assertInSync(self.address)

        self.sandbox.control('POST', '/mail/delete', {'id': delivered['immutable_id'], 'permanent': True})
        self.run_delta(self.address)
        self.assertTrue(record.removed_in_outlook)
        self.assertTrue(record.mail_message_id.exists(), "Odoo never loses mail")
        self.assertInSync(self.address)

    def test_reply_joins_the_conversation(self):
        first = self.deliver(subject="Invoice 42")
        self.run_delta(self.address)
        self.deliver(subject="RE: Invoice 42", in_reply_to=first['internetMessageId'])
        self.run_delta(self.address)
        conversation = self.record(first['immutable_id']).conversation_id
        self.assertEqual(conversation.email_count, 2)
        self.assertEqual(len(conversation.message_ids.filtered(lambda m: m.message_type == 'email')), 2)

    def test_delta_reset_both_forms_resync_without_duplicates(self):
        for mode in ('syncStateNotFound', '410'):
            self.sandbox.control('POST', '/mail/delta/expire', {'mode': mode})
            delivered = self.deliver(subject="During the reset %s" % mode)
            self.run_delta(self.address)
            self.assertEqual(len(self.record(delivered['immutable_id'])), 1)
            self.assertInSync(self.address)
        self.assertEqual(set(self.address.folder_sync_ids.mapped('resync_count')), {2})

    def test_a_failing_delta_shows_on_the_live_address(self):
        self.assertFalse(self.address.sync_problem)
        self.sandbox.control('POST', '/faults', {'graph': {'503': 30, 'retry_after': 5}})
        self.run_delta(self.address)
        self.assertEqual(self.address.sync_state, 'live', "it retries by itself: not in error")
        self.assertIn("Inbox: ", self.address.sync_problem)
        self.assertIn(self.address.folder_sync_ids[0].last_error, self.address.sync_problem)
        self.sandbox.control('POST', '/faults', {'graph': None})
        self.address.folder_sync_ids.write({'retry_at': False})
        self.run_delta(self.address)
        self.assertFalse(self.address.sync_problem, "the next round that works clears it")

    def test_polling_interval_decides_which_folders_are_due(self):
        syncs = self.address.folder_sync_ids
        FolderSync = self.env['epilot.outlook.folder.sync']
        now = fields.Datetime.now()
        syncs.write({'last_round_date': now - timedelta(seconds=61), 'retry_at': False, 'delta_next_link': False})
        self.assertEqual(FolderSync._outlook_due() & syncs, syncs, "due once its interval ran out")
        # Not a moment sooner: the lanes are woken when it runs out (tools/cron_wake.py), so an idle folder costs
        # at most one request per interval (issue 18, item 7).
        syncs.write({'last_round_date': now - timedelta(seconds=50)})
        self.assertFalse(FolderSync._outlook_due() & syncs)
        self.connection.poll_interval_minutes = 5
        syncs.write({'last_round_date': now - timedelta(minutes=3)})
        self.assertFalse(FolderSync._outlook_due() & syncs)
        syncs[0].delta_next_link = syncs[0].delta_link or 'https://127.0.0.1/v1.0/round-in-progress'
        self.assertEqual(FolderSync._outlook_due() & syncs, syncs[0], "a round in progress goes on at once")

    def test_nothing_new_costs_one_request_per_folder(self):
        before = self.sandbox.control('GET', '/mail/counts')['mailboxes'].get(SUPPORT, 0)
        self.run_delta(self.address)
        after = self.sandbox.control('GET', '/mail/counts')['mailboxes'].get(SUPPORT, 0)
        self.assertEqual(after - before, 2)

    def test_idle_rounds_of_several_folders_take_one_http_request(self):
        """ Rounds that only ask "anything new?" go 20 folders to a $batch: four idle folders of two mailboxes
        cost one HTTP request (still one Graph request per folder, as Outlook counts them), and new mail in one
        of them is imported from its batched page. """
        billing = self.add_address(BILLING)
        self.run_backfill(billing)
        self.run_delta()
        self.assertInSync(billing)
        syncs = self.address.folder_sync_ids | billing.folder_sync_ids
        rounds = sum(syncs.mapped('round_count'))
        calls = self.graph_requests()
        self.run_delta()
        self.assertEqual(calls, [('POST', '/v1.0/$batch')], "one request for the four idle folders")
        self.assertEqual(sum(syncs.mapped('round_count')), rounds + 4)
        delivered = self.deliver(BILLING, subject='Rechnung falsch')
        calls.clear()
        self.run_delta()
        self.assertEqual(len(self.record(delivered['immutable_id'])), 1)
        self.assertEqual(calls, [('POST', '/v1.0/$batch')] * 2, "the pages, then the new message in full")
        self.assertInSync(self.address)
        self.assertInSync(billing)

    def test_new_mail_of_several_folders_is_fetched_in_one_request(self):
        """ bench_scale with Graph's latency: each folder of a batched round that had new mail fetched it in a
        $batch of its own, one round trip after the other (1,000 mailboxes: p95 134 s). New mail in two mailboxes
        now costs the request of the pages and one request for both mailboxes' messages, each imported once in
        its own inbox. """
        billing = self.add_address(BILLING)
        self.run_backfill(billing)
        self.run_delta()
        calls = self.graph_requests()
        for_billing = self.deliver(BILLING, subject='Rechnung falsch')
        for_support = [self.deliver(SUPPORT, subject='Frage %d' % number) for number in range(2)]
        calls.clear()
        self.run_delta()
        self.assertEqual(calls, [('POST', '/v1.0/$batch')] * 2, "the pages, then both mailboxes' new messages in full")
        self.assertEqual(self.record(for_billing['immutable_id']).inbox_id, billing.shared_inbox_id)
        for delivered in for_support:
            self.assertEqual(self.record(delivered['immutable_id']).inbox_id, self.address.shared_inbox_id)
        self.assertInSync(self.address)
        self.assertInSync(billing)

    def test_the_lane_is_triggered_when_the_next_folder_falls_due(self):
        """ Left to its 1-minute grid, a lane may start up to a cycle late (bench_scale: rounds 94-99 s apart):
        each run ends with a trigger of itself for when the next folder falls due. """
        Trigger = self.env['ir.cron.trigger']
        before = Trigger.search([('cron_id', '=', self.delta_cron.id)])
        self.run_delta(self.address)
        oldest = min(self.address.folder_sync_ids.mapped('last_round_date'))
        triggers = Trigger.search([('cron_id', '=', self.delta_cron.id)]) - before
        due = oldest + timedelta(minutes=self.connection.poll_interval_minutes)
        self.assertIn(due, triggers.mapped('call_at'))

    def test_a_lane_out_of_time_in_the_batched_pass_is_triggered_again_soon(self):
        """ bench_scale with Microsoft's latency: a lane whose time budget ran out while folders were still due
        (in the batched pass) ended without a trigger, and Odoo's "as soon as possible" for a partial job waited for
        the cron worker's next look, up to a minute: half the rounds of 1,000 mailboxes were lost so. """
        Trigger = self.env['ir.cron.trigger']
        self.address.folder_sync_ids.write({'last_round_date': fields.Datetime.now() - timedelta(hours=1),
                                            'retry_at': False})
        before = Trigger.search([('cron_id', '=', self.delta_cron.id)])
        # The time budget is spent after the first batched step (ir.cron._commit_progress says so), of one folder.
        self.patch(folder_sync_module, 'FOLDERS_PER_BATCHED_STEP', 1)
        self.patch(self.env.registry['ir.cron'], '_commit_progress', lambda cron, processed=0, *, remaining=None,
                   deactivate=False: False)
        started = fields.Datetime.now()
        self.env['epilot.outlook.folder.sync'].with_context(cron_id=self.delta_cron.id)._cron_outlook_delta()
        self.assertTrue(self.env['epilot.outlook.folder.sync']._outlook_due_ids(), "folders still due")
        calls = (Trigger.search([('cron_id', '=', self.delta_cron.id)]) - before).mapped('call_at')
        self.assertTrue(calls, "the lane is triggered again")
        self.assertLessEqual(min(calls), started + folder_sync_module.NEXT_DUE_MIN_GAP + timedelta(seconds=2))

    def test_folders_falling_due_during_a_round_alone_go_in_a_batch(self):
        """ bench_scale with 150 ms of Graph latency: folders fall due spread over the time their last round took,
        and those falling due while the lane ran a round alone (a notified folder, a round under way) were taken
        one at a time too, a round trip each: a lane went on so for 15 s and the next cycle started 27 s late. They
        now wait for the next batched pass of the same run: the notified folder's request, then one $batch. """
        billing = self.add_address(BILLING)
        self.run_backfill(billing)
        self.run_delta()
        notified = self.address.folder_sync_ids.filtered(lambda sync: sync.folder == 'inbox')
        others = (self.address.folder_sync_ids | billing.folder_sync_ids) - notified
        now = fields.Datetime.now()
        others.write({'last_round_date': now, 'retry_at': False})
        notified.write({'push_pending_since': now, 'retry_at': False})
        rounds = {sync: sync.round_count for sync in others}
        FolderSync = type(self.env['epilot.outlook.folder.sync'])
        run_round = FolderSync._outlook_run_round

        def run_round_while_the_others_fall_due(sync, max_pages=folder_sync_module.DELTA_PAGES_PER_RUN):
            done = run_round(sync, max_pages=max_pages)
            others.with_env(sync.env).write({'last_round_date': now - timedelta(hours=1)})
            return done

        self.patch(FolderSync, '_outlook_run_round', run_round_while_the_others_fall_due)
        calls = self.graph_requests()
        self.run_cron(self.delta_cron)
        self.assertEqual([method for method, _path in calls], ['GET', 'POST'], calls)
        self.assertEqual(calls[1][1], '/v1.0/$batch')
        self.assertFalse(notified.push_pending_since)
        self.assertEqual({sync: sync.round_count for sync in others},
                         {sync: count + 1 for sync, count in rounds.items()})

    def test_a_storm_in_one_mailbox_does_not_hold_back_the_others(self):
        """ Fair lanes: a folder with many changes runs a few pages per step, then steps aside while the other
        due folders take their turn; its round goes on after them. Two mailboxes with a storm each take turns. """
        billing = self.add_address(BILLING)
        self.run_backfill(billing)
        self.run_delta()
        self.patch(mailbox_module, 'DELTA_PAGE_SIZE', 5)
        self.patch(folder_sync_module, 'DELTA_PAGES_PER_RUN', 1)
        # 12 new messages in each Inbox: several delta pages each, a first one batched, then a page per step.
        for mailbox in (SUPPORT, BILLING):
            for number in range(12):
                self.deliver(mailbox, subject='Sturm %d' % number, sender='storm%d@fabrikam.com' % number)
        first, second = (address.folder_sync_ids.filtered(lambda sync: sync.folder == 'inbox')
                         for address in (self.address, billing))
        order = []
        FolderSync = type(self.env['epilot.outlook.folder.sync'])
        apply_page = FolderSync._outlook_apply_page

        def recording_apply(sync, reader, page, prefetched=None):
            order.append(sync.id)
            return apply_page(sync, reader, page, prefetched)

        self.patch(FolderSync, '_outlook_apply_page', recording_apply)
        self.run_delta()
        pages = {sync: [index for index, sync_id in enumerate(order) if sync_id == sync.id] for sync in (first, second)}
        self.assertGreaterEqual(min(len(pages[first]), len(pages[second])), 3, "rounds of several pages")
        # Neither waits for the other's whole round: their steps alternate.
        self.assertLess(pages[second][1], pages[first][2])
        self.assertLess(pages[first][1], pages[second][2])
        self.assertInSync(self.address)
        self.assertInSync(billing)

    def test_reconcile_imports_what_is_missing(self):
        record = self.env['epilot.outlook.message'].search([('address_id', '=', self.address.id)], limit=1)
        graph_id = record.graph_id
        record.mail_message_id.unlink()
        record.unlink()   # as if a message had been missed
        self.address.invalidate_recordset()
        action = self.address.with_user(self.odoo_admin).action_outlook_reconcile()
        self.assertEqual(action['params']['type'], 'success')
        self.assertEqual(len(self.record(graph_id)), 1)
        self.assertEqual(self.address.gap_count, 0)
        self.assertEqual(self.address.outlook_count, self.address.odoo_count)
        self.assertInSync(self.address)
