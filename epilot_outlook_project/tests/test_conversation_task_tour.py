""" In the browser: from a shared inbox conversation to its project task, and back (issue 19, items 8 and 9). """
from odoo.tests import tagged

from odoo.addons.epilot_outlook.tests.link_tour_common import ConversationLinkTourCase


@tagged('post_install', '-at_install')
class TestConversationTaskTour(ConversationLinkTourCase):

    _tour_agent_groups = 'project.group_project_user'

    def test_an_agent_makes_the_customer_a_contact_and_creates_the_task(self):
        """ The steps are in ``epilot_outlook_project_task_tour.js``: the customer's name and address, Create
        Contact, Create Task, the prefilled task in the inbox's project, its Conversations button back to the
        conversation. """
        project = self.env['project.project'].create({'name': "Billing follow-ups"})
        self.inbox.task_project_id = project
        conversation = self.walk_from_mail_to_record('epilot_outlook_project_task', "Tour: wrong invoice address",
                                                     '<p>Please correct the address on invoice 42.</p>')
        task = conversation.task_id
        self.assertEqual((task.name, task.project_id, task.partner_id, task.create_uid),
                         ("Tour: wrong invoice address", project, conversation.partner_id, self.tour_agent))
        self.assertIn("correct the address on invoice 42", task.description)
        self.assertEqual(self.env['project.task'].search([('name', '=', task.name)]), task, "one task, made once")
        self.assertEqual(task.with_user(self.tour_agent).epilot_conversation_count, 1)
