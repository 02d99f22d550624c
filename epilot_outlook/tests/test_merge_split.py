from datetime import timedelta

import psycopg2.errors

from odoo import SUPERUSER_ID, Command, api, fields
from odoo.exceptions import AccessError, UserError
from odoo.tests import HttpCase, TransactionCase, tagged
from odoo.tools import mute_logger

from ..outlook_core import mapping
from .common import EpilotOutlookCommon
from .test_inbox_agents import CUSTOMER, MAILBOX, InboxImportMixin

CONVERSATION = 'epilot.shared.conversation'


class MergeSplitMixin(InboxImportMixin):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.inbox = cls.inbox_other   # fed by cls.address (billing@)
        cls.inbox.member_user_ids = [Command.link(cls.agent_member.id)]

    def ago(self, hours):
        return fields.Datetime.now() - timedelta(hours=hours)

    def merge(self, conversations, user, target=None):
        """ Merge through the wizard, as the list's Actions menu opens it, as ``user``. """
        wizard = self.env['epilot.conversation.merge.wizard'].with_user(user).with_context(
            active_model=CONVERSATION, active_ids=conversations.ids).create({})
        if target:
            wizard.target_id = target
        action = wizard.action_outlook_merge()
        self.env.invalidate_all()
        return self.env[CONVERSATION].browse(action['res_id'])

    def split(self, conversation, message, user, with_later=False):
        """ Split through the wizard, as the chatter's Split Off opens it, as ``user``. """
        wizard = self.env['epilot.conversation.split.wizard'].with_user(user).with_context(
            default_conversation_id=conversation.id, default_message_id=message.id).create({'with_later': with_later})
        action = wizard.action_outlook_split()
        self.env.invalidate_all()
        return self.env[CONVERSATION].browse(action['res_id'])

    def chatter_texts(self, conversation):
        return [str(message.body) for message in conversation.message_ids if message.message_type == 'notification']


@tagged('post_install', '-at_install')
class TestMergeConversations(MergeSplitMixin, EpilotOutlookCommon):

    def test_merge_moves_mail_notes_files_followers_and_activities(self):
        """ Everything of the merged conversation moves to the oldest one (the default target), each follower once;
        the merged one is archived, pointing to it; both chatters say so; the figures follow. """
        first = self.import_mail(conversation='conv-a', subject="Invoice 42", date=self.ago(5), is_read=True)
        second = self.import_mail(conversation='conv-b', subject="Invoice 42 again", date=self.ago(2), attachments=[
            mapping.Attachment('att-1', 'scan.txt', 'text/plain', b'scan')])
        older, newer = first.conversation_id, second.conversation_id
        note = newer.with_user(self.agent_member).message_post(
            body="Same customer as Invoice 42", message_type='comment', subtype_xmlid='mail.mt_note')
        customer = self.env['res.partner'].create({'name': "Carla", 'email': 'carla@fabrikam.com'})
        older.message_subscribe(partner_ids=customer.ids)
        newer.message_subscribe(partner_ids=(customer | self.agent_member.partner_id).ids)
        activity = self.env['mail.activity'].create({
            'res_model_id': self.env['ir.model']._get_id(CONVERSATION), 'res_id': newer.id,
            'activity_type_id': self.env.ref('mail.mail_activity_data_todo').id, 'user_id': self.agent_member.id,
            'summary': "Call back"})
        newer.user_id = self.agent_member

        target = self.merge(older | newer, self.agent_member)

        self.assertEqual(target, older, "the oldest conversation stays by default")
        self.assertEqual((newer.active, newer.merged_into_id), (False, older))
        self.assertEqual(second.conversation_id, older, "the sync record moved")
        self.assertEqual(second.mail_message_id.res_id, older.id, "the e-mail moved")
        self.assertEqual(note.res_id, older.id, "the note moved")
        self.assertEqual(second.mail_message_id.attachment_ids.res_id, older.id, "its file moved")
        self.assertEqual(activity.res_id, older.id)
        followers = self.env['mail.followers'].search([('res_model', '=', CONVERSATION), ('res_id', '=', older.id)])
        self.assertEqual(sorted(followers.partner_id.ids), sorted((customer | self.agent_member.partner_id).ids),
                         "each follower once")
        self.assertFalse(self.env['mail.followers'].search([('res_model', '=', CONVERSATION),
                                                             ('res_id', '=', newer.id)]))
        self.assertEqual((older.email_count, older.unread_count, older.user_id), (2, 1, self.agent_member),
                         "the figures are the merged ones; the assignee of the merged one is taken where none was")
        self.assertEqual((newer.email_count, newer.unread_count), (0, 0))
        self.env.flush_all()
        report = self.env['epilot.shared.conversation.report'].search([('id', 'in', (older | newer).ids)])
        self.assertEqual(report.ids, older.ids, "the response-time report counts the merged mail once")
        self.assertIn(newer, self.env[CONVERSATION].with_context(active_test=False).search(
            [('inbox_id', '=', self.inbox.id), ('active', '=', False)]))
        self.assertNotIn(newer, self.env[CONVERSATION].search([('inbox_id', '=', self.inbox.id)]),
                         "the lists show the conversation that stays only")
        [log] = self.chatter_texts(older)
        self.assertIn('Merged', log)
        self.assertIn('data-oe-id="%d"' % newer.id, log)
        self.assertEqual(older.message_ids.filtered(lambda message: message.message_type == 'notification').author_id,
                         self.agent_member.partner_id)
        [log] = self.chatter_texts(newer)
        self.assertIn('Merged into', log)
        self.assertIn('data-oe-id="%d"' % older.id, log)

    def test_new_mail_of_a_merged_outlook_conversation_goes_to_the_one_it_was_merged_into(self):
        """ The Outlook ids keep routing: new mail of a merged conversation's Outlook conversation, and of a thread
        key without one, joins the conversation it was merged into, also after that one is merged on. """
        keep = self.import_mail(conversation='conv-keep', date=self.ago(6)).conversation_id
        merged = self.import_mail(conversation='conv-merged', date=self.ago(5)).conversation_id
        keyed = self.import_mail(conversation='', subject="No conversation id", date=self.ago(4)).conversation_id
        self.assertTrue(keyed.thread_key)
        self.merge(keep | merged | keyed, self.agent_member)
        count = self.env[CONVERSATION].with_context(active_test=False).search_count([])

        self.assertEqual(self.import_mail(conversation='conv-merged', date=self.ago(1)).conversation_id, keep)
        self.assertEqual(self.import_mail(conversation='', subject="RE: No conversation id",
                                          date=self.ago(1)).conversation_id, keep)
        self.assertEqual(self.env[CONVERSATION].with_context(active_test=False).search_count([]), count,
                         "no conversation was opened for them")
        self.assertEqual((keep.email_count, keep.state), (5, 'new'))

        # Merged on: the redirects follow.
        later = self.import_mail(conversation='conv-later', date=self.ago(7)).conversation_id
        self.merge(keep | later, self.agent_member)
        self.assertEqual(merged.merged_into_id, later)
        self.assertEqual(self.import_mail(conversation='conv-merged').conversation_id, later)
        self.assertEqual(self.import_mail(conversation='conv-keep').conversation_id, later)

    def test_routing_through_a_merged_conversation_costs_no_query(self):
        """ The import's grouping reads where a merged conversation points in the searches it makes anyway: a page
        of a merged conversation's mail takes as many queries as one of a live conversation's. """
        keep = self.import_mail(conversation='conv-keep').conversation_id
        merged = self.import_mail(conversation='conv-merged').conversation_id
        self.merge(keep | merged, self.agent_member)
        Conversation = self.env[CONVERSATION]
        counts = {}
        for conversation_id in ('conv-keep', 'conv-merged'):
            item = mapping.OutlookItem(graph_id='AAMk-%s' % conversation_id, folder='inbox',
                                       conversation_id=conversation_id, subject="Again", from_=CUSTOMER)
            self.env.invalidate_all()
            before = self.cr.sql_log_count
            result, created = Conversation._outlook_for_messages(self.inbox, MAILBOX, [item], {})
            counts[conversation_id] = self.cr.sql_log_count - before
            self.assertEqual((result[item.graph_id], created), (keep, Conversation))
        self.assertEqual(counts['conv-merged'], counts['conv-keep'], counts)

    def test_merge_is_for_members_within_one_inbox(self):
        """ Non-members are refused by the model itself, whatever gave them the wizard; conversations of two
        inboxes are merged by nobody; a merged conversation stays merged. """
        one = self.import_mail(conversation='conv-1').conversation_id
        two = self.import_mail(conversation='conv-2').conversation_id
        for user in (self.agent_outsider, self.internal):
            with self.subTest(user=user.login), self.assertRaises(AccessError):
                (one | two).with_user(user)._outlook_merge_into(one)
        wizard = self.env['epilot.conversation.merge.wizard'].create({'conversation_ids': [Command.set((one | two).ids)]})
        with self.assertRaises(AccessError):
            wizard.with_user(self.agent_outsider).action_outlook_merge()
        elsewhere = self.env[CONVERSATION].create({'inbox_id': self.inbox_member.id, 'name': "Elsewhere"})
        with self.assertRaises(UserError):
            (one | elsewhere).with_user(self.editor)._outlook_merge_into(one)
        self.assertTrue(one.active and two.active and elsewhere.active)

        self.merge(one | two, self.editor)
        three = self.import_mail(conversation='conv-3').conversation_id
        with self.assertRaises(UserError):
            (two | three).with_user(self.agent_member)._outlook_merge_into(three)
        for user in (self.agent_member, self.editor):
            with self.subTest(user=user.login), self.assertRaises(UserError):
                two.with_user(user).write({'active': True})
        self.assertFalse(two.active)

    def test_a_merged_conversation_takes_no_more_posts(self):
        """ Opened from an old link, a merged conversation refuses a reply or a note, also through the chatter
        (which posts as the superuser): they belong in the conversation it was merged into. """
        one = self.import_mail(conversation='conv-1').conversation_id
        two = self.import_mail(conversation='conv-2').conversation_id
        self.merge(one | two, self.agent_member)
        for conversation in (two.with_user(self.agent_member), two.with_user(self.agent_member).sudo()):
            with self.subTest(su=conversation.env.su), self.assertRaises(UserError):
                conversation.message_post(body="Called back", message_type='comment', subtype_xmlid='mail.mt_note')
        self.assertTrue(one.with_user(self.agent_member).message_post(
            body="Called back", message_type='comment', subtype_xmlid='mail.mt_note'))

    def test_moved_mail_stays_read_only_to_agents(self):
        """ The model moves the synced mail as the superuser; the agent who merged may not change it after. """
        one = self.import_mail(conversation='conv-1').conversation_id
        record = self.import_mail(conversation='conv-2')
        self.merge(one | record.conversation_id, self.agent_member)
        with self.assertRaises(AccessError):
            record.mail_message_id.with_user(self.agent_member).write({'body': 'Forged'})
        with self.assertRaises(AccessError):
            record.mail_message_id.with_user(self.agent_member).write({'res_id': record.conversation_id.id})

    def test_deleting_the_conversation_deletes_those_merged_into_it(self):
        """ Erasure and retention delete a conversation: the ones merged into it go with it, and their Outlook ids
        route nowhere any more (new mail opens a new conversation). """
        one = self.import_mail(conversation='conv-1').conversation_id
        two = self.import_mail(conversation='conv-2').conversation_id
        self.merge(one | two, self.agent_member)
        one.unlink()
        self.assertFalse(two.exists())
        fresh = self.import_mail(conversation='conv-2').conversation_id
        self.assertTrue(fresh.active)
        self.assertNotIn(fresh, one | two)


@tagged('post_install', '-at_install')
class TestSplitConversation(MergeSplitMixin, EpilotOutlookCommon):

    def test_split_an_email_and_the_later_ones_off(self):
        """ The e-mail and the later ones move with their files to a new conversation of the same inbox, whose
        correspondent is their sender; the followers follow both; both chatters say so. New mail of the Outlook
        conversation stays with the original (documented choice). """
        first = self.import_mail(conversation='conv-1', subject="Meter reading", date=self.ago(5), is_read=True)
        other = mapping.Address("Bob Other", 'bob@example.com')
        second = self.import_mail(conversation='conv-1', subject="New address", date=self.ago(3), sender=other,
                                  attachments=[mapping.Attachment('att-2', 'lease.txt', 'text/plain', b'lease')])
        third = self.import_mail(conversation='conv-1', subject="RE: New address", date=self.ago(2), sender=other)
        original = first.conversation_id
        self.assertEqual(original.email_count, 3)
        original.message_subscribe(partner_ids=self.agent_member.partner_id.ids)

        new = self.split(original, second.mail_message_id, self.agent_member, with_later=True)

        self.assertNotEqual(new, original)
        self.assertEqual((new.inbox_id, new.name, new.correspondent_email, new.correspondent_name),
                         (self.inbox, "New address", 'bob@example.com', "Bob Other"))
        self.assertFalse(new.graph_conversation_id or new.thread_key, "Outlook's ids stay with the original")
        self.assertEqual((second | third).conversation_id, new)
        self.assertEqual(set((second | third).mail_message_id.mapped('res_id')), {new.id})
        self.assertEqual(second.mail_message_id.attachment_ids.res_id, new.id)
        self.assertEqual((original.email_count, new.email_count, new.unread_count), (1, 2, 2))
        self.assertEqual(original.unread_count, 0)
        self.assertIn(self.agent_member.partner_id, new.message_partner_ids)
        self.assertIn('data-oe-id="%d"' % new.id, self.chatter_texts(original)[0])
        self.assertIn('data-oe-id="%d"' % original.id, self.chatter_texts(new)[0])

        self.assertEqual(self.import_mail(conversation='conv-1').conversation_id, original,
                         "new mail of the Outlook conversation goes to the original, as in Outlook")

    def test_split_one_email(self):
        first = self.import_mail(conversation='conv-1', date=self.ago(5))
        second = self.import_mail(conversation='conv-1', date=self.ago(3))
        third = self.import_mail(conversation='conv-1', date=self.ago(2))
        new = self.split(first.conversation_id, second.mail_message_id, self.agent_member)
        self.assertEqual((first | second | third).conversation_id, first.conversation_id | new)
        self.assertEqual((second.conversation_id, third.conversation_id), (new, first.conversation_id))

    def test_split_refuses_what_is_not_an_email_of_it_and_the_last_email(self):
        first = self.import_mail(conversation='conv-1', date=self.ago(5))
        second = self.import_mail(conversation='conv-1', date=self.ago(3))
        conversation = first.conversation_id
        note = conversation.message_post(body="Called back", message_type='comment', subtype_xmlid='mail.mt_note')
        elsewhere = self.import_mail(conversation='conv-2')
        for message in (note, elsewhere.mail_message_id):
            with self.subTest(message=message.id), self.assertRaises(UserError):
                self.split(conversation, message, self.agent_member)
        with self.assertRaises(UserError):
            self.split(conversation, first.mail_message_id, self.agent_member, with_later=True)
        self.assertEqual((first | second).conversation_id, conversation)

    def test_split_is_for_members(self):
        first = self.import_mail(conversation='conv-1', date=self.ago(5))
        second = self.import_mail(conversation='conv-1', date=self.ago(3))
        for user in (self.agent_outsider, self.internal):
            with self.subTest(user=user.login), self.assertRaises(AccessError):
                first.conversation_id.with_user(user)._outlook_split(second.mail_message_id)
        wizard = self.env['epilot.conversation.split.wizard'].create({
            'conversation_id': first.conversation_id.id, 'message_id': second.mail_message_id.id})
        with self.assertRaises(AccessError):
            wizard.with_user(self.agent_outsider).action_outlook_split()
        self.assertEqual(second.conversation_id, first.conversation_id)


@tagged('post_install', '-at_install')
class TestMergeSplitTour(MergeSplitMixin, HttpCase, EpilotOutlookCommon):

    @mute_logger('odoo.http')
    def test_agent_merges_and_splits_in_the_browser(self):
        """ In a browser: an agent merges two conversations from the list's Actions menu, then splits an e-mail
        off from the chatter; each chatter says so. """
        first = self.import_mail(conversation='tour-a', subject="Tour: broken meter", date=self.ago(5), is_read=True)
        second = self.import_mail(conversation='tour-b', subject="Tour: meter still broken", date=self.ago(4),
                                  is_read=True, body='<p>Still broken</p>')
        third = self.import_mail(conversation='tour-c', subject="Tour: unrelated invoice", date=self.ago(3),
                                 is_read=True, body='<p>About my invoice</p>')
        kept, merged = first.conversation_id, second.conversation_id | third.conversation_id
        self.start_tour('/odoo/action-epilot_outlook.epilot_shared_conversation_action', 'epilot_outlook_merge_split',
                        login=self.agent_member.login)
        self.assertEqual(merged.merged_into_id, kept)
        self.assertEqual(merged.mapped('active'), [False, False])
        self.assertEqual(second.conversation_id, kept)
        split = third.conversation_id
        self.assertNotIn(split, kept | merged)
        self.assertEqual((split.name, split.email_count, kept.email_count), ("Tour: unrelated invoice", 1, 2))


@tagged('post_install', '-at_install')
class TestMergeAgainstImport(TransactionCase):
    """ A merge and an import of the merged conversation's mail in two real transactions (a request and a sync
    cron worker): whichever commits second fails on the conversation's row and is retried (the sync retries such
    conflicts), so no e-mail lands in a conversation merged meanwhile and no merge leaves one behind.
    ``TransactionCase`` does not put the registry in test mode: what these commit is deleted in a cleanup. """

    def setUp(self):
        super().setUp()
        self.addCleanup(self._delete_committed)
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            company = env['res.company'].create({'name': "Merge Workers"})
            connection = env['epilot.outlook.connection'].create({'company_id': company.id})
            address = env['epilot.outlook.email.address'].create({
                'email': 'workers@contoso.com', 'connection_id': connection.id})
            address.shared_inbox_id = env['epilot.shared.inbox'].create({
                'name': "Workers", 'email': 'workers@contoso.com', 'company_id': company.id})
            self.ids = {'company': company.id, 'connection': connection.id, 'address': address.id,
                        'inbox': address.shared_inbox_id.id}
            self._import(env, 'conv-keep', 1)
            self._import(env, 'conv-merged', 2)

    def _env(self, cr):
        return api.Environment(cr, SUPERUSER_ID, {})

    def _import(self, env, conversation, number):
        item = mapping.OutlookItem(
            graph_id='AAMk-workers-%d' % number, folder='inbox', internet_message_id='<%d.workers@test>' % number,
            conversation_id=conversation, subject="Meter %d" % number,
            from_=mapping.Address("Carla", 'carla@fabrikam.com'), to=(mapping.Address("", 'workers@contoso.com'),),
            received_at=fields.Datetime.now() - timedelta(hours=10 - number), body_html='<p>Hello</p>')
        address = env['epilot.outlook.email.address'].browse(self.ids['address'])
        env['epilot.outlook.message']._outlook_import(address, [item])
        return env['epilot.outlook.message'].search([('graph_id', '=', item.graph_id)])

    def _conversations(self, env):
        Conversation = env[CONVERSATION].with_context(active_test=False)
        return {conversation.graph_conversation_id: conversation
                for conversation in Conversation.search([('inbox_id', '=', self.ids['inbox'])])}

    def _merge(self, env):
        conversations = self._conversations(env)
        (conversations['conv-keep'] | conversations['conv-merged'])._outlook_merge_into(conversations['conv-keep'])

    def _delete_committed(self):
        with self.registry.cursor() as cr:
            env = self._env(cr)
            if not getattr(self, 'ids', None):
                return
            conversations = env[CONVERSATION].with_context(active_test=False).search(
                [('inbox_id', '=', self.ids['inbox'])])
            env['epilot.outlook.message'].search([('inbox_id', '=', self.ids['inbox'])]).unlink()
            conversations.unlink()
            env['epilot.outlook.email.address'].browse(self.ids['address']).unlink()
            env['epilot.outlook.connection'].browse(self.ids['connection']).unlink()
            env['epilot.shared.inbox'].browse(self.ids['inbox']).unlink()
            env['res.company'].browse(self.ids['company']).unlink()

    def assert_fails_after(self, late, early):
        """ ``late(env)``, in a transaction whose snapshot was taken before ``early(env)`` committed, fails on a
        conversation's row (REPEATABLE READ), and does nothing. """
        with self.registry.cursor() as late_cr:
            late_env = self._env(late_cr)
            self._conversations(late_env)   # the snapshot
            with self.registry.cursor() as early_cr:
                early(self._env(early_cr))
            with self.assertRaises(psycopg2.errors.SerializationFailure):
                late(late_env)
            late_cr.rollback()

    @mute_logger('odoo.sql_db')
    def test_an_import_that_began_before_the_merge_fails_and_its_retry_goes_to_the_target(self):
        self.assert_fails_after(lambda env: self._import(env, 'conv-merged', 3), self._merge)
        with self.registry.cursor() as cr:
            env = self._env(cr)
            conversations = self._conversations(env)
            self.assertEqual(self._import(env, 'conv-merged', 3).conversation_id, conversations['conv-keep'],
                             "the retry follows the merge")
            self.assertEqual(conversations['conv-keep'].email_count, 3)

    @mute_logger('odoo.sql_db')
    def test_a_merge_that_began_before_an_import_fails_and_its_retry_takes_the_new_mail(self):
        self.assert_fails_after(self._merge, lambda env: self._import(env, 'conv-merged', 3))
        with self.registry.cursor() as cr:
            env = self._env(cr)
            self._merge(env)
            conversations = self._conversations(env)
            self.assertEqual(conversations['conv-keep'].email_count, 3)
            self.assertEqual(conversations['conv-merged'].email_count, 0, "no e-mail left behind")
