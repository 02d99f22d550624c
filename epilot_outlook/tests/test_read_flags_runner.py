import logging
from contextlib import contextmanager
from datetime import timedelta

from odoo import SUPERUSER_ID, api, fields
from odoo.tests import HttpCase, tagged

from ..outlook_core.mailbox import MailboxReader
from .common import EpilotOutlookCommon
from .mail_sync_common import SUPPORT
from .test_inbox_agents import InboxImportMixin
from .test_mail_sync_lifecycle import _CommittedSyncCase

PUSH_CRON = 'epilot_outlook.ir_cron_outlook_push_read_state'
STATE_LOGGER = 'odoo.addons.epilot_outlook.models.epilot_outlook_message_state'


@tagged('post_install', '-at_install')
class TestReadFlagsRunner(_CommittedSyncCase):
    """ The read flags an agent sets go to Outlook through the common step runner, one work item per address
    (``epilot.outlook.read.push``), in real transactions of their own as cron workers and HTTP requests have
    them (issue 18 item 1, issue 19). """

    def setUp(self):
        super().setUp()
        delivered = self.sandbox.control('POST', '/mail/deliver', {
            'mailbox': SUPPORT, 'from': 'carla@fabrikam.com', 'subject': "Call me back",
            'body_html': '<p>Please call me back</p>'})
        with self.env_of_cursor() as env:
            address = env['epilot.outlook.email.address'].browse(self.address_id)
            while address.backfill_id.state != 'done':
                address.backfill_id._outlook_run_page()
        with self.env_of_cursor() as env:
            record = env['epilot.outlook.message'].search([('graph_id', '=', delivered['immutable_id'])])
            self.assertEqual(len(record), 1)
            self.assertFalse(record.is_read)
            self.record_id, self.conversation_id = record.id, record.conversation_id.id
            self.graph_id = record.graph_id

    @contextmanager
    def env_of_cursor(self):
        """ An environment on a real transaction of its own, committed on exit (a request or a cron worker). """
        with self.registry.cursor() as cr:
            yield api.Environment(cr, SUPERUSER_ID, {})

    def agent_clicks(self, action):
        """ An agent's click on the conversation (``action_outlook_mark_read``/``_unread``), as a request:
        its own transaction, committed. """
        with self.env_of_cursor() as env:
            getattr(env['epilot.shared.conversation'].browse(self.conversation_id), action)()

    def run_push_cron(self):
        """ The cron *Outlook: send read flags*, run as Odoo's scheduler runs it (ir.cron logs at ERROR
        whatever escapes the job); True when nothing was logged at ERROR. """
        with self.env_of_cursor() as env:
            return env.ref(PUSH_CRON).method_direct_trigger()

    def outlook_is_read(self):
        return self.graph('GET', '/users/%s/messages/%s?$select=isRead' % (SUPPORT, self.graph_id))['isRead']

    def item_and_record(self, env):
        record = env['epilot.outlook.message'].browse(self.record_id)
        item = env['epilot.outlook.read.push'].search([('address_id', '=', self.address_id)])
        self.assertEqual(len(item), 1, "one work item per address")
        return item, record

    def test_agent_marks_unread_while_the_read_flag_is_sent(self):
        """ Issue 19: the agent opens the conversation (read), then clicks Mark as Unread while the cron is
        sending "read" to Outlook. The cron's write meets the agent's committed one (a serialization failure):
        nothing is logged at ERROR, the item retries a second later, and Outlook ends unread, as the agent chose
        last. """
        self.agent_clicks('action_outlook_mark_read')
        set_read_flags = MailboxReader.set_read_flags
        sent = []

        def agent_clicks_meanwhile(reader, flags):
            outcome = set_read_flags(reader, flags)
            sent.append(dict(flags))
            if len(sent) == 1:
                # Graph has taken "read"; before the cron commits, the agent's Mark as Unread commits.
                self.agent_clicks('action_outlook_mark_unread')
            return outcome

        self.patch(MailboxReader, 'set_read_flags', agent_clicks_meanwhile)
        with self.assertNoLogs(level=logging.ERROR), self.assertLogs(STATE_LOGGER, logging.INFO) as logs:
            self.assertIs(self.run_push_cron(), True, "the cron job logged an error")
        self.assertEqual(sent, [{self.graph_id: True}])
        self.assertTrue(self.outlook_is_read(), "Outlook took the first flag")
        self.assertTrue(any('an agent changed read flags while they were sent' in line for line in logs.output),
                        logs.output)
        with self.env_of_cursor() as env:
            item, record = self.item_and_record(env)
            self.assertEqual((record.is_read, record.read_push_pending), (False, True),
                             "the agent's flag stands, still to send")
            self.assertTrue(item.retry_at and item.retry_at <= fields.Datetime.now() + timedelta(seconds=2),
                            "retried a second later")
            self.assertFalse(item.last_error, "a conflict with an agent is no error")
            trigger = env['ir.cron.trigger'].search([('cron_id', '=', env.ref(PUSH_CRON).id)], order='id desc',
                                                    limit=1)
            self.assertEqual(trigger.call_at, item.retry_at, "the cron comes back for it")
            item.retry_at = fields.Datetime.now()   # the second has passed

        with self.assertNoLogs(level=logging.ERROR):
            self.assertIs(self.run_push_cron(), True)
        self.assertEqual(sent[1:], [{self.graph_id: False}])
        self.assertFalse(self.outlook_is_read(), "Outlook ends with the last flag the agent chose")
        with self.env_of_cursor() as env:
            item, record = self.item_and_record(env)
            self.assertEqual((record.is_read, record.read_push_pending), (False, False))
            self.assertFalse(item.retry_at)

    def test_two_workers_never_push_the_same_flags(self):
        """ While one worker sends an address's flags, another worker's run finds its item locked and skips it
        (``SKIP LOCKED``): the flags go to Graph once. """
        self.agent_clicks('action_outlook_mark_read')
        set_read_flags = MailboxReader.set_read_flags
        calls = []

        def other_worker_comes_by(reader, flags):
            calls.append(dict(flags))
            if len(calls) == 1:
                with self.env_of_cursor() as env:
                    env['epilot.outlook.message']._cron_outlook_push_read_state()
            return set_read_flags(reader, flags)

        self.patch(MailboxReader, 'set_read_flags', other_worker_comes_by)
        self.assertIs(self.run_push_cron(), True)
        self.assertEqual(calls, [{self.graph_id: True}], "sent once, by one worker")
        self.assertTrue(self.outlook_is_read())
        with self.env_of_cursor() as env:
            _item, record = self.item_and_record(env)
            self.assertFalse(record.read_push_pending)

    def test_throttled_push_waits_on_its_item(self):
        """ Graph throttles the mailbox: the item records it and waits for Graph's Retry-After (the one retry
        policy); the flag stays pending, and goes once the wait is over. """
        self.agent_clicks('action_outlook_mark_read')
        self.sandbox.control('POST', '/faults', {'graph': {'429': 50, 'retry_after': 45}})
        self.addCleanup(self.sandbox.control, 'POST', '/faults', {'graph': None})
        before = fields.Datetime.now()
        self.assertIs(self.run_push_cron(), True)
        with self.env_of_cursor() as env:
            item, record = self.item_and_record(env)
            self.assertTrue(record.read_push_pending)
            self.assertTrue(item.last_error)
            self.assertGreaterEqual(item.retry_at, before + timedelta(seconds=44), "Graph's Retry-After")
            self.assertLessEqual(item.retry_at, fields.Datetime.now() + timedelta(seconds=46))
        self.sandbox.control('POST', '/faults', {'graph': None})
        self.assertIs(self.run_push_cron(), True)
        with self.env_of_cursor() as env:
            item, record = self.item_and_record(env)
            self.assertTrue(record.read_push_pending, "not before the Retry-After")
            item.retry_at = fields.Datetime.now()
        self.assertIs(self.run_push_cron(), True)
        self.assertTrue(self.outlook_is_read())
        with self.env_of_cursor() as env:
            item, record = self.item_and_record(env)
            self.assertFalse(record.read_push_pending)
            self.assertEqual((item.retry_at, item.last_error), (False, False), "the failure is cleared")


@tagged('post_install', '-at_install')
class TestMarkUnreadInTheBrowser(InboxImportMixin, HttpCase, EpilotOutlookCommon):
    """ Issue 19: Mark as Unread on the conversation form sticks; the form marks a conversation read only when
    it is opened, not when it reloads after the agent's own Mark as Unread. """

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.inbox = cls.inbox_other
        cls.inbox.member_user_ids = [(4, cls.agent_member.id)]

    def test_mark_unread_stays_unread(self):
        record = self.import_mail(subject="Call me back", body='<p>Please call me back</p>')
        conversation = record.conversation_id
        self.assertTrue(conversation.is_unread)
        self.start_tour('/odoo/action-epilot_outlook.epilot_shared_conversation_action', 'epilot_outlook_mark_unread',
                        login=self.agent_member.login)
        self.env.invalidate_all()
        self.assertTrue(conversation.is_unread, "unread, as the agent chose last")
        self.assertEqual((record.is_read, record.read_push_pending), (False, True))
