import dataclasses
from datetime import datetime, timedelta

from freezegun import freeze_time
from markupsafe import Markup

from odoo import Command, fields
from odoo.exceptions import AccessError
from odoo.tests import HttpCase, tagged
from odoo.tools import SQL

from odoo.addons.epilot_outlook.tests.common import EpilotOutlookCommon

from ..outlook_core import mapping
from ..outlook_core.sending import Draft
from .send_common import OutlookSendCase
from .test_inbox_agents import CUSTOMER, TEAM, InboxImportMixin

# Berlin's office hours, Monday to Friday 8-12 and 13-17. Summer time began on Sunday 29 March 2026 (UTC+1 -> +2).
FRIDAY_EVENING = datetime(2026, 3, 27, 17, 0)   # Friday 18:00 in Berlin (CET), after hours
MONDAY_0930 = datetime(2026, 3, 30, 7, 30)      # Monday 09:30 in Berlin (CEST)
MONDAY_NOON = datetime(2026, 3, 30, 10, 0)      # Monday 12:00 in Berlin: 4 business hours after Friday evening
TUESDAY_1700 = datetime(2026, 3, 31, 15, 0)     # Tuesday 17:00 in Berlin: 16 business hours after Friday evening


@tagged('post_install', '-at_install')
class TestResponseTimes(InboxImportMixin, EpilotOutlookCommon):
    """ First response and resolution times in the inbox's business hours, deadlines and overdue conversations
    (issue 19, item 6), on mail brought in by the import (``_outlook_import``), as a Graph page would be. """

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.inbox = cls.inbox_other   # billing@, fed by cls.address
        cls.inbox.member_user_ids = [Command.link(cls.agent_member.id)]
        Calendar = cls.env['resource.calendar']
        cls.berlin = Calendar.create({
            'name': "Berlin office", 'tz': 'Europe/Berlin', 'attendance_ids': Calendar._get_default_attendance_ids()})
        cls.new_york = Calendar.create({
            'name': "New York office", 'tz': 'America/New_York',
            'attendance_ids': Calendar._get_default_attendance_ids()})
        cls.inbox.write({
            'resource_calendar_id': cls.berlin.id, 'first_response_target_hours': 4, 'resolution_target_hours': 16})

    def import_page(self, items):
        """ One page of several mapped items through the import, as a delta or backfill step brings it. """
        self.env['epilot.outlook.message']._outlook_import(self.address, items)
        return self.env['epilot.outlook.message'].search([('graph_id', 'in', [item.graph_id for item in items])])

    def item(self, number, conversation, folder, date):
        return mapping.OutlookItem(
            graph_id='AAMk-page-%s-%d' % (folder, number), folder=folder,
            internet_message_id='<page-%d.%s@test>' % (number, folder), conversation_id=conversation,
            subject="Order %s" % conversation, from_=CUSTOMER if folder == 'inbox' else TEAM,
            to=(TEAM,) if folder == 'inbox' else (CUSTOMER,), received_at=date, sent_at=date,
            is_read=folder != 'inbox', body_html='<p>Hello</p>')

    def times(self, conversation):
        conversation.invalidate_recordset()
        return conversation.read([
            'first_received_date', 'first_response_date', 'first_response_hours', 'first_response_deadline',
            'closed_date', 'resolution_hours', 'resolution_deadline'])[0]

    # --- business hours ------------------------------------------------------------------------------------

    def test_friday_evening_answered_monday_morning_counts_business_hours(self):
        """ A mail received Friday evening after hours and answered from Outlook on Monday at 09:30 took 1.5
        business hours (Monday 08:00-09:30, across the weekend and the change to summer time), not 62.5. """
        conversation = self.import_mail(conversation='c-friday', date=FRIDAY_EVENING).conversation_id
        times = self.times(conversation)
        self.assertEqual((times['first_received_date'], times['first_response_date']), (FRIDAY_EVENING, False))
        self.assertEqual(times['first_response_deadline'], MONDAY_NOON, "4 business hours: Monday 08:00-12:00")
        self.assertEqual(times['resolution_deadline'], TUESDAY_1700, "16 business hours: Monday and Tuesday")

        # The team's answer, sent from Outlook and synced back from Sent Items.
        self.import_mail(folder='sentitems', conversation='c-friday', date=MONDAY_0930)
        times = self.times(conversation)
        self.assertEqual(times['first_response_date'], MONDAY_0930)
        self.assertAlmostEqual(times['first_response_hours'], 1.5, places=4)
        self.assertEqual(conversation.state, 'waiting')

        # Later mail changes nothing of the first response.
        self.import_mail(conversation='c-friday', date=datetime(2026, 3, 30, 12, 0))
        self.import_mail(folder='sentitems', conversation='c-friday', date=datetime(2026, 3, 30, 13, 0))
        self.assertEqual(self.times(conversation), times)

    def test_the_calendar_time_zone_decides_the_hours(self):
        """ The same mail in New York's office hours: Friday 13:00-17:00 EDT (4 hours), Monday 03:30 EDT is
        before hours. In a calendar kept in UTC, neither side is in office hours: 0. Changing the inbox's working
        hours recomputes its conversations. """
        conversation = self.import_mail(conversation='c-tz', date=FRIDAY_EVENING).conversation_id
        self.import_mail(folder='sentitems', conversation='c-tz', date=MONDAY_0930)
        self.assertAlmostEqual(conversation.first_response_hours, 1.5, places=4)

        self.inbox.resource_calendar_id = self.new_york
        self.assertAlmostEqual(self.times(conversation)['first_response_hours'], 4.0, places=4)
        self.assertEqual(conversation.first_response_deadline, datetime(2026, 3, 27, 21, 0),
                         "4 business hours from Friday 13:00 EDT: Friday 17:00 EDT")

        self.new_york.tz = 'UTC'
        self.inbox.first_response_target_hours = 2   # a change of target recomputes too
        self.assertAlmostEqual(self.times(conversation)['first_response_hours'], 0.0, places=4)
        self.assertEqual(conversation.first_response_deadline, datetime(2026, 3, 30, 10, 0),
                         "2 business hours from Friday 17:00 UTC: Monday 10:00 UTC")

    def test_public_holiday_is_not_business_time(self):
        """ A public holiday of the calendar (a global leave) counts no hours: answered on Tuesday at 09:30, after
        a Monday off, the mail took 1.5 business hours; the deadlines move a day. """
        self.env['resource.calendar.leaves'].create({
            'name': "Easter Monday (test)", 'calendar_id': self.berlin.id,
            'date_from': datetime(2026, 3, 29, 22, 0), 'date_to': datetime(2026, 3, 30, 21, 59, 59)})
        conversation = self.import_mail(conversation='c-holiday', date=FRIDAY_EVENING).conversation_id
        self.assertEqual(conversation.first_response_deadline, datetime(2026, 3, 31, 10, 0))
        self.import_mail(folder='sentitems', conversation='c-holiday', date=datetime(2026, 3, 31, 7, 30))
        self.assertAlmostEqual(self.times(conversation)['first_response_hours'], 1.5, places=4)

    def test_hours_follow_the_calendar_changed_after_they_were_counted(self):
        """ The calendar's working intervals are cached by the process (each e-mail the mail queue sends is a
        transaction of its own, issue 18): a public holiday added, or office hours changed, after response times
        were counted is counted at the next recompute, as the calendar says then. """
        conversation = self.import_mail(conversation='c-changed', date=FRIDAY_EVENING).conversation_id
        self.import_mail(folder='sentitems', conversation='c-changed', date=datetime(2026, 3, 31, 7, 30))
        self.assertAlmostEqual(self.times(conversation)['first_response_hours'], 9.5, places=4,
                               msg="Monday 08:00-17:00 (lunch off) and Tuesday 08:00-09:30 in Berlin")

        self.env['resource.calendar.leaves'].create({
            'name': "Easter Monday (test)", 'calendar_id': self.berlin.id,
            'date_from': datetime(2026, 3, 29, 22, 0), 'date_to': datetime(2026, 3, 30, 21, 59, 59)})
        self.inbox.first_response_target_hours = 5   # recomputes the inbox's conversations
        self.assertAlmostEqual(self.times(conversation)['first_response_hours'], 1.5, places=4)

        tuesday_morning = self.berlin.attendance_ids.filtered(
            lambda attendance: attendance.dayofweek == '1' and attendance.hour_from == 8)
        self.assertEqual(len(tuesday_morning), 1)
        tuesday_morning.hour_from = 9
        self.inbox.first_response_target_hours = 4
        self.assertAlmostEqual(self.times(conversation)['first_response_hours'], 0.5, places=4)

    # --- what counts as the first response --------------------------------------------------------------

    def test_reply_sent_from_odoo_counts_notes_do_not(self):
        """ An internal note sends nothing: no response. The agent's reply from Odoo counts once Graph sent it
        (its sent item recorded, as the Graph session does after ``send``), at its date. """
        conversation = self.import_mail(conversation='c-odoo', date=datetime(2026, 3, 30, 6, 30)).conversation_id
        with freeze_time('2026-03-30 07:00:00'):
            conversation.message_post(body=Markup('<p>Carla again, see the last order</p>'), message_type='comment',
                                      subtype_xmlid='mail.mt_note')
        self.assertFalse(self.times(conversation)['first_response_date'], "a note is no response")
        with freeze_time('2026-03-30 08:00:00'):   # Monday 10:00 in Berlin
            reply = conversation.message_post(
                body=Markup('<p>Your refund is on its way.</p>'), message_type='comment',
                subtype_xmlid='mail.mt_comment', author_id=self.agent_member.partner_id.id,
                email_from=self.inbox.email)
        self.assertFalse(self.times(conversation)['first_response_date'], "not sent yet: no response yet")
        self.address.sudo()._outlook_record_sent(reply, Draft(
            graph_id='AAMk-sent-odoo', internet_message_id=reply.message_id, conversation_id='c-odoo',
            is_draft=False, mailbox='users/%s' % self.address.email))
        times = self.times(conversation)
        self.assertEqual(times['first_response_date'], datetime(2026, 3, 30, 8, 0))
        self.assertAlmostEqual(times['first_response_hours'], 1.5, places=4, msg="Monday 08:30-10:00 in Berlin")

    def test_team_mail_before_the_customer_wrote_is_no_response(self):
        """ The team wrote first (Monday); the customer answered on Tuesday at 09:00, the team at 11:00: the
        first response is Tuesday's, 2 business hours after the customer's first e-mail. """
        conversation = self.import_mail(
            folder='sentitems', conversation='c-out', date=datetime(2026, 3, 30, 8, 0)).conversation_id
        self.assertFalse(self.times(conversation)['first_received_date'])
        self.assertFalse(conversation.first_response_deadline, "no deadline before a customer wrote")
        self.import_mail(conversation='c-out', date=datetime(2026, 3, 31, 7, 0))
        self.import_mail(folder='sentitems', conversation='c-out', date=datetime(2026, 3, 31, 9, 0))
        times = self.times(conversation)
        self.assertEqual((times['first_received_date'], times['first_response_date']),
                         (datetime(2026, 3, 31, 7, 0), datetime(2026, 3, 31, 9, 0)))
        self.assertAlmostEqual(times['first_response_hours'], 2.0, places=4)
        self.assertEqual(times['first_response_deadline'], datetime(2026, 3, 31, 12, 0),
                         "Tuesday 09:00 + 4 business hours, with the lunch hour: 14:00 in Berlin")

    def test_automatic_replies_are_neither_the_customer_writing_nor_an_answer(self):
        """ The team wrote first; the customer's out-of-office came back at once: nobody wrote to the team yet,
        so the team's follow-up is no response. The customer's real answer on Tuesday starts the clock; the
        mailbox's own automatic reply to it answers nothing; the agent's mail does. """
        def auto(item):
            return dataclasses.replace(item, kind='auto_reply')

        records = self.import_page([
            self.item(11, 'c-ooo', 'sentitems', datetime(2026, 3, 30, 8, 0)),
            auto(self.item(12, 'c-ooo', 'inbox', datetime(2026, 3, 30, 8, 1))),
        ])
        conversation = records.conversation_id
        self.import_page([self.item(13, 'c-ooo', 'sentitems', datetime(2026, 3, 30, 9, 0))])
        times = self.times(conversation)
        self.assertEqual((times['first_received_date'], times['first_response_date'], times['first_response_deadline']),
                         (False, False, False), "an out-of-office is not the customer writing")
        self.import_page([
            self.item(14, 'c-ooo', 'inbox', datetime(2026, 3, 31, 7, 0)),
            auto(self.item(15, 'c-ooo', 'sentitems', datetime(2026, 3, 31, 7, 1))),
        ])
        times = self.times(conversation)
        self.assertEqual((times['first_received_date'], times['first_response_date']), (datetime(2026, 3, 31, 7, 0), False))
        self.import_page([self.item(16, 'c-ooo', 'sentitems', datetime(2026, 3, 31, 8, 0))])
        self.assertAlmostEqual(self.times(conversation)['first_response_hours'], 1.0, places=4)
        # A page that brings it all at once (a backfill) agrees.
        conversation._outlook_sla_refresh(force=True)
        self.assertEqual(self.times(conversation)['first_response_date'], datetime(2026, 3, 31, 8, 0))

    # --- resolution ------------------------------------------------------------------------------------

    def test_closing_measures_resolution_and_reopening_resets_it(self):
        """ Closed on Tuesday at 12:00 (Berlin): 12 business hours since Friday evening. The customer's new mail
        reopens it, which clears the resolution; closed again on Wednesday at 09:00: 17 hours. """
        conversation = self.import_mail(conversation='c-close', date=FRIDAY_EVENING).conversation_id
        with freeze_time('2026-03-31 10:00:00'):
            conversation.with_user(self.agent_member).state = 'closed'
        times = self.times(conversation)
        self.assertEqual(times['closed_date'], datetime(2026, 3, 31, 10, 0))
        self.assertAlmostEqual(times['resolution_hours'], 12.0, places=4)

        self.import_mail(conversation='c-close', date=datetime(2026, 3, 31, 11, 0))
        self.assertEqual(conversation.state, 'open')
        times = self.times(conversation)
        self.assertEqual((times['closed_date'], times['resolution_hours']), (False, 0.0), "reopened: not resolved")
        self.assertEqual(times['first_received_date'], FRIDAY_EVENING, "the first e-mail stays the first")

        with freeze_time('2026-04-01 07:00:00'):
            conversation.with_user(self.agent_member).state = 'closed'
        self.assertAlmostEqual(self.times(conversation)['resolution_hours'], 17.0, places=4)
        # Reopened by an agent: cleared too.
        conversation.with_user(self.agent_member).state = 'open'
        self.assertEqual(self.times(conversation)['closed_date'], False)

    # --- overdue -------------------------------------------------------------------------------------------

    def assertOverdue(self, conversations, expected):
        conversations.invalidate_recordset()
        self.assertEqual(conversations.filtered('is_overdue'), expected, "is_overdue as read")
        Conversation = self.env['epilot.shared.conversation']
        self.assertEqual(Conversation.search([('id', 'in', conversations.ids), ('is_overdue', '=', True)]),
                         expected, "the Overdue filter")
        self.assertEqual(Conversation.search([('id', 'in', conversations.ids), ('is_overdue', '=', False)]),
                         conversations - expected, "not overdue")

    def test_overdue_follows_the_clock(self):
        """ Unanswered past its first response deadline (Monday 12:00 in Berlin) a conversation is overdue, the
        one received on Monday morning is not; answered, it is not until its resolution deadline; closed, never. """
        friday = self.import_mail(conversation='c-late', date=FRIDAY_EVENING).conversation_id
        monday = self.import_mail(conversation='c-fresh', date=datetime(2026, 3, 30, 9, 0)).conversation_id
        both = friday | monday
        self.assertEqual(monday.first_response_deadline, datetime(2026, 3, 30, 14, 0), "Monday 16:00 in Berlin")
        with freeze_time('2026-03-30 09:59:00'):
            self.assertOverdue(both, friday.browse())
        with freeze_time('2026-03-30 10:30:00'):
            self.assertOverdue(both, friday)
            self.import_mail(folder='sentitems', conversation='c-late', date=datetime(2026, 3, 30, 10, 15))
            self.assertOverdue(both, friday.browse())
        with freeze_time('2026-03-30 14:30:00'):   # Monday's, unanswered, is late now
            self.assertOverdue(both, monday)
        with freeze_time('2026-03-31 15:30:00'):   # Tuesday 17:30: past Friday's resolution deadline
            self.assertOverdue(both, both)
            friday.with_user(self.agent_member).state = 'closed'
            self.assertOverdue(both, monday)

    def test_no_target_no_deadline(self):
        self.inbox.write({'first_response_target_hours': 0, 'resolution_target_hours': 0})
        conversation = self.import_mail(conversation='c-none', date=FRIDAY_EVENING).conversation_id
        times = self.times(conversation)
        self.assertEqual((times['first_response_deadline'], times['resolution_deadline']), (False, False))
        with freeze_time('2027-01-01'):
            self.assertOverdue(conversation, conversation.browse())

    # --- the import: batched, and both paths agree ----------------------------------------------------------

    def test_new_and_refreshed_conversations_agree(self):
        """ A page's new conversations get their times at creation (one UPDATE for the page); a refresh from
        the sync records gives the same values. """
        records = self.import_page([
            self.item(1, 'p-1', 'inbox', FRIDAY_EVENING),
            self.item(2, 'p-1', 'sentitems', MONDAY_0930),
            self.item(3, 'p-2', 'sentitems', FRIDAY_EVENING),
            self.item(4, 'p-2', 'inbox', MONDAY_0930),
            self.item(5, 'p-3', 'inbox', MONDAY_0930),
        ])
        conversations = records.conversation_id
        self.assertEqual(len(conversations), 3)
        stored = [self.times(conversation) for conversation in conversations]
        by_name = {conversation.graph_conversation_id: times for conversation, times in zip(conversations, stored)}
        self.assertAlmostEqual(by_name['p-1']['first_response_hours'], 1.5, places=4)
        self.assertEqual((by_name['p-2']['first_received_date'], by_name['p-2']['first_response_date']),
                         (MONDAY_0930, False), "sent before the customer wrote: no response")
        self.assertEqual(by_name['p-3']['first_response_deadline'], datetime(2026, 3, 30, 12, 30),
                         "Monday 09:30 + 4 business hours, with the lunch hour: 14:30 in Berlin")
        conversations._outlook_sla_refresh(force=True)
        self.assertEqual([self.times(conversation) for conversation in conversations], stored)
        # Conversations imported before response times existed (an upgrade) get theirs.
        self.env.cr.execute(SQL("UPDATE epilot_shared_conversation SET %s WHERE id IN %s", SQL(', ').join(
            SQL('%s = NULL', SQL.identifier(name)) for name in stored[0] if name != 'id'), tuple(conversations.ids)))
        self.env['epilot.shared.conversation']._outlook_sla_fill_missing()
        self.assertEqual([self.times(conversation) for conversation in conversations], stored)

    def test_import_queries_do_not_grow_with_the_page(self):
        """ The response times of a page cost the same few queries for 5 or 25 new conversations, and for 5 or 25
        answers joining known ones: none per e-mail. Counted inside the response-time methods only (the rest of
        the import is measured by bench/bench_backfill.py). """
        Conversation = type(self.env['epilot.shared.conversation'])
        spent = {'queries': 0, 'depth': 0}

        def counting(method):
            def wrapper(records, *args, **kwargs):
                spent['depth'] += 1
                before = records.env.cr.sql_log_count
                try:
                    return method(records, *args, **kwargs)
                finally:
                    spent['depth'] -= 1
                    if not spent['depth']:
                        spent['queries'] += records.env.cr.sql_log_count - before
            return wrapper

        for name in ('_outlook_sla_refresh', '_outlook_sla_write'):
            self.patch(Conversation, name, counting(getattr(Conversation, name)))

        def queries(page):
            self.env.invalidate_all()
            self.env.registry.clear_cache()   # each page from cold: the calendar's intervals too (process cache)
            spent['queries'] = 0
            self.import_page(page)
            return spent['queries']

        def page(start, count, folder, hour, conversations):
            return [self.item(start + n, 'q-%d' % (conversations + n), folder, datetime(2026, 3, 30, hour, n))
                    for n in range(count)]

        new_small, new_large = queries(page(100, 5, 'inbox', 6, 100)), queries(page(200, 25, 'inbox', 6, 200))
        # The team's answers to each of them.
        join_small, join_large = queries(page(300, 5, 'sentitems', 8, 100)), queries(page(400, 25, 'sentitems', 8, 200))
        self.assertEqual(new_large, new_small, "queries per new conversation: %d, %d" % (new_small, new_large))
        self.assertEqual(join_large, join_small, "queries per answer: %d, %d" % (join_small, join_large))
        self.assertLessEqual(max(new_large, join_large), 8, "a few queries per page")
        self.assertAlmostEqual(
            self.env['epilot.shared.conversation'].search([('graph_conversation_id', '=', 'q-203')]).first_response_hours,
            2.0, places=4, msg="Monday 08:03 to 10:03 in Berlin")
        # Mail that moves no response time (a second answer) costs one query: the dates are read, nothing written.
        self.assertEqual(queries(page(500, 25, 'sentitems', 9, 200)), 1)


@tagged('post_install', '-at_install')
class TestResponseTimesReport(InboxImportMixin, EpilotOutlookCommon):
    """ The report an inbox lead opens on Monday: volume per day, first response and resolution times per agent
    and per inbox; its rows follow the conversations' access rules. """

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        Calendar = cls.env['resource.calendar']
        cls.berlin = Calendar.create({
            'name': "Berlin office", 'tz': 'Europe/Berlin', 'attendance_ids': Calendar._get_default_attendance_ids()})
        cls.billing = cls.inbox_other
        cls.support = cls.inbox_member
        (cls.billing | cls.support).write({
            'resource_calendar_id': cls.berlin.id, 'first_response_target_hours': 4, 'resolution_target_hours': 16})
        cls.billing.member_user_ids = [Command.link(cls.agent_outsider.id)]   # agent_member: Support only
        cls.support_address = cls.env['epilot.outlook.email.address'].create({
            'email': 'support@contoso.com', 'connection_id': cls.connection.id, 'shared_inbox_id': cls.support.id})

    def setUp(self):
        super().setUp()
        # Billing, agent_outsider's: Friday evening, answered Monday 09:30 (1.5 h), closed Tuesday 12:00 (12 h).
        first = self.import_mail(conversation='r-1', date=FRIDAY_EVENING).conversation_id
        self.import_mail(folder='sentitems', conversation='r-1', date=MONDAY_0930)
        # Billing: Monday 08:00 (Berlin), answered 11:00 (3 h), still open.
        second = self.import_mail(conversation='r-2', date=datetime(2026, 3, 30, 6, 0)).conversation_id
        self.import_mail(folder='sentitems', conversation='r-2', date=datetime(2026, 3, 30, 9, 0))
        (first | second).user_id = self.agent_outsider
        with freeze_time('2026-03-31 10:00:00'):
            first.state = 'closed'
        # Support, agent_member's: Monday 10:00 (Berlin), never answered: late, overdue now.
        self.address, billing_address = self.support_address, self.address
        third = self.import_mail(conversation='r-3', date=datetime(2026, 3, 30, 8, 0)).conversation_id
        third.user_id = self.agent_member
        self.address = billing_address
        # The team wrote first, nobody answered: no row (no customer's e-mail to answer).
        self.import_mail(folder='sentitems', conversation='r-4', date=MONDAY_0930)
        self.conversations = first | second | third
        self.Report = self.env['epilot.shared.conversation.report']

    def test_figures_per_inbox_agent_and_day(self):
        self.env.flush_all()
        rows = {inbox: (count, answered, closed, late, overdue, round(first or 0, 4), round(resolution or 0, 4))
                for inbox, count, answered, closed, late, overdue, first, resolution in self.Report._read_group(
                    [('conversation_id', 'in', self.conversations.ids)], ['inbox_id'],
                    ['conversation_count:sum', 'answered_count:sum', 'closed_count:sum',
                     'first_response_late_count:sum', 'overdue_count:sum', 'first_response_hours:avg',
                     'resolution_hours:avg'])}
        self.assertEqual(rows, {
            self.billing: (2, 2, 1, 0, 1, 2.25, 12.0),   # the open one is past its resolution deadline now
            self.support: (1, 0, 0, 1, 1, 0.0, 0.0),
        })
        by_agent = dict(self.Report._read_group(
            [('conversation_id', 'in', self.conversations.ids)], ['user_id'], ['first_response_hours:avg']))
        self.assertAlmostEqual(by_agent[self.agent_outsider], 2.25, places=4)
        # Volume per day, in the user's time zone: Friday (Berlin) and Monday.
        by_day = self.Report.with_context(tz='Europe/Berlin').formatted_read_group(
            [('conversation_id', 'in', self.conversations.ids)], ['date:day'], ['__count'])
        self.assertEqual([(group['date:day'][1], group['__count']) for group in by_day],
                         [('27 Mar 2026', 1), ('30 Mar 2026', 2)])
        self.assertFalse(self.Report.search([('name', '=', "Order r-4"), ('inbox_id', '=', self.billing.id)]))

    def test_this_week_vs_last_filter(self):
        """ The report's default filter keeps this week and the last one, by the user's week. """
        action = self.env.ref('epilot_outlook.epilot_shared_conversation_report_action')
        self.assertEqual(action.context, "{'search_default_filter_this_and_last_week': 1}")
        domain = [('date', '>=', '=week_start -1w'), ('date', '<', '=week_start +1w'),
                  ('conversation_id', 'in', self.conversations.ids)]
        self.env['res.lang']._activate_lang('en_GB')   # weeks start on Monday
        Report = self.Report.with_context(lang='en_GB')
        self.env.user.lang = 'en_GB'
        for now, expected in (('2026-03-29 12:00:00', 1), ('2026-04-01 12:00:00', 3), ('2026-04-08 12:00:00', 2),
                              ('2026-04-15 12:00:00', 0)):
            with self.subTest(now=now), freeze_time(now):
                self.assertEqual(len(Report.search(domain)), expected)

    def test_rows_follow_the_conversation_rules(self):
        """ Each user finds exactly the report rows of the conversations they may read: an agent their inboxes',
        an editor all, anyone else nothing (or an access error). """
        self.env.flush_all()
        counted = self.env['epilot.shared.conversation'].search([('first_received_date', '!=', False)])
        self.assertEqual(set(self.Report.search([]).ids), set(counted.ids))
        expected = {
            'agent_member': self.conversations.filtered(lambda conversation: conversation.inbox_id == self.support),
            'agent_outsider': self.conversations.filtered(lambda conversation: conversation.inbox_id == self.billing),
            'editor': counted, 'admin': counted,
        }
        for role, user in self.users_by_role.items():
            with self.subTest(role=role):
                Conversation = self.env['epilot.shared.conversation'].with_user(user)
                Report = self.Report.with_user(user)
                if role not in expected:
                    with self.assertRaises(AccessError):
                        Report.search([])
                    continue
                readable = Conversation.search([('first_received_date', '!=', False)])
                self.assertEqual(set(Report.search([]).ids), set(readable.ids), "the conversations' own rule")
                self.assertEqual(set(Report.search([]).ids), set(expected[role].ids))
                groups = Report.formatted_read_group([], ['inbox_id'], ['__count'])
                self.assertEqual(sum(group['__count'] for group in groups), len(expected[role]))
        self.assertFalse(self.Report.with_user(self.agent_member).search([('inbox_id', '=', self.billing.id)]))
        self.assertEqual(
            self.Report.with_user(self.agent_member).browse(self.conversations[0].id)._filtered_access('read'),
            self.Report.browse(), "another inbox's row, browsed by id")



# Waits for a selector in the page (real rows, not the sample data an empty view shows), then says the test passed
# (browser_js), or fails naming it.
WAIT_FOR = """
const selector = %r;
let tries = 0;
const timer = setInterval(() => {
    if (document.querySelector(selector) && !document.querySelector('.o_view_sample_data')) {
        clearInterval(timer);
        console.log('test successful');
    } else if (++tries > 300) {
        clearInterval(timer);
        console.error('not shown: ' + selector);
    }
}, 50);
"""


@tagged('post_install', '-at_install')
class TestResponseTimesScreens(InboxImportMixin, HttpCase, EpilotOutlookCommon):
    """ In the browser, as an agent: the report's pivot, graph and list open from its menu's action on this week
    and last, and an overdue conversation is red in the conversations' list and marked in their kanban. """

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.inbox_other.write({'member_user_ids': [Command.link(cls.agent_member.id)],
                               'first_response_target_hours': 1})

    def test_report_views_and_overdue_list(self):
        received = fields.Datetime.now() - timedelta(days=4)   # last week or this one, a few business hours ago
        self.import_mail(conversation='s-1', date=received)     # unanswered: overdue
        self.import_mail(conversation='s-2', date=received)
        self.import_mail(folder='sentitems', conversation='s-2', date=received + timedelta(minutes=30))
        self.env.flush_all()
        action = '/odoo/action-epilot_outlook.epilot_shared_conversation_report_action'
        for view, selector in (('pivot', '.o_pivot table .o_pivot_cell_value'), ('graph', '.o_graph_renderer canvas'),
                               ('list', '.o_list_renderer .o_data_row')):
            with self.subTest(view=view):
                self.browser_js('%s?view_type=%s' % (action, view), WAIT_FOR % selector, login='eo_agent_member')
        self.browser_js('/odoo/action-epilot_outlook.epilot_shared_conversation_action',
                        WAIT_FOR % '.o_list_renderer .o_data_row.text-danger', login='eo_agent_member')
        self.browser_js('/odoo/action-epilot_outlook.epilot_shared_conversation_action?view_type=kanban',
                        WAIT_FOR % '.o_kanban_record .badge.text-bg-danger', login='eo_agent_member')


@tagged('post_install', '-at_install')
class TestResponseTimesSandbox(OutlookSendCase):
    """ Against the sandbox: a customer's e-mail synced by delta, the agent's reply sent from Odoo through Graph.
    The response counts when Graph sent it, not when it was queued, and its copy synced back from Sent Items
    changes nothing. The inbox works around the clock here (a calendar of 24-hour days in UTC), so business
    hours are the elapsed hours, whatever the day the test runs. """

    def test_reply_from_odoo_counts_when_graph_sent_it(self):
        self.inbox.sudo().resource_calendar_id = self.env['resource.calendar'].create({
            'name': "Around the clock", 'tz': 'UTC', 'attendance_ids': [Command.create({
                'name': "Day %d" % day, 'dayofweek': str(day), 'hour_from': 0, 'hour_to': 24,
                'day_period': 'morning'}) for day in range(7)]})
        conversation, _delivered = self.customer_writes()
        received = conversation.first_received_date
        self.assertTrue(received)
        self.assertFalse(conversation.first_response_date)

        # Queued (not sent at once, as Odoo would for a few recipients): the mail queue sends it.
        reply = conversation.with_user(self.agent).with_context(mail_notify_force_send=False).message_post(
            body=Markup('<p>Danke, erledigt.</p>'), message_type='comment', subtype_xmlid='mail.mt_comment',
            partner_ids=conversation.partner_id.ids)
        self.env.invalidate_all()
        self.assertFalse(self.sent())
        self.assertFalse(conversation.first_response_date, "queued, not sent: no response yet")
        self.run_mail_queue()
        self.assertEqual(len(self.sent()), 1, "the reply left through Graph")
        self.assertEqual(conversation.first_response_date, reply.date)
        self.assertAlmostEqual(conversation.first_response_hours,
                               (reply.date - received).total_seconds() / 3600, places=3)
        stored = conversation.read(['first_received_date', 'first_response_date', 'first_response_hours'])

        self.run_delta(self.address)   # the sent item comes back from Sent Items: the same e-mail, known
        self.assertEqual(conversation.read(['first_received_date', 'first_response_date', 'first_response_hours']),
                         stored)
        self.assertInSync(self.address)
