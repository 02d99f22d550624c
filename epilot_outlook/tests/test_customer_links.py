""" Who the customer is, also when the inbox creates no contacts, and the agent's way to make them one (issue 19:
"Customers are anonymous by default"; item 8, "a contact always"). The bridges to CRM and Project are tested in
their own modules. """
from odoo.exceptions import AccessError
from odoo.tests import tagged

from odoo.addons.epilot_outlook.tests.common import EpilotOutlookCommon
from odoo.addons.epilot_outlook.tests.test_inbox_agents import CUSTOMER, InboxImportMixin


@tagged('post_install', '-at_install')
class TestCustomerContact(InboxImportMixin, EpilotOutlookCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.inbox = cls.inbox_other   # fed by cls.address (billing@); creates no contacts
        cls.inbox.member_user_ids = [(4, cls.agent_member.id)]

    def test_an_unknown_customer_shows_their_name_and_becomes_a_contact_on_demand(self):
        self.assertFalse(self.inbox.create_partners)
        first = self.import_mail(conversation='conv-carla-1')
        second = self.import_mail(conversation='conv-carla-2', subject="Another question")
        conversation = first.conversation_id
        self.assertFalse(conversation.partner_id)
        self.assertFalse(self.env['res.partner'].search([('email_normalized', '=', CUSTOMER.address)]))
        # Not anonymous: the name and address they wrote from.
        self.assertEqual(conversation.correspondent_name, "Carla Customer")
        self.assertEqual(conversation.customer_display, '"Carla Customer" <carla@fabrikam.com>')
        self.assertFalse(first.mail_message_id.author_id)

        # A member (no right to create contacts in Odoo) makes her a contact.
        self.assertFalse(self.agent_member.has_group('base.group_partner_manager'))
        conversation.with_user(self.agent_member).action_outlook_create_contact()
        carla = conversation.partner_id
        self.assertEqual((carla.name, carla.email), ("Carla Customer", CUSTOMER.address))
        self.assertEqual(conversation.customer_display, "Carla Customer")
        # Her other conversation, and her e-mails in both, now show the contact.
        self.assertEqual(second.conversation_id.partner_id, carla)
        self.assertEqual((first | second).mail_message_id.author_id, carla)
        self.assertIn("Carla Customer", conversation.message_ids[0].body, "the chatter says so")
        # The contact shows her conversations, to whoever may read them only.
        self.assertEqual(carla.with_user(self.agent_member).epilot_conversation_count, 2)
        self.assertEqual(carla.with_user(self.agent_outsider).epilot_conversation_count, 0)
        action = carla.with_user(self.agent_member).action_view_epilot_conversations()
        self.assertEqual(self.env['epilot.shared.conversation'].with_user(self.agent_member).search(action['domain']),
                         first.conversation_id | second.conversation_id)

    def test_an_existing_contact_of_that_address_is_linked_not_duplicated(self):
        carla = self.env['res.partner'].create({'name': "Carla (CRM)", 'email': 'Carla@Fabrikam.com'})
        record = self.import_mail(conversation='conv-carla-3')
        conversation = record.conversation_id
        self.assertEqual(conversation.partner_id, carla, "the import links the contact it knows")
        conversation.partner_id = False
        conversation.with_user(self.agent_member).action_outlook_create_contact()
        self.assertEqual(conversation.partner_id, carla)
        self.assertEqual(self.env['res.partner'].search_count([('email_normalized', '=', CUSTOMER.address)]), 1)

    def test_only_members_make_the_customer_a_contact(self):
        conversation = self.import_mail(conversation='conv-carla-4').conversation_id
        for user in (self.agent_outsider, self.internal):
            with self.assertRaises(AccessError):
                conversation.with_user(user).action_outlook_create_contact()
        self.assertFalse(conversation.partner_id)
        self.assertFalse(self.env['res.partner'].search([('email_normalized', '=', CUSTOMER.address)]))

    def test_a_user_outside_the_shared_inboxes_still_opens_the_contact(self):
        """ The contact form reads the count of conversations as the user: one who may read no conversation at all
        (no shared inbox group: a salesperson, a project user) counts none instead of failing the form. """
        conversation = self.import_mail(conversation='conv-carla-5').conversation_id
        conversation.with_user(self.agent_member).action_outlook_create_contact()
        carla = conversation.partner_id
        self.assertFalse(self.internal.has_group('epilot_outlook.group_agent'))
        [values] = carla.with_user(self.internal).read(['epilot_conversation_count'])
        self.assertEqual(values['epilot_conversation_count'], 0)
        self.assertEqual(carla.with_user(self.agent_member).epilot_conversation_count, 1)

    def test_a_contact_of_another_company_is_neither_linked_nor_named(self):
        """ Review of issue 19: the contact search runs as the superuser; it must stay within the conversation's
        company (a contact shared by all companies, or its own). """
        theirs = self.env['res.partner'].create({'name': "Carla (Fabrikam's own)", 'email': CUSTOMER.address,
                                                 'company_id': self.other_company.id})
        conversation = self.import_mail(conversation='conv-carla-5').conversation_id
        self.assertFalse(conversation.partner_id, "the import does not take it either")
        conversation.with_user(self.agent_member).action_outlook_create_contact()
        self.assertNotEqual(conversation.partner_id, theirs)
        self.assertEqual(conversation.partner_id.name, "Carla Customer")
        self.assertNotIn("Fabrikam's own", conversation.message_ids[0].body)
