import logging
import threading
import time

from odoo import SUPERUSER_ID, api
from odoo.modules.registry import DummyRLock, Registry
from odoo.tests import TransactionCase, tagged
from odoo.tools import mute_logger

from .mail_sync_common import SUPPORT, OutlookMailSyncCase, SyncAssertions
from .outlook_sandbox_common import create_signed_in_connection, sign_in_service_account
from .sandbox_process import SandboxProcess

REDIRECT_URI = 'http://127.0.0.1:8069/epilot_outlook/oauth/callback'


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
        original_insert = Message._outlook_insert
        crashes = []

        def insert_then_crash(records, rows):
            original_insert(records, rows)
            crashes.append(len(rows))
            raise RuntimeError("the worker died mid-page")

        self.patch(Message, '_outlook_insert', insert_then_crash)
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
        Message._outlook_insert = original_insert   # the worker is back (the patch's cleanup restores it again)

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

    def test_reconciliation_throttled_after_the_last_page_reads_no_page_again(self):
        self.sandbox.control('POST', '/mail/generate', {
            'mailbox': SUPPORT, 'count': 60, 'days': 20, 'seed': 12, 'folder': 'sentitems'})
        address = self.add_address(SUPPORT)
        backfill = address.backfill_id
        # Microsoft throttles the mailbox just as the backfill's last step, the reconciliation, begins.
        FolderSync = type(self.env['epilot.outlook.folder.sync'])
        original_reconcile = FolderSync._outlook_reconcile
        throttled = []

        def reconcile_into_429(folder_sync, reader):
            if not throttled:
                throttled.append(folder_sync.folder)
                self.sandbox.control('POST', '/faults', {'graph': {'429': 1, 'retry_after': 30}})
            return original_reconcile(folder_sync, reader)

        self.patch(FolderSync, '_outlook_reconcile', reconcile_into_429)
        for _step in range(20):
            if backfill.state not in ('pending', 'running'):
                break
            backfill._outlook_run_page()
        self.assertEqual(throttled, ['inbox'])
        self.assertEqual(backfill.state, 'waiting')
        self.assertEqual(backfill.done, backfill.total, "every page was read once")
        self.assertGreaterEqual(len(self.outlook_ids(SUPPORT, 'sentitems')), 60)
        self.run_backfill(address)
        self.assertEqual(backfill.state, 'done')
        self.assertEqual(address.sync_state, 'live')
        self.assertEqual(backfill.done, backfill.total, "no page was read again after the retry")
        self.assertEqual(backfill.imported, backfill.total)
        self.assertEqual(address.gap_count, 0)
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
        # The page after the checkpoint is read ahead while a page is imported: whether that read beat the
        # revocation is a race, so the step may have imported one more page (or an empty one) before pausing. It
        # pauses at a checkpoint all the same: what it counts is what Odoo holds, and it resumes from there.
        self.assertIn(backfill.done, (done, done + 50), "paused at its checkpoint")
        self.assertEqual(len(self.inbox_records(address.shared_inbox_id)), backfill.done)
        checkpoint = backfill.next_link

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


class _CommittedSyncCase(_LifecycleMixin, SyncAssertions, TransactionCase):
    """ An address of a connection to the sandbox, committed, for workers in real transactions of their own (as
    cron workers are). ``TransactionCase`` does not put the registry in test mode, so ``registry.cursor()`` opens
    real transactions; what they commit is deleted again in a cleanup. """

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.sandbox = SandboxProcess.get()

    def setUp(self):
        super().setUp()
        # The runner holds the registry lock for the whole run; worker threads need it to build environments.
        self.patch(Registry, '_lock', DummyRLock())
        self.demo = self.sandbox.reset_and_seed([REDIRECT_URI])
        tokens = sign_in_service_account(self.sandbox, self.demo, REDIRECT_URI)
        self.graph_token = tokens.access_token
        with self.registry.cursor() as cr:
            cr.execute("SELECT COALESCE(MAX(id), 0) FROM ir_cron_trigger")
            self.last_trigger_id = cr.fetchone()[0]
        self.other_inbox_ids = []
        self.addCleanup(self._delete_committed_records)
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            connection = create_signed_in_connection(env, self.sandbox, self.demo, tokens, "Two Workers")
            self.connection_id, self.company_id = connection.id, connection.company_id.id
            address = env['epilot.outlook.email.address'].create({
                'email': SUPPORT, 'connection_id': connection.id})
            self.address_id = address.id
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            address = env['epilot.outlook.email.address'].browse(self.address_id)
            address._outlook_start_sync()
            self.inbox_id = address.shared_inbox_id.id
            address.backfill_id._outlook_run_page()   # counts the window

    def add_committed_address(self, email):
        """ Another address of the connection, synced (its backfill done), committed; returns its id. """
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            address = env['epilot.outlook.email.address'].create({'email': email, 'connection_id': self.connection_id})
            address._outlook_start_sync()
            self.other_inbox_ids.append(address.shared_inbox_id.id)
            while address.backfill_id.state != 'done':
                address.backfill_id._outlook_run_page()
            return address.id

    def _delete_committed_records(self):
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            inbox = env['epilot.shared.inbox'].browse(
                [getattr(self, 'inbox_id', None), *self.other_inbox_ids]).exists()
            conversations = env['epilot.shared.conversation'].search([('inbox_id', 'in', inbox.ids)])
            env['ir.attachment'].search([
                ('res_model', '=', 'epilot.shared.conversation'), ('res_id', 'in', conversations.ids)]).unlink()
            env['epilot.outlook.message'].search([('inbox_id', 'in', inbox.ids)]).unlink()
            conversations.unlink()
            env['epilot.outlook.connection'].browse(getattr(self, 'connection_id', None)).exists().unlink()
            inbox.unlink()
            env['res.company'].browse(getattr(self, 'company_id', None)).exists().unlink()
            cr.execute("DELETE FROM ir_cron_trigger WHERE id > %s", [self.last_trigger_id])

@tagged('post_install', '-at_install')
class TestTwoWorkers(_CommittedSyncCase):
    """ A backfill page and a delta round of one address import the same messages at the same moment, in two
    real transactions (as two cron workers would). """

    def test_backfill_page_and_delta_round_at_once_import_each_message_once(self):
        # Mail that arrived after the backfill started: the first backfill page and delta's first round
        # both hold it.
        delivered = [self.sandbox.control('POST', '/mail/deliver', {
            'mailbox': SUPPORT, 'from': 'race%d@fabrikam.com' % index, 'subject': "Race %d" % index,
            'body_html': '<p>Both workers see me</p>'}) for index in range(25)]

        start, results, failures = threading.Barrier(2), {}, []

        def worker(kind):
            try:
                with self.registry.cursor() as cr:
                    env = api.Environment(cr, SUPERUSER_ID, {})
                    address = env['epilot.outlook.email.address'].browse(self.address_id)
                    if kind == 'backfill':
                        step = address.backfill_id
                    else:
                        step = address.folder_sync_ids.filtered(lambda sync: sync.folder == 'inbox')
                    # Both snapshots are taken before either worker commits (REPEATABLE READ).
                    env['epilot.outlook.message'].search_count([('inbox_id', '=', self.inbox_id)])
                    start.wait(timeout=30)
                    if kind == 'backfill':
                        results[kind] = step._outlook_run_page()
                    else:
                        results[kind] = step._outlook_run_round()
                    results[kind + '_retry_at'] = step.retry_at
            except Exception as error:  # noqa: BLE001 - reported by the assertion below
                failures.append((kind, error))

        threads = [threading.Thread(target=worker, args=(kind,)) for kind in ('backfill', 'delta')]
        # The losing INSERT is logged by the cursor before the code handles it.
        with mute_logger('odoo.sql_db'), self.assertLogs(
                'odoo.addons.epilot_outlook.models.epilot_outlook_email_address', logging.INFO) as logs:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=120)
        self.assertFalse(failures, "a worker failed instead of retrying")
        self.assertEqual(len([kind for kind in ('backfill', 'delta') if results.get(kind + '_retry_at')]), 1,
                         "exactly one worker lost the race and scheduled its retry")
        # What serialized them: a unique index of the import (the conversations' Outlook conversation, created
        # first, or the sync records' immutable id), never luck.
        conflicts = [line for line in logs.output if 'another worker imported the same messages' in line]
        self.assertEqual(len(conflicts), 1, logs.output)
        self.assertRegex(conflicts[0], r'\(UniqueViolation on epilot_(shared_conversation_graph_conversation_uniq|'
                                       r'outlook_message_graph_id_uniq)\)')

        # The crons go on (the loser's retry is due again) until the backfill is done.
        for _run in range(20):
            with self.registry.cursor() as cr:
                env = api.Environment(cr, SUPERUSER_ID, {})
                address = env['epilot.outlook.email.address'].browse(self.address_id)
                if address.backfill_id.state == 'done':
                    break
                address.backfill_id.retry_at = False
                address.folder_sync_ids.write({'retry_at': False, 'last_round_date': False})
                cr.commit()
                env['epilot.outlook.backfill']._cron_outlook_backfill()
                env['epilot.outlook.folder.sync']._cron_outlook_delta()
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            address = env['epilot.outlook.email.address'].browse(self.address_id)
            self.assertEqual(address.backfill_id.state, 'done')
            records = self.inbox_records(address.shared_inbox_id)
            for message in delivered:
                self.assertEqual(len(records.filtered(lambda record: record.graph_id == message['immutable_id'])), 1)
            self.assertEqual(len(self.inbox_emails(address.shared_inbox_id)), len(records))
            self.assertInSync(address)


@tagged('post_install', '-at_install')
class TestDeltaLanes(_CommittedSyncCase):
    """ The delta lanes (one cron job each, every cron thread of every server) share the due folders through
    row locks: each folder's round runs once, in one lane, and the lanes work at the same time (issue 18). """

    def test_two_lanes_share_the_folders_without_overlap(self):
        BILLING = 'billing@contoso.onmicrosoft.com'
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            address = env['epilot.outlook.email.address'].browse(self.address_id)
            while address.backfill_id.state != 'done':
                address.backfill_id._outlook_run_page()
        self.add_committed_address(BILLING)
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            syncs = env['epilot.outlook.folder.sync'].search([('address_id.connection_id', '=', self.connection_id)])
            syncs.write({'last_round_date': False, 'retry_at': False, 'round_count': 0})
            sync_ids = set(syncs.ids)
        self.assertEqual(len(sync_ids), 4)

        FolderSync = self.registry['epilot.outlook.folder.sync']
        run_round = FolderSync._outlook_run_round
        rounds, start, failures = [], threading.Barrier(2), []

        def slow_round(sync, max_pages):
            rounds.append((threading.current_thread().name, sync.id))
            time.sleep(0.3)   # long enough for the other lane to come by while this one holds the folder
            return run_round(sync, max_pages=max_pages)

        def lane():
            try:
                with self.registry.cursor() as cr:
                    env = api.Environment(cr, SUPERUSER_ID, {})
                    start.wait(timeout=30)
                    env['epilot.outlook.folder.sync']._cron_outlook_delta()
            except Exception as error:  # noqa: BLE001 - reported by the assertion below
                failures.append(error)

        self.patch(FolderSync, '_outlook_run_round', slow_round)
        threads = [threading.Thread(target=lane, name='lane-%d' % number) for number in (1, 2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        self.assertFalse(failures)
        ran = [sync_id for _lane, sync_id in rounds if sync_id in sync_ids]
        self.assertEqual(sorted(ran), sorted(sync_ids), "every due folder ran once, none twice")
        self.assertEqual({lane_name for lane_name, _sync in rounds}, {'lane-1', 'lane-2'}, "both lanes worked")
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            syncs = env['epilot.outlook.folder.sync'].browse(sorted(sync_ids))
            self.assertEqual(syncs.mapped('round_count'), [1, 1, 1, 1])

    def test_a_step_locks_its_free_folders_in_one_statement(self):
        """ A step of the batched pass locks its folders in one ``SKIP LOCKED`` statement (a savepoint and a
        ``SELECT`` for each of 160 folders took as long as the step's Graph answers on a busy server): it gets
        those no other lane holds, in their order; when one of them changed since its transaction's snapshot
        (REPEATABLE READ refuses the statement), it locks them one by one and skips that one too. Real
        transactions: a lane holding a folder, another lane committing a round of one. """
        from ..models.epilot_outlook_email_address import _try_lock_many
        self.add_committed_address('billing@contoso.onmicrosoft.com')
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            ids = env['epilot.outlook.folder.sync'].search(
                [('address_id.connection_id', '=', self.connection_id)], order='id').ids
        self.assertEqual(len(ids), 4)
        held, changed = ids[1], ids[2]
        with self.registry.cursor() as other_lane, self.registry.cursor() as cr:
            other_env = api.Environment(other_lane, SUPERUSER_ID, {})
            self.assertEqual(_try_lock_many(other_env['epilot.outlook.folder.sync'].browse([held])).ids, [held])
            env = api.Environment(cr, SUPERUSER_ID, {})
            FolderSync = env['epilot.outlook.folder.sync']
            self.assertEqual(_try_lock_many(FolderSync.browse(list(reversed(ids)))).ids,
                             [ids[3], ids[2], ids[0]], "the free ones, in the order asked")
            cr.rollback()
            cr.execute("SELECT 1")   # this transaction's snapshot
            with self.registry.cursor() as third_lane:
                third_lane.execute("UPDATE epilot_outlook_folder_sync SET round_count = round_count + 1 WHERE id = %s",
                                   (changed,))
            self.assertEqual(_try_lock_many(FolderSync.browse(ids)).ids, [ids[0], ids[3]],
                             "one by one after the serialization failure: the held one and the changed one skipped")
