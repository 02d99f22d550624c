import base64

from odoo.tests import tagged

from .mail_sync_common import SUPPORT
from .send_common import OutlookSendCase


@tagged('post_install', '-at_install')
class TestComposerTour(OutlookSendCase):
    """ In a browser (issue 19): an agent replies from the chatter with the agents' canned response (shipped), looks at Reply All, and
    forwards the customer's e-mail with its file to an address typed in To; the sandbox receives both, from the
    shared mailbox, in the customer's conversation. """

    def test_agent_replies_and_forwards_from_the_browser(self):
        _conversation, delivered = self.customer_writes(
            subject='Tour: composer', body_html='<p>My meter reads 4711.</p>', to=[SUPPORT],
            cc=['colleague@fabrikam.com', SUPPORT], attachments=[{
                'name': 'meter.jpg', 'content_type': 'image/jpeg', 'content_b64': base64.b64encode(b'jpeg').decode()}])
        self.start_tour('/odoo/action-epilot_outlook.epilot_shared_conversation_action', 'epilot_outlook_composer_tour',
                        login=self.agent.login)
        self.run_mail_queue()
        sent = self.sent()
        self.assertEqual(len(sent), 2, sent)
        reply, forward = sent
        self.assertIn('we received it and will answer', reply['body']['content'], "the agents' canned response")
        # the chatter proposes the last e-mail's correspondents (its sender and Cc), never the shared mailbox
        self.assertEqual(sorted(a['address'] for a in reply['to'] + reply['cc']),
                         ['colleague@fabrikam.com', 'customer@fabrikam.com'])
        self.assertEqual([a['address'] for a in forward['to']], ['new.person@example.org'])
        self.assertEqual(forward['attachments'], ['meter.jpg'])
        for record in sent:
            self.assertEqual(record['from']['address'], SUPPORT)
            self.assertEqual(record['conversationId'], delivered['conversationId'])
