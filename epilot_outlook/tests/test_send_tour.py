import base64

from odoo.tests import tagged

from .mail_sync_common import SUPPORT
from .send_common import OutlookSendCase


@tagged('post_install', '-at_install')
class TestSendTour(OutlookSendCase):
    """ In a browser: an agent opens the inbox, reads a conversation and replies with an attachment; Outlook then
    holds the reply in the shared mailbox's Sent Items, from the shared mailbox, with the attachment, in the
    customer's conversation. """

    def test_agent_replies_from_the_browser(self):
        conversation, delivered = self.customer_writes(subject='Tour: meter reading',
                                                       body_html='<p>My meter reads 4711.</p>')
        self.start_tour('/odoo/action-epilot_outlook.epilot_shared_conversation_action', 'epilot_outlook_reply_tour',
                        login=self.agent.login)
        [record] = self.sent()
        sent_id = record['sentCopy']['immutableId']
        self.assertEqual(record['sentCopy']['mailbox'], SUPPORT)
        item = self.graph('GET', '/users/%s/mailFolders/sentitems/messages/%s?$select=from,sender,conversationId,'
                          'toRecipients,body,hasAttachments' % (SUPPORT, sent_id))
        self.assertEqual(item['from']['emailAddress']['address'], SUPPORT)
        self.assertEqual(item['sender']['emailAddress']['address'], SUPPORT)
        self.assertEqual(item['conversationId'], delivered['conversationId'])
        self.assertEqual([r['emailAddress']['address'] for r in item['toRecipients']], ['customer@fabrikam.com'])
        self.assertIn('the reading is booked', item['body']['content'])
        attachments = self.graph('GET', '/users/%s/messages/%s/attachments' % (SUPPORT, sent_id))['value']
        self.assertEqual([(a['name'], base64.b64decode(a['contentBytes'])) for a in attachments],
                         [('reading.txt', b'reading 4711')])
        # the Odoo message is the agent's, and is the Outlook one
        message = conversation.message_ids.filtered(lambda m: 'the reading is booked' in (m.body or ''))
        self.assertEqual(message.author_id, self.agent.partner_id)
        self.assertEqual(message.message_id, record['internetMessageId'])
