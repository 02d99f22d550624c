""" From a shared inbox conversation to the CRM lead it is about, and back (issue 19, item 8). """
from odoo.exceptions import AccessError
from odoo.tests import new_test_user, tagged

from odoo.addons.epilot_outlook.tests.common import EpilotOutlookCommon
from odoo.addons.epilot_outlook.tests.test_inbox_agents import CUSTOMER, InboxImportMixin


@tagged('post_install', '-at_install')
class TestConversationLead(InboxImportMixin, EpilotOutlookCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.inbox = cls.inbox_other   # fed by cls.address (billing@)
        cls.salesperson = new_test_user(cls.env, 'eo_salesperson', groups='epilot_outlook.group_agent,'
                                                                            'sales_team.group_sale_salesman')
        cls.outside_salesperson = new_test_user(cls.env, 'eo_outside_salesperson',
                                                groups='epilot_outlook.group_agent,sales_team.group_sale_salesman')
        cls.inbox.member_user_ids = [(4, cls.salesperson.id), (4, cls.agent_member.id)]

    def test_a_member_creates_the_lead_of_a_conversation(self):
        record = self.import_mail(conversation='conv-lead-1', subject="Quote for 40 heat pumps",
                                  body='<p>We need 40 heat pumps by March.</p>')
        conversation = record.conversation_id.with_user(self.salesperson)
        action = conversation.action_outlook_create_lead()
        lead = self.env['crm.lead'].browse(action['res_id'])
        self.assertEqual((action['res_model'], lead.name), ('crm.lead', "Quote for 40 heat pumps"))
        self.assertEqual((lead.email_from, lead.contact_name), (CUSTOMER.address, "Carla Customer"))
        self.assertIn("40 heat pumps by March", lead.description)
        self.assertEqual(lead.create_uid, self.salesperson, "created with the salesperson's own rights")
        self.assertEqual(conversation.lead_id, lead)
        # Both chatters say so, and the lead shows its conversation to members only.
        self.assertIn(lead.name, conversation.message_ids[0].body)
        self.assertIn(conversation.name, lead.message_ids[0].body)
        self.assertEqual(lead.with_user(self.salesperson).epilot_conversation_count, 1)
        self.assertEqual(lead.with_user(self.outside_salesperson).epilot_conversation_count, 0)
        action = lead.with_user(self.salesperson).action_view_epilot_conversations()
        self.assertEqual(self.env['epilot.shared.conversation'].with_user(self.salesperson).search(action['domain']),
                         conversation)

    def test_a_member_links_an_existing_lead(self):
        lead = self.env['crm.lead'].create({'name': "Heat pumps for Fabrikam", 'user_id': self.salesperson.id})
        conversation = self.import_mail(conversation='conv-lead-2').conversation_id
        conversation.with_user(self.salesperson).lead_id = lead
        self.assertEqual(lead.epilot_conversation_count, 1)

    def test_a_member_cannot_link_a_lead_they_may_not_read(self):
        """ Review of issue 19: the conversation would show the lead's name. """
        hidden = self.env['crm.lead'].create({'name': "Someone else's deal", 'user_id': self.outside_salesperson.id})
        self.assertFalse(hidden.with_user(self.salesperson).has_access('read'))
        conversation = self.import_mail(conversation='conv-lead-4').conversation_id
        with self.assertRaises(AccessError):
            conversation.with_user(self.salesperson).lead_id = hidden
        self.assertFalse(conversation.lead_id)

    def test_who_may_create_a_lead_from_a_conversation(self):
        conversation = self.import_mail(conversation='conv-lead-3').conversation_id
        leads = self.env['crm.lead'].search_count([])
        # A salesperson who is not a member of the inbox, and a member without CRM rights.
        for user in (self.outside_salesperson, self.agent_member):
            with self.assertRaises(AccessError):
                conversation.with_user(user).action_outlook_create_lead()
        self.assertEqual(self.env['crm.lead'].search_count([]), leads)
        self.assertFalse(conversation.lead_id)
