import json
import logging
from datetime import timedelta

from odoo import Command, fields
from odoo.tests import tagged

from ..models.epilot_shared_conversation_live import ADDRESS_NOTIFICATION, LIVE_NOTIFICATION
from ..outlook_core import mapping
from .common import EpilotOutlookCommon
from .test_inbox_agents import CUSTOMER, TEAM, InboxImportMixin

_logger = logging.getLogger(__name__)


class LiveBusMixin:
    """ Reads the bus notifications a transaction sends at its commit (``bus.bus`` rows are written by
    pre-commit hooks, which a test runs itself: it never commits). """

    def setUp(self):
        super().setUp()
        self.env.cr.precommit.run()
        self._bus_mark = self.env['bus.bus'].sudo().search([], order='id desc', limit=1).id or 0

    def commit_notifications(self, notification_type=LIVE_NOTIFICATION):
        """ Run the pre-commit hooks as a commit would; return ``{partner: [payload, ...]}`` for the
        notifications of ``notification_type`` sent since the last call. """
        self.env.cr.precommit.run()
        rows = self.env['bus.bus'].sudo().search([('id', '>', self._bus_mark)], order='id')
        self._bus_mark = rows[-1:].id or self._bus_mark
        sent = {}
        for row in rows:
            message = json.loads(row.message)
            if message['type'] != notification_type:
                continue
            _db, model, res_id = json.loads(row.channel)
            self.assertEqual(model, 'res.partner', "sent to a user's own channel, nobody else's")
            partner = self.env['res.partner'].browse(res_id)
            sent.setdefault(partner, []).append(message['payload'])
        return sent


@tagged('post_install', '-at_install')
class TestLiveConversations(LiveBusMixin, InboxImportMixin, EpilotOutlookCommon):
    """ Issue 19, "Live": what changes conversations reaches the screens of those who may read them through the
    bus, one notification per person per transaction (an import batch is one), sent with the commit. """

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.inbox = cls.inbox_other   # fed by cls.address (billing@)
        cls.inbox.member_user_ids = [Command.link(cls.agent_member.id)]

    def item(self, number, conversation, folder='inbox', minutes_ago=60, subject="Invoice"):
        date = fields.Datetime.now() - timedelta(minutes=minutes_ago)
        return mapping.OutlookItem(
            graph_id='AAMk-live-%s-%d' % (folder, number), folder=folder,
            internet_message_id='<live-%d.%s@test>' % (number, folder), conversation_id=conversation,
            subject=subject, from_=CUSTOMER if folder == 'inbox' else TEAM,
            to=(TEAM,) if folder == 'inbox' else (CUSTOMER,), received_at=date, sent_at=date,
            is_read=folder != 'inbox', body_html='<p>Hello %d</p>' % number, attachments=[])

    def test_an_import_batch_sends_one_notification_per_reader(self):
        existing = self.import_mail(conversation='live-a').conversation_id
        self.commit_notifications()
        page = [self.item(1, 'live-a', minutes_ago=30), self.item(2, 'live-b'), self.item(3, 'live-b', minutes_ago=20),
                self.item(4, 'live-c'), self.item(5, 'live-c', folder='sentitems', minutes_ago=10)]
        self.env['epilot.outlook.message']._outlook_import(self.address, page)
        conversations = self.env['epilot.shared.conversation'].search([('inbox_id', '=', self.inbox.id)])
        self.assertEqual(len(conversations), 3)
        self.assertIn(existing, conversations)

        sent = self.commit_notifications()
        expected = {'inbox_ids': [self.inbox.id], 'conversation_ids': sorted(conversations.ids)}
        for user in (self.agent_member, self.editor, self.admin):
            self.assertEqual(sent.get(user.partner_id), [expected], "one notification for the whole batch")
        for user in (self.agent_outsider, self.internal, self.portal):
            self.assertNotIn(user.partner_id, sent, "who may not read the inbox hears nothing of it")

    def test_who_left_the_inbox_hears_nothing_more(self):
        conversation = self.import_mail(conversation='live-d').conversation_id
        self.assertIn(self.agent_member.partner_id, self.commit_notifications())
        self.inbox.member_user_ids = [Command.unlink(self.agent_member.id)]
        self.commit_notifications()
        self.import_mail(conversation='live-d', date=fields.Datetime.now() - timedelta(minutes=5))
        conversation.user_id = self.editor
        sent = self.commit_notifications()
        self.assertNotIn(self.agent_member.partner_id, sent)
        self.assertEqual(sent[self.editor.partner_id], [
            {'inbox_ids': [self.inbox.id], 'conversation_ids': conversation.ids}])

    def test_agents_changes_and_bulk_actions_reach_every_screen_once(self):
        first = self.import_mail(conversation='live-e').conversation_id
        second = self.import_mail(conversation='live-f').conversation_id
        both = first | second
        self.commit_notifications()
        as_agent = both.with_user(self.agent_member)

        as_agent.action_outlook_assign_to_me()
        as_agent.action_outlook_mark_read()
        as_agent.write({'state': 'closed'})    # the list's multi-edit
        sent = self.commit_notifications()
        self.assertEqual(sent[self.agent_member.partner_id], [
            {'inbox_ids': [self.inbox.id], 'conversation_ids': sorted(both.ids)}],
            "the agent's own menu counters follow a bulk action too, with one notification")
        self.assertEqual(len(sent[self.editor.partner_id]), 1)

        # A colleague's note (or reply) on one conversation
        first.with_user(self.agent_member).message_post(body="Called her back", message_type='comment',
                                                        subtype_xmlid='mail.mt_note')
        sent = self.commit_notifications()
        self.assertEqual(sent[self.agent_member.partner_id], [
            {'inbox_ids': [self.inbox.id], 'conversation_ids': first.ids}])

    def test_every_status_change_is_in_the_chatter(self):
        """ The changes the mail makes are tracked as an agent's are (before: Open -> Waiting was nowhere). """
        conversation = self.import_mail(conversation='live-g', date=fields.Datetime.now() - timedelta(hours=2)
                                        ).conversation_id
        conversation.with_user(self.agent_member).action_outlook_assign_to_me()
        self.env.cr.precommit.run()   # Odoo's own tracking of the agent's change
        self.assertEqual(conversation.state, 'open')

        # The team's reply reached Sent Items (sent from Odoo or from Outlook): waiting for the customer.
        self.import_mail(folder='sentitems', conversation='live-g', date=fields.Datetime.now() - timedelta(hours=1))
        self.assertEqual(conversation.state, 'waiting')
        # The customer answers: open again.
        self.import_mail(conversation='live-g', date=fields.Datetime.now() - timedelta(minutes=30))
        self.assertEqual(conversation.state, 'open')
        conversation.state = 'closed'
        self.env.cr.precommit.run()
        self.import_mail(conversation='live-g', date=fields.Datetime.now() - timedelta(minutes=5))
        self.env.cr.precommit.run()

        trackings = self.env['mail.tracking.value'].sudo().search([
            ('mail_message_id.model', '=', conversation._name), ('mail_message_id.res_id', '=', conversation.id),
            ('field_id.name', '=', 'state')], order='id')
        self.assertEqual([(tracking.old_value_char, tracking.new_value_char) for tracking in trackings], [
            ("New", "Open"), ("Open", "Waiting"), ("Waiting", "Open"), ("Open", "Closed"), ("Closed", "Open")])
        self.assertTrue(all(message.is_internal and message.message_type == 'notification'
                            for message in trackings.mail_message_id))

    def test_cost_of_a_batch(self):
        """ What live screens add to an import batch, measured (logged for the report, not asserted but the bus
        count): a page of 50 e-mails, 20 into 10 known conversations (10 of which go Waiting) and 30 into 15 new
        ones. """
        for number in range(10):
            self.import_mail(conversation='cost-%d' % number, date=fields.Datetime.now() - timedelta(hours=2))
        self.commit_notifications()
        page = [self.item(100 + number, 'cost-%d' % number, minutes_ago=5) for number in range(10)]
        page += [self.item(110 + number, 'cost-%d' % number, folder='sentitems', minutes_ago=2) for number in range(10)]
        page += [self.item(200 + number, 'cost-new-%d' % (number // 2), minutes_ago=30) for number in range(30)]
        self.env.invalidate_all()
        start = self.cr.sql_log_count
        self.env['epilot.outlook.message']._outlook_import(self.address, page)
        self.env.flush_all()
        imported = self.cr.sql_log_count
        self.env.cr.precommit.run()   # what the commit adds: the bus notifications (and Odoo's own hooks)
        committed = self.cr.sql_log_count
        sent = self.commit_notifications()
        readers = [user for user in (self.agent_member, self.editor, self.admin) if user.partner_id in sent]
        self.assertEqual(len(readers), 3)
        self.assertTrue(all(len(sent[user.partner_id]) == 1 for user in readers), "one notification per reader")
        self.assertEqual(len(sent[self.agent_member.partner_id][0]['conversation_ids']), 25)
        trackings = self.env['mail.tracking.value'].sudo().search_count([
            ('field_id.name', '=', 'state'), ('mail_message_id.model', '=', 'epilot.shared.conversation')])
        _logger.info("Live: an import batch of %d e-mails: %d queries (of which the status trackings, %d, in one "
                     "create); its commit: %d queries for the bus, %d bus notifications (one per reader: %d readers)",
                     len(page), imported - start, trackings, committed - imported,
                     sum(len(payloads) for payloads in sent.values()), len(sent))

    def test_a_commit_tells_the_screens_in_two_queries(self):
        """ What live screens add to each commit (each e-mail the mail queue sends is one, issue 18): one query
        finds the readers of the touched conversations, however many conversations, inboxes and readers there
        are, and one writes the notifications; nothing is read again after a commit emptied the cache. """
        one = self.import_mail(conversation='live-q1').conversation_id
        several = one | self.import_mail(conversation='live-q2').conversation_id | self.env[
            'epilot.shared.conversation'].create({'inbox_id': self.inbox_member.id, 'name': "Other inbox's"})
        for conversations in (one, several):
            self.commit_notifications()
            conversations._outlook_live_touch()
            self.env.invalidate_all()   # as a commit does
            with self.assertQueryCount(2):
                self.env.cr.precommit.run()
            sent = self.commit_notifications()
            self.assertEqual(sent[self.editor.partner_id], [{
                'inbox_ids': sorted(conversations.inbox_id.ids), 'conversation_ids': sorted(conversations.ids)}])
            self.assertEqual(sent[self.agent_member.partner_id], [{
                'inbox_ids': sorted(conversations.inbox_id.ids), 'conversation_ids': sorted(conversations.ids)}],
                "a member of both inboxes")

    def test_status_changes_of_a_batch_are_logged_in_one_create(self):
        conversations = self.env['epilot.shared.conversation']
        for number in range(3):
            conversations |= self.import_mail(conversation='live-h%d' % number,
                                              date=fields.Datetime.now() - timedelta(hours=2)).conversation_id
        page = [self.item(10 + number, 'live-h%d' % number, folder='sentitems', minutes_ago=10)
                for number in range(3)]
        created = []
        origin = type(self.env['mail.message']).create

        def create(model, vals_list):
            created.append(len(vals_list) if isinstance(vals_list, list) else 1)
            return origin(model, vals_list)

        self.patch(type(self.env['mail.message']), 'create', create)
        self.env['epilot.outlook.message']._outlook_import(self.address, page)
        self.assertEqual(conversations.mapped('state'), ['waiting'] * 3)
        self.assertIn(3, created, "the three trackings in one create")


@tagged('post_install', '-at_install')
class TestLiveAddress(LiveBusMixin, EpilotOutlookCommon):
    """ The address form says what push and the backfill are doing, and follows them live (issue 19: "Backfilling",
    "Pending 0/0" and Retry Push while push was still being set up). """

    def test_push_is_being_set_up_until_microsoft_answers(self):
        self.address.sync_state = 'backfilling'
        self.assertEqual(self.address.push_status, 'setting_up', "no subscription yet: the cron makes them")
        self.address._outlook_subscribe()
        self.assertEqual(self.address.subscription_ids.mapped('state'), ['pending', 'pending'])
        self.assertEqual(self.address.push_status, 'setting_up', "not a failure: Retry Push is not offered")
        self.address.subscription_ids.write({'state': 'active'})
        self.address._outlook_update_push_mode()
        self.assertEqual((self.address.sync_mode, self.address.push_status), ('webhook', 'active'))
        self.address.subscription_ids[:1].write({'state': 'refused', 'last_error': "Refused"})
        self.address._outlook_update_push_mode()
        self.assertEqual((self.address.sync_mode, self.address.push_status), ('polling', 'failed'))
        self.address.sync_state = 'paused'
        self.assertEqual(self.address.push_status, 'off')

    def test_the_form_offers_retry_push_only_after_a_failure(self):
        arch = self.env['epilot.outlook.email.address'].get_view(
            self.env.ref('epilot_outlook.epilot_outlook_email_address_view_form').id)['arch']
        self.assertIn('name="action_outlook_retry_push" type="object" string="Retry Push" '
                      'invisible="push_status != \'failed\'"', arch)

    def test_progress_reaches_the_editors_screens(self):
        backfill = self.env['epilot.outlook.backfill'].create({
            'address_id': self.address.id, 'window_start': fields.Datetime.now() - timedelta(days=30)})
        self.address.backfill_id = backfill
        self.commit_notifications(ADDRESS_NOTIFICATION)
        backfill.write({'state': 'running', 'total': 120})
        backfill.write({'done': 50})
        sent = self.commit_notifications(ADDRESS_NOTIFICATION)
        for user in (self.editor, self.admin):
            self.assertEqual(sent[user.partner_id], [{'address_ids': self.address.ids}], "one per transaction")
        for user in (self.agent_member, self.agent_outsider, self.internal, self.portal):
            self.assertNotIn(user.partner_id, sent)
