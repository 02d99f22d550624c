""" The browser tours of the bridge modules (``epilot_outlook_crm``, ``epilot_outlook_project``): from a
conversation to the record it is about, and back (issue 19, items 8 and 9). Their steps are shared in
``static/tests/tours/utils/conversation_link_steps.js``. """
from odoo.tests import HttpCase, new_test_user

from .common import EpilotOutlookCommon
from .test_inbox_agents import CUSTOMER, InboxImportMixin


class ConversationLinkTourCase(InboxImportMixin, HttpCase, EpilotOutlookCommon):
    """ ``tour_agent`` is a member of ``inbox`` (billing@, fed by ``address``, which creates no contacts) with
    the groups ``_tour_agent_groups`` names beyond Agent. """

    _tour_agent_groups = ''

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.inbox = cls.inbox_other
        cls.tour_agent = new_test_user(cls.env, 'eo_tour_agent',
                                       groups='epilot_outlook.group_agent,' + cls._tour_agent_groups)
        cls.inbox.member_user_ids = [(4, cls.tour_agent.id)]

    def walk_from_mail_to_record(self, tour, subject, body):
        """ Import the customer's e-mail, run ``tour`` as ``tour_agent``, and check the customer became the
        conversation's contact.

        :return: The conversation.
        """
        self.assertFalse(self.inbox.create_partners)
        conversation = self.import_mail(conversation='conv-%s' % tour, subject=subject, body=body).conversation_id
        self.assertFalse(conversation.partner_id, "an anonymous customer")
        self.assertFalse(self.env['res.partner'].search_count([('email_normalized', '=', CUSTOMER.address)]))

        self.start_tour('/odoo/action-epilot_outlook.epilot_shared_conversation_action', tour,
                        login=self.tour_agent.login)

        self.env.invalidate_all()
        self.assertEqual((conversation.partner_id.name, conversation.partner_id.email),
                         (CUSTOMER.name, CUSTOMER.address), "Create Contact made the customer its contact")
        return conversation
