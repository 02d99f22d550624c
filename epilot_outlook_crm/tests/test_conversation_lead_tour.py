""" In the browser: from a shared inbox conversation to its CRM lead, and back (issue 19, items 8 and 9). """
from odoo.tests import tagged

from odoo.addons.epilot_outlook.tests.link_tour_common import ConversationLinkTourCase


@tagged('post_install', '-at_install')
class TestConversationLeadTour(ConversationLinkTourCase):

    _tour_agent_groups = 'sales_team.group_sale_salesman'

    def test_an_agent_makes_the_customer_a_contact_and_creates_the_lead(self):
        """ The steps are in ``epilot_outlook_crm_lead_tour.js``: the customer's name and address, Create Contact,
        Create Lead, the prefilled lead, its Conversations button back to the conversation. """
        conversation = self.walk_from_mail_to_record('epilot_outlook_crm_lead', "Tour: quote for 40 heat pumps",
                                                     '<p>We need 40 heat pumps by March.</p>')
        lead = conversation.lead_id
        self.assertEqual((lead.name, lead.partner_id, lead.create_uid),
                         ("Tour: quote for 40 heat pumps", conversation.partner_id, self.tour_agent))
        self.assertIn("40 heat pumps by March", lead.description)
        self.assertEqual(self.env['crm.lead'].search([('name', '=', lead.name)]), lead, "one lead, made once")
        self.assertEqual(lead.with_user(self.tour_agent).epilot_conversation_count, 1)
