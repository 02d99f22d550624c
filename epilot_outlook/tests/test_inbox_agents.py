from datetime import datetime, timedelta

from odoo import fields
from odoo.exceptions import AccessError
from odoo.tests import Form, new_test_user, tagged

from odoo.addons.epilot_outlook.tests.common import EpilotOutlookCommon

from ..outlook_core import mapping

CUSTOMER = mapping.Address("Carla Customer", 'carla@fabrikam.com')
MAILBOX = 'billing@contoso.com'
TEAM = mapping.Address("Contoso Billing", MAILBOX)


class InboxImportMixin:
    """ E-mails imported through the real import (``epilot.outlook.message._outlook_import``), as a Graph page
    would be, into ``self.address``'s inbox. """

    _counter = 0

    def run_cron(self, cron):
        with self.enter_registry_test_mode():
            self.assertIs(cron.method_direct_trigger(), True, "the cron job logged an error")
        self.env.invalidate_all()

    def import_mail(self, folder='inbox', conversation='conv-1', subject="Invoice 42", body='<p>Hello</p>',
                    date=None, is_read=False, sender=CUSTOMER, attachments=()):
        InboxImportMixin._counter += 1
        number = InboxImportMixin._counter
        date = date or fields.Datetime.now() - timedelta(hours=1)
        message = mapping.OutlookItem(
            graph_id='AAMk-%s-%d' % (folder, number), folder=folder,
            internet_message_id='<%d.%s@test>' % (number, folder), conversation_id=conversation,
            subject=subject, from_=sender if folder == 'inbox' else TEAM,
            to=(TEAM,) if folder == 'inbox' else (CUSTOMER,), received_at=date, sent_at=date,
            is_read=is_read if folder == 'inbox' else True, body_html=body, attachments=list(attachments),
        )
        self.env['epilot.outlook.message']._outlook_import(self.address, [message])
        record = self.env['epilot.outlook.message'].search([('graph_id', '=', message.graph_id)])
        return record


@tagged('post_install', '-at_install')
class TestConversationState(InboxImportMixin, EpilotOutlookCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.inbox = cls.inbox_other   # fed by cls.address (billing@)
        cls.inbox.member_user_ids = [(4, cls.agent_member.id)]

    def test_unread_follows_inbound_mail_and_reading(self):
        first = self.import_mail()
        conversation = first.conversation_id
        self.assertEqual((conversation.unread_count, conversation.is_unread, conversation.state), (1, True, 'new'))
        self.import_mail(folder='sentitems', date=fields.Datetime.now() - timedelta(minutes=30))
        self.assertEqual(conversation.unread_count, 1, "sent mail is never unread")
        self.assertEqual(conversation.state, 'waiting', "the team answered: waiting for the customer")

        conversation.with_user(self.agent_member).action_outlook_mark_read()
        self.assertEqual((conversation.unread_count, conversation.is_unread), (0, False))
        self.assertTrue(first.is_read)
        self.assertTrue(first.read_push_pending, "Outlook is told later, by the cron")

        self.import_mail(date=fields.Datetime.now() - timedelta(minutes=5))
        self.assertEqual((conversation.unread_count, conversation.state), (1, 'open'),
                         "the customer's answer reopens a waiting conversation")
        conversation.state = 'closed'
        self.import_mail(date=fields.Datetime.now())
        self.assertEqual((conversation.unread_count, conversation.state), (2, 'open'))

        conversation.with_user(self.agent_member).action_outlook_mark_read()
        conversation.with_user(self.agent_member).action_outlook_mark_unread()
        self.assertEqual(conversation.unread_count, 1, "the last received e-mail is unread again")

    def test_backfilled_older_mail_moves_nothing(self):
        recent = self.import_mail(date=fields.Datetime.now() - timedelta(hours=1))
        conversation = recent.conversation_id
        conversation.state = 'closed'
        self.import_mail(date=fields.Datetime.now() - timedelta(days=3), is_read=True)
        self.assertEqual(conversation.state, 'closed', "older mail imported late does not reopen it")
        self.assertEqual(conversation.email_count, 2)

    def test_read_in_outlook_comes_back_through_delta_unless_odoo_is_newer(self):
        record = self.import_mail()
        conversation = record.conversation_id
        Message = self.env['epilot.outlook.message']
        Message._outlook_apply_delta(self.address, [mapping.DeltaChange(graph_id=record.graph_id, is_read=True)])
        self.assertFalse(conversation.is_unread, "read in Outlook: read in Odoo")
        Message._outlook_apply_delta(self.address, [mapping.DeltaChange(graph_id=record.graph_id, is_read=False)])
        self.assertTrue(conversation.is_unread)

        conversation.action_outlook_mark_read()
        Message._outlook_apply_delta(self.address, [mapping.DeltaChange(graph_id=record.graph_id, is_read=False)])
        self.assertFalse(conversation.is_unread, "a stale delta does not undo a read Outlook was not told of yet")

    def test_quoted_history_folds(self):
        # What Outlook puts under a reply: the separator div, then the earlier e-mail.
        body = ('<div>Thanks, that works.</div><hr style="display:inline-block;width:98%%">'
                '<div id="divRplyFwdMsg"><b>From:</b> Contoso Billing<br><b>Sent:</b> Monday</div>'
                '<div>Earlier e-mail text</div>')
        message = self.import_mail(body=body).mail_message_id
        self.assertIn('data-o-mail-quote', str(message.body), "the chatter folds what Odoo tags as a quote")
        self.assertIn('Thanks, that works.', str(message.body))
        self.assertNotIn('data-o-mail-quote', str(message.body).split('Thanks, that works.')[0])

    def test_taking_a_new_conversation_opens_it(self):
        conversation = self.import_mail().conversation_id
        conversation.with_user(self.agent_member).action_outlook_assign_to_me()
        self.assertEqual((conversation.user_id, conversation.state), (self.agent_member, 'open'))
        conversation.state = 'waiting'
        conversation.inbox_id.member_user_ids = [(4, self.agent_outsider.id)]
        conversation.with_user(self.agent_member).user_id = self.agent_outsider
        self.assertEqual(conversation.state, 'waiting', "only a new conversation opens when taken")

    def test_list_actions_on_several_conversations(self):
        conversations = self.import_mail(conversation='a').conversation_id | self.import_mail(
            conversation='b').conversation_id
        action = self.env.ref('epilot_outlook.epilot_shared_conversation_action_mark_read')
        action.with_user(self.agent_member).with_context(
            active_model=conversations._name, active_ids=conversations.ids).run()
        self.assertEqual(conversations.mapped('is_unread'), [False, False])
        with self.assertRaises(AccessError):
            action.with_user(self.agent_outsider).with_context(
                active_model=conversations._name, active_ids=conversations.ids).run()

    def test_filters_and_search(self):
        unread = self.import_mail(conversation='c-unread', subject="Refund please",
                                  body='<p>my parcel number is ZX-9981</p>').conversation_id
        read = self.import_mail(conversation='c-read', subject="Thanks", is_read=True,
                                sender=mapping.Address("Bob", 'bob@example.com')).conversation_id
        Conversation = self.env['epilot.shared.conversation'].with_user(self.agent_member)
        mine = [('inbox_id', '=', self.inbox.id)]
        self.assertEqual(Conversation.search(mine + [('is_unread', '=', True)]), unread)
        self.assertEqual(Conversation.search(mine + [('body_search', 'ilike', 'zx-9981')]), unread)
        self.assertEqual(Conversation.search(mine + [('body_search', 'not ilike', 'zx-9981')]), read)
        self.assertEqual(Conversation.search(mine + [('body_search', 'ilike', '100%')]), Conversation,
                         "LIKE wildcards in the text are literal")
        self.assertEqual(Conversation.search(mine + [('correspondent_email', 'ilike', 'bob@')]), read)
        read.user_id = self.agent_member
        groups = Conversation.formatted_read_group(mine, ['user_id'], ['__count'])
        self.assertEqual({(group['user_id'] or [False])[0]: group['__count'] for group in groups},
                         {self.agent_member.id: 1, False: 1})

    def test_menu_per_inbox_for_members_with_unread_counts(self):
        self.import_mail()
        self.assertTrue(self.inbox.menu_id and self.inbox_member.menu_id)
        self.assertEqual(self.inbox.menu_id.parent_id, self.env.ref('epilot_outlook.epilot_shared_inbox_menu_inboxes'))
        Menu = self.env['ir.ui.menu']

        def visible(user):
            menus = Menu.with_user(user).load_menus(False)
            return {menu_id for menu_id in menus if isinstance(menu_id, int)}

        self.assertIn(self.inbox.menu_id.id, visible(self.agent_member))
        self.assertNotIn(self.inbox.menu_id.id, visible(self.agent_outsider))
        self.assertNotIn(self.inbox.menu_id.id, visible(self.editor), "editors see every inbox, not every menu")
        self.assertEqual(self.inbox.with_user(self.agent_member).get_inbox_menu_counters(),
                         {self.inbox.menu_id.id: 1, self.inbox_member.menu_id.id: 0})
        self.assertEqual(self.inbox.with_user(self.agent_outsider).get_inbox_menu_counters(), {})

        self.inbox.member_user_ids = [(4, self.agent_outsider.id)]
        self.assertIn(self.inbox.menu_id.id, visible(self.agent_outsider), "membership shows the menu at once")
        self.inbox.name = "Accounts"
        self.assertEqual(self.inbox.menu_id.name, "Accounts")
        self.assertEqual(self.inbox.menu_id.action.domain, "[('inbox_id', '=', %d)]" % self.inbox.id)
        self.assertEqual(self.inbox.menu_id.get_external_id()[self.inbox.menu_id.id],
                         'epilot_outlook.shared_inbox_%d_menu' % self.inbox.id, "uninstalling the module removes it")
        menu = self.inbox_member.menu_id
        self.inbox_member.unlink()
        self.assertFalse(menu.exists())

    def test_a_member_of_no_inbox_gets_no_empty_inboxes_menu(self):
        """ issue 19: "an admin who is in no inbox gets an empty Inboxes menu" """
        inboxes = self.env.ref('epilot_outlook.epilot_shared_inbox_menu_inboxes')
        Menu = self.env['ir.ui.menu']

        def visible(user):
            self.env.registry.clear_cache()
            return {menu_id for menu_id in Menu.with_user(user).load_menus(False) if isinstance(menu_id, int)}

        self.assertNotIn(inboxes.id, visible(self.editor))
        self.assertNotIn(inboxes.id, visible(self.admin))
        self.assertIn(self.env.ref('epilot_outlook.epilot_shared_conversation_menu').id, visible(self.editor),
                      "Conversations stays, and says what to do next")
        self.assertIn(inboxes.id, visible(self.agent_member))
        self.inbox.member_user_ids = [(4, self.editor.id)]
        self.assertIn(inboxes.id, visible(self.editor))

    def test_members_land_on_their_conversations_after_login(self):
        """ issue 19: "agents land on Discuss after login" """
        conversations = self.env.ref('epilot_outlook.epilot_shared_conversation_action')
        discuss = self.env.ref('mail.action_discuss')
        newcomer = new_test_user(self.env, 'eo_newcomer', groups='epilot_outlook.group_agent')
        chooser = new_test_user(self.env, 'eo_chooser', groups='epilot_outlook.group_agent')
        chooser.action_id = discuss.id
        self.assertFalse(newcomer.action_id)
        self.inbox.member_user_ids = [(4, newcomer.id), (4, chooser.id)]
        self.assertEqual(newcomer.action_id.id, conversations.id)
        self.assertEqual(chooser.action_id.id, discuss.id, "a home action the user chose is kept")
        made_with = new_test_user(self.env, 'eo_founder', groups='epilot_outlook.group_agent')
        self.env['epilot.shared.inbox'].create({'name': "Sales", 'member_user_ids': [(4, made_with.id)]})
        self.assertEqual(made_with.action_id.id, conversations.id)

    def test_a_contact_made_later_is_linked_by_address(self):
        conversation = self.import_mail().conversation_id
        self.assertFalse(conversation.partner_id, "this inbox creates no contacts")
        partner = self.env['res.partner'].create({'name': "Carla", 'email': 'CARLA@fabrikam.com'})
        self.assertEqual(conversation.partner_id, partner)
        self.env['res.partner'].create({'name': "Carla again", 'email': 'carla@fabrikam.com'})
        self.assertEqual(conversation.partner_id, partner, "a linked conversation keeps its contact")

    def test_inbox_form_has_the_agent_settings(self):
        form = Form(self.inbox.with_user(self.editor))
        form.create_partners = True
        form.retention_days = 90
        form.save()
        self.assertEqual((self.inbox.create_partners, self.inbox.retention_days), (True, 90))


@tagged('post_install', '-at_install')
class TestRetentionAndErasure(InboxImportMixin, EpilotOutlookCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.inbox = cls.inbox_other

    def test_retention_erases_old_mail_keeps_tombstones_and_is_off_by_default(self):
        self.assertEqual(self.inbox.retention_days, 0)
        old = self.import_mail(conversation='old', date=datetime(2020, 1, 1), attachments=[
            mapping.Attachment('att-1', 'scan.pdf', 'application/pdf', b'%PDF-1.4 old')])
        recent = self.import_mail(conversation='recent')
        mixed_old = self.import_mail(conversation='recent', date=datetime(2020, 1, 2))
        cron = self.env.ref('epilot_outlook.ir_cron_outlook_retention')
        self.run_cron(cron)
        self.assertTrue(old.mail_message_id, "off by default: nothing is deleted")

        self.inbox.retention_days = 30
        old_message, old_conversation = old.mail_message_id, old.conversation_id
        attachment = old_message.attachment_ids
        self.assertTrue(attachment)
        self.run_cron(cron)
        self.assertFalse(old_message.exists() or attachment.exists() or old_conversation.exists())
        self.assertEqual((old.erased, old.subject, old.internet_message_id), (True, False, False))
        self.assertEqual(old.graph_id, 'AAMk-inbox-%d' % (InboxImportMixin._counter - 2), "the key is kept")
        self.assertTrue(mixed_old.erased and recent.mail_message_id)
        self.assertEqual(recent.conversation_id.email_count, 1)

        # The same item read again by a backfill or reconciliation: known, not imported again.
        again = mapping.OutlookItem(graph_id=old.graph_id, folder='inbox', subject="Invoice 42", from_=CUSTOMER,
                                received_at=datetime(2020, 1, 1), body_html='<p>Hello</p>', is_read=True)
        self.assertEqual(self.env['epilot.outlook.message']._outlook_import(self.address, [again]), 0)
        self.env['epilot.outlook.message']._outlook_apply_delta(self.address, [
            mapping.DeltaChange(graph_id=old.graph_id, subject="Invoice 42", is_read=False)])
        self.assertEqual((old.subject, old.mail_message_id.id), (False, False), "a tombstone takes no facts")

    def test_erasure_of_a_correspondent_says_how_much_and_erases_it(self):
        theirs = self.import_mail(conversation='carla', attachments=[
            mapping.Attachment('att-2', 'id.png', 'image/png', b'\x89PNG fake')])
        reply = self.import_mail(conversation='carla', folder='sentitems')
        other = self.import_mail(conversation='bob', sender=mapping.Address("Bob", 'bob@example.com'))
        # Carla also wrote in Bob's conversation (cc'd, answering): that e-mail is hers too.
        cameo = self.import_mail(conversation='bob')
        conversation = theirs.conversation_id

        Wizard = self.env['epilot.outlook.erase.wizard']
        with self.assertRaises(AccessError):
            Wizard.with_user(self.agent_member).create({'email': CUSTOMER.address})
        wizard = Wizard.with_user(self.editor).create({'email': 'Carla@Fabrikam.com'})
        self.assertEqual((wizard.conversation_count, wizard.message_count, wizard.attachment_count), (1, 3, 1))
        self.assertIn("1 conversations, 3 e-mails and 1 attachments", wizard.summary)

        wizard.action_outlook_erase()
        self.assertFalse(conversation.exists())
        self.assertTrue(all((theirs | reply | cameo).mapped('erased')))
        self.assertFalse(other.erased)
        self.assertEqual(other.conversation_id.email_count, 1)
        partner = self.env['res.partner'].search([('email_normalized', '=', CUSTOMER.address)])
        self.assertFalse(partner, "the inbox does not create contacts: none was made, none erased")
