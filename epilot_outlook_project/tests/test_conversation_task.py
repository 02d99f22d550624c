""" From a shared inbox conversation to the project task it is about, and back (issue 19, item 8). """
from odoo.exceptions import AccessError
from odoo.tests import new_test_user, tagged

from odoo.addons.epilot_outlook.tests.common import EpilotOutlookCommon
from odoo.addons.epilot_outlook.tests.test_inbox_agents import InboxImportMixin


@tagged('post_install', '-at_install')
class TestConversationTask(InboxImportMixin, EpilotOutlookCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.inbox = cls.inbox_other   # fed by cls.address (billing@)
        cls.project_agent = new_test_user(cls.env, 'eo_project_agent', groups='epilot_outlook.group_agent,'
                                                                               'project.group_project_user')
        cls.inbox.member_user_ids = [(4, cls.project_agent.id), (4, cls.agent_member.id)]
        cls.project = cls.env['project.project'].create({'name': "Billing follow-ups"})

    def test_a_member_creates_the_task_of_a_conversation_in_the_inbox_project(self):
        self.inbox.task_project_id = self.project
        record = self.import_mail(conversation='conv-task-1', subject="Wrong invoice address",
                                  body='<p>Please correct the address on invoice 42.</p>')
        conversation = record.conversation_id.with_user(self.project_agent)
        task = self.env['project.task'].browse(conversation.action_outlook_create_task()['res_id'])
        self.assertEqual((task.name, task.project_id), ("Wrong invoice address", self.project))
        self.assertIn("correct the address on invoice 42", task.description)
        self.assertEqual(conversation.task_id, task)
        self.assertIn(task.name, conversation.message_ids[0].body)
        self.assertEqual(task.with_user(self.project_agent).epilot_conversation_count, 1)

    def test_without_a_project_the_task_is_the_agents_private_task(self):
        conversation = self.import_mail(conversation='conv-task-2').conversation_id
        task = self.env['project.task'].browse(
            conversation.with_user(self.project_agent).action_outlook_create_task()['res_id'])
        self.assertFalse(task.project_id)
        self.assertEqual(task.user_ids, self.project_agent)

    def test_a_member_without_project_rights_cannot_create_a_task(self):
        conversation = self.import_mail(conversation='conv-task-3').conversation_id
        with self.assertRaises(AccessError):
            conversation.with_user(self.agent_member).action_outlook_create_task()
        self.assertFalse(conversation.task_id)
