import base64
import json
from email.message import EmailMessage
from unittest.mock import patch

from odoo.exceptions import AccessError, UserError
from odoo.tests import TransactionCase, new_test_user, tagged
from odoo.tools import mute_logger

from ..models import epilot_shared_conversation_live as live_module
from ..models.epilot_shared_conversation_live import LIVE_NOTIFICATION
from ..models.ir_mail_server import _outlook_recipients_as_sent
from .mail_sync_common import BILLING, SUPPORT
from .send_common import OutlookSendCase

SVC = 'svc-helpdesk@contoso.onmicrosoft.com'
MAIL_LOGGER = 'odoo.addons.mail.models.mail_mail'


@tagged('post_install', '-at_install')
class TestSend(OutlookSendCase):

    def test_reply_goes_out_as_the_shared_mailbox_in_the_same_conversation(self):
        conversation, delivered = self.customer_writes()
        before = conversation.message_ids
        message = self.reply(conversation)
        # the audit trail: the agent wrote it; it left from the shared mailbox
        self.assertEqual(message.author_id, self.agent.partner_id)
        self.assertIn(SUPPORT, message.email_from)
        self.assertEqual(message.notification_ids.mapped('notification_status'), ['sent'])
        self.assertFalse(self.mails_of(message), "sent, and deleted as Odoo does with sent notifications")
        [record] = self.sent()
        self.assertEqual(record['from']['address'], SUPPORT)
        self.assertEqual(record['sender']['address'], SUPPORT)            # Send As: nothing shows the account
        self.assertEqual(record['signedInUser'], SVC)
        self.assertEqual(record['route'], 'send')
        self.assertEqual(record['conversationId'], delivered['conversationId'])
        self.assertEqual(record['inReplyTo'], delivered['internetMessageId'])
        self.assertEqual([a['address'] for a in record['to']], ['customer@fabrikam.com'])
        self.assertIn('Danke, erledigt.', record['body']['content'])
        self.assertEqual(record['subject'], 'RE: Zählerstand', "the original's subject, as Outlook replies")
        self.assertEqual(record['sentCopy']['mailbox'], SUPPORT)
        # the Odoo message and the Outlook one are the same record
        self.assertEqual(message.message_id, record['internetMessageId'])
        # the sent copy comes back through delta as the same message, not a second one
        self.run_delta(self.address)
        new = conversation.message_ids - before
        self.assertEqual(new.filtered(lambda other: not other.tracking_value_ids), message)
        # ... and the status it moved (the team answered: waiting for the customer) is in the chatter (issue 19)
        self.assertEqual(conversation.state, 'waiting')
        self.assertEqual(new.tracking_value_ids.mapped('new_value_char'), ["Waiting"])
        sync = self.env['epilot.outlook.message'].search([('mail_message_id', '=', message.id)])
        self.assertEqual(sync.graph_id, record['sentCopy']['immutableId'])
        self.assertEqual(sync.folder, 'sentitems')
        self.assertEqual(message.subject, 'RE: Zählerstand', "the chatter shows the subject the customer got")
        self.assertInSync(self.address)
        self.assertEqual(conversation.email_count, 2)

    def test_one_email_for_all_recipients_reply_all(self):
        conversation, delivered = self.customer_writes(cc=['colleague@fabrikam.com'])
        colleague = self.env['res.partner'].create({'name': 'Colleague', 'email': 'colleague@fabrikam.com'})
        self.reply(conversation, mode='replyAll', partners=conversation.partner_id | colleague)
        [record] = self.sent()
        self.assertEqual(sorted(a['address'] for a in record['to'] + record['cc']),
                         ['colleague@fabrikam.com', 'customer@fabrikam.com'])
        self.assertEqual(record['conversationId'], delivered['conversationId'])

    def test_forward_carries_the_original_attachments(self):
        conversation, delivered = self.customer_writes(attachments=[{
            'name': 'invoice.pdf', 'content_type': 'application/pdf',
            'content_b64': base64.b64encode(b'%PDF-1.4 invoice').decode()}])
        accountant = self.env['res.partner'].create({'name': 'Accountant', 'email': 'accounting@fabrikam.com'})
        self.reply(conversation, mode='forward', partners=accountant, body='<p>Bitte prüfen</p>')
        [record] = self.sent()
        self.assertEqual([a['address'] for a in record['to']], ['accounting@fabrikam.com'])
        self.assertEqual(record['attachments'], ['invoice.pdf'])
        self.assertEqual(record['conversationId'], delivered['conversationId'])

    def test_reply_all_and_forward_from_the_conversation_form(self):
        conversation, delivered = self.customer_writes(cc=['colleague@fabrikam.com', SUPPORT], attachments=[{
            'name': 'meter.jpg', 'content_type': 'image/jpeg', 'content_b64': base64.b64encode(b'jpeg').decode()}])
        action = conversation.with_user(self.agent).action_outlook_reply_all()
        context = action['context']
        self.assertEqual((action['res_model'], context['epilot_outlook_send_mode']), ('mail.compose.message', 'replyAll'))
        proposed = self.env['res.partner'].browse(context['default_partner_ids'])
        copied = self.env['res.partner'].browse(context['default_epilot_outlook_cc_partner_ids'])
        self.assertEqual((proposed.mapped('email_normalized'), copied.mapped('email_normalized')),
                         (['customer@fabrikam.com'], ['colleague@fabrikam.com']),
                         "the sender and To, and Cc in Cc, without the shared mailbox itself")
        self.env['mail.compose.message'].with_user(self.agent).with_context(context).create(
            {'body': '<p>Hallo zusammen</p>'})._action_send_mail()
        [record] = self.sent()
        self.assertEqual(([a['address'] for a in record['to']], [a['address'] for a in record['cc']]),
                         (['customer@fabrikam.com'], ['colleague@fabrikam.com']))
        self.assertEqual(record['conversationId'], delivered['conversationId'])
        self.assertEqual(record['from']['address'], SUPPORT)
        self.assertEqual(record['subject'], 'Re: Zählerstand', "the composer's subject, which the agent could edit")

        self.sandbox.control('DELETE', '/mail/sent')
        action = conversation.with_user(self.agent).action_outlook_forward()
        self.assertEqual(action['context']['epilot_outlook_send_mode'], 'forward')
        self.assertFalse(action['context']['default_partner_ids'], "a forward goes to whom the agent chooses")
        accountant = self.env['res.partner'].create({'name': 'Accountant', 'email': 'accounting@fabrikam.com'})
        self.env['mail.compose.message'].with_user(self.agent).with_context(action['context']).create(
            {'body': '<p>Bitte prüfen</p>', 'partner_ids': accountant.ids})._action_send_mail()
        [record] = self.sent()
        self.assertEqual([a['address'] for a in record['to']], ['accounting@fabrikam.com'])
        self.assertEqual(record['attachments'], ['meter.jpg'])
        self.assertEqual(record['conversationId'], delivered['conversationId'])

    def test_chatter_reply_to_a_correspondent_without_contact_is_sent(self):
        # An inbox that makes no contacts: the customer is only an address on the conversation. The chatter's
        # composer posts that address, and agents may not create contacts: the reply must still go to it.
        self.inbox.sudo().create_partners = False
        conversation, delivered = self.customer_writes(sender='unknown.customer@fabrikam.com')
        self.assertFalse(conversation.partner_id)
        self.authenticate(self.agent.login, self.agent.login)
        self.make_jsonrpc_request('/mail/message/post', {
            'thread_model': conversation._name, 'thread_id': conversation.id,
            'post_data': {'body': '<p>Gern geschehen.</p>', 'message_type': 'comment',
                          'subtype_xmlid': 'mail.mt_comment',
                          # as the chatter posts it: the inbox's own address is among the proposed ones
                          'partner_emails': ['unknown.customer@fabrikam.com', SUPPORT]},
        })
        self.run_mail_queue()
        [record] = self.sent()
        self.assertEqual([a['address'] for a in record['to'] + record['cc']], ['unknown.customer@fabrikam.com'],
                         "the correspondent, and not the shared mailbox itself")
        self.assertEqual(record['conversationId'], delivered['conversationId'])
        self.assertFalse(self.env['res.partner'].search([('email_normalized', '=', SUPPORT)]))

    def test_new_mail_starts_a_conversation_that_replies_join(self):
        customer = self.env['res.partner'].create({'name': 'Neukunde', 'email': 'new@fabrikam.com'})
        conversation = self.env['epilot.shared.conversation'].create({
            'inbox_id': self.inbox.id, 'name': 'Ihr Angebot', 'partner_id': customer.id})
        message = self.reply(conversation, body='<p>Hier ist Ihr Angebot.</p>')
        [record] = self.sent()
        self.assertEqual(record['from']['address'], SUPPORT)
        self.assertEqual(record['subject'], 'Ihr Angebot')
        self.assertEqual(message.message_id, record['internetMessageId'])
        self.assertEqual(conversation.graph_conversation_id, record['conversationId'])
        # the customer answers in Outlook's conversation: it joins the Odoo one
        self.deliver(sender='new@fabrikam.com', subject='Re: Ihr Angebot', in_reply_to=record['internetMessageId'])
        self.run_delta(self.address)
        self.assertEqual(conversation.email_count, 2)
        self.assertInSync(self.address)

    def test_attachment_over_3_mb_goes_through_an_upload_session(self):
        conversation, _delivered = self.customer_writes()
        big = bytes(range(256)) * (4 * 1024 * 1024 // 256)
        self.reply(conversation, attachments=[('scan.pdf', big), ('note.txt', b'small')])
        [record] = self.sent()
        self.assertEqual(sorted(record['attachments']), ['note.txt', 'scan.pdf'])
        sent = self.graph('GET', '/users/%s/messages/%s/attachments' % (SUPPORT, record['sentCopy']['immutableId']))
        sizes = {item['name']: len(base64.b64decode(item['contentBytes'])) for item in sent['value']}
        self.assertEqual(sizes, {'scan.pdf': len(big), 'note.txt': 5})

    def test_only_members_send(self):
        conversation, _delivered = self.customer_writes()
        outsider = new_test_user(self.env, 'eo_send_outsider', groups='base.group_user,epilot_outlook.group_agent')
        with self.assertRaises(AccessError):
            conversation.with_user(outsider).sudo(False).message_post(
                body='x', message_type='comment', subtype_xmlid='mail.mt_comment', partner_ids=conversation.partner_id.ids)
        self.assertEqual(self.sent(), [])

    def test_full_composer_with_a_template_and_an_attachment(self):
        conversation, delivered = self.customer_writes()
        template = self.env['mail.template'].create({
            'name': 'Meter reading booked', 'model_id': self.env['ir.model']._get_id('epilot.shared.conversation'),
            'subject': 'Re: {{ object.name }}', 'body_html': '<p>Your reading for {{ object.name }} is booked.</p>',
        })
        attachment = self.env['ir.attachment'].with_user(self.agent).create({
            'name': 'receipt.pdf', 'raw': b'%PDF-1.4 receipt', 'res_model': 'mail.compose.message', 'res_id': 0})
        composer = self.env['mail.compose.message'].with_user(self.agent).with_context(
            default_model='epilot.shared.conversation', default_res_ids=conversation.ids,
            default_composition_mode='comment',
            default_subtype_id=self.env.ref('mail.mt_comment').id,
        ).create({'template_id': template.id, 'partner_ids': conversation.partner_id.ids,
                  'attachment_ids': attachment.ids})
        composer._action_send_mail()
        [record] = self.sent()
        self.assertEqual(record['from']['address'], SUPPORT)
        self.assertIn('is booked', record['body']['content'])
        self.assertEqual(record['attachments'], ['receipt.pdf'])
        self.assertEqual(record['conversationId'], delivered['conversationId'])
        message = conversation.message_ids[0]
        self.assertEqual(message.author_id, self.agent.partner_id)

    def test_each_address_has_its_outgoing_server(self):
        server = self.address.mail_server_ids
        self.assertEqual((server.from_filter, server.smtp_authentication), (SUPPORT, 'epilot_outlook'))
        IrMailServer = self.env['ir.mail_server']
        self.assertEqual(IrMailServer._find_mail_server('"Support" <%s>' % SUPPORT)[0], server)
        # never the fallback for other senders: Graph would refuse them, or send them as the shared mailbox
        self.assertNotEqual(IrMailServer._find_mail_server('someone@example.com')[0], server)
        self.assertEqual(server.test_smtp_connection()['params']['type'], 'success')
        # the connection test says why it fails, in words
        self.sandbox.control('POST', '/permissions', {'mailbox': SUPPORT, 'user': SVC, 'full_access': False,
                                                      'send_as': True})
        with self.assertRaisesRegex(UserError, 'not allowed to open this mailbox'):
            server.test_smtp_connection()
        # the address removed (as Disconnect does): its way out goes with it, the inbox stays
        self.address.unlink()
        self.assertFalse(server.exists())
        self.assertTrue(self.inbox.exists())

    def test_internal_note_is_not_sent(self):
        conversation, _delivered = self.customer_writes()
        conversation.with_user(self.agent).message_post(body='intern', message_type='comment',
                                                        subtype_xmlid='mail.mt_note')
        self.assertEqual(self.sent(), [])

    def test_replies_of_one_queue_run_reach_the_screens_together(self):
        """ bench_send: the mail queue commits after each e-mail, and each commit told the screens of the
        conversation's new status in a bus notification of its own, which wakes the websockets through a new
        connection to PostgreSQL (2 ms per e-mail sent). Within a second, the replies of one queue run reach the
        agent's screen in one notification naming their conversations, with the commit that sends it. """
        conversations = self.env['epilot.shared.conversation']
        for number in range(3):
            conversations |= self.customer_writes(subject='Frage %d' % number)[0]
        mails = self.env['mail.mail'].sudo()
        for conversation in conversations:   # queued, as the bench's are (not sent at once by message_post)
            mails |= self.mails_of(self.reply(conversation.with_context(mail_notify_force_send=False)))
        self.patch(live_module, 'LIVE_COALESCE_S', 3600)   # the whole run is "within a second" here
        self.env.cr.precommit.run()
        mark = self.env['bus.bus'].sudo().search([], order='id desc', limit=1).id
        self.assertEqual(len(mails), 3)
        # The queue's own transaction, which commits after each e-mail (a cursor of the test's in test mode).
        with self.enter_registry_test_mode(), self.registry.cursor() as queue_cr:
            mails.with_env(self.env(cr=queue_cr)).send(auto_commit=True)
        self.env.invalidate_all()
        self.assertEqual(len(self.sent()), 3)
        told = [json.loads(row.message)['payload'] for row in self.env['bus.bus'].sudo().search([('id', '>', mark)])
                if json.loads(row.channel)[1:] == ['res.partner', self.agent.partner_id.id]
                and json.loads(row.message)['type'] == LIVE_NOTIFICATION]
        self.assertEqual([sorted(payload['conversation_ids']) for payload in told], [sorted(conversations.ids)])
        self.assertEqual(set(conversations.mapped('state')), {'waiting'})


@tagged('post_install', '-at_install')
class TestSendFailures(OutlookSendCase):

    def permission(self, mailbox, **rights):
        self.sandbox.control('POST', '/permissions', {'mailbox': mailbox, 'user': SVC, 'full_access': True, **rights})

    @mute_logger(MAIL_LOGGER)
    def test_send_as_denied_fails_with_reason_and_retry_sends_it_once(self):
        conversation, _delivered = self.customer_writes()
        self.permission(SUPPORT, send_as=False, send_on_behalf=False)
        message = self.reply(conversation)
        mail = self.mails_of(message)
        self.assertEqual(mail.state, 'exception')
        self.assertIn("may not send as this shared mailbox", mail.failure_reason)
        notification = message.notification_ids.filtered(lambda n: n.notification_type == 'email')
        self.assertEqual(notification.notification_status, 'exception')
        self.assertEqual(self.sent(), [])
        # the admin grants Send As; the agent clicks Retry
        self.permission(SUPPORT, send_as=True)
        mail.action_retry()
        self.run_mail_queue()
        self.assertFalse(mail.exists(), "sent (and deleted, as a sent notification is)")
        self.assertEqual(notification.notification_status, 'sent')
        self.assertEqual(len(self.sent()), 1)
        outbox = self.env['epilot.outlook.outbox'].search([('address_id', '=', self.address.id)])
        self.assertEqual(len(outbox), 1, "one draft, sent once")

    @mute_logger(MAIL_LOGGER)
    def test_throttled_send_stays_queued_and_goes_later(self):
        conversation, _delivered = self.customer_writes()
        self.sandbox.control('POST', '/faults', {'graph': {'429': 3, 'retry_after': 30}})
        message = self.reply(conversation)
        mail = self.mails_of(message)
        self.assertEqual(mail.state, 'outgoing', "throttled: back in the queue, not failed")
        self.assertTrue(mail.scheduled_date)
        self.assertEqual(self.sent(), [])
        self.sandbox.control('POST', '/faults', {'graph': None})
        mail.scheduled_date = False
        self.run_mail_queue()
        self.assertFalse(mail.exists(), "sent")
        self.assertEqual(message.notification_ids.mapped('notification_status'), ['sent'])
        self.assertEqual(len(self.sent()), 1)

    @mute_logger(MAIL_LOGGER, 'odoo.addons.epilot_outlook.models.epilot_outlook_connection_tokens')
    def test_revoked_sign_in_fails_the_mail_and_marks_the_connection(self):
        conversation, _delivered = self.customer_writes()
        # The account is disabled: Graph refuses the token, and the refresh that follows fails too.
        self.sandbox.control('POST', '/users/%s/disable' % self.demo['service_account']['id'])
        message = self.reply(conversation)
        mail = self.mails_of(message)
        self.assertEqual(mail.state, 'exception')
        self.assertIn("AADSTS50057", mail.failure_reason)
        self.assertEqual(self.sent(), [])
        self.connection.invalidate_recordset()
        self.assertEqual(self.connection.state, 'needs_reconnect')

    def test_crash_after_graph_accepted_sends_nothing_twice(self):
        conversation, _delivered = self.customer_writes()
        Address = type(self.env['epilot.outlook.email.address'])
        original = Address._outlook_record_sent

        class WorkerDied(BaseException):
            """ Not an Exception: mail.mail's error handling does not catch it, as it would not catch a kill. """

        def die(self, mail_message, draft, odoo_own=False):
            raise WorkerDied()

        # (Odoo's assertRaises would roll back what the sender committed in transactions of its own.)
        with self.assertRaisesKeepingCommits(WorkerDied):
            with patch.object(Address, '_outlook_record_sent', die):
                self.reply(conversation)
        self.assertEqual(len(self.sent()), 1, "Graph accepted it")
        # The worker's transaction is gone: the mail is still to send, nothing recorded it as sent.
        mail = self.env['mail.mail'].sudo().search([('model', '=', 'epilot.shared.conversation'),
                                                     ('res_id', '=', conversation.id)])
        mail.write({'state': 'outgoing', 'failure_reason': False, 'failure_type': False})
        self.assertIs(Address._outlook_record_sent, original)
        # delta meanwhile syncs the sent copy: it is the Odoo message, not a new one (a status it changes is
        # tracked in the chatter: a notification, not an e-mail)
        def emails():
            return conversation.message_ids.filtered(lambda message: message.message_type != 'notification')
        before = emails()
        self.run_delta(self.address)
        self.assertEqual(emails(), before)
        # the queue runs again: Graph says the draft was sent; nothing goes out twice
        self.run_mail_queue()
        self.assertFalse(mail.exists(), "sent")
        self.assertEqual(len(self.sent()), 1)
        self.assertInSync(self.address)

    def test_send_on_behalf(self):
        self.permission(BILLING, send_as=False, send_on_behalf=True)
        address = self.add_address(BILLING)
        address.send_mode = 'send_on_behalf'
        self.run_backfill(address)
        inbox = address.shared_inbox_id
        inbox.sudo().member_user_ids = [(4, self.agent.id)]
        customer = self.env['res.partner'].create({'name': 'Kunde', 'email': 'kunde@fabrikam.com'})
        conversation = self.env['epilot.shared.conversation'].create({
            'inbox_id': inbox.id, 'name': 'Rechnung', 'partner_id': customer.id})
        self.reply(conversation)
        [record] = self.sent()
        self.assertEqual(record['from']['address'], BILLING)
        self.assertEqual(record['sender']['address'], SVC)
        self.assertEqual(record['sentCopy']['mailbox'], SVC)


@tagged('post_install', '-at_install')
class TestRecipientsAsSent(TransactionCase):

    def test_graph_gets_the_envelope_recipients_only(self):
        """ Graph delivers to every address of To, Cc and Bcc: those say exactly who Odoo sends to. """
        message = EmailMessage()
        message['To'] = '"Kunde" <kunde@example.com>, shown-only@example.com'   # X-Msg-To-Add shows one more
        message['Cc'] = 'kollege@example.com'
        smtp_to_list = ['kunde@example.com', 'kollege@example.com', 'hidden@example.com']
        _outlook_recipients_as_sent(message, smtp_to_list)
        self.assertEqual(message['To'], 'Kunde <kunde@example.com>')
        self.assertEqual(message['Cc'], 'kollege@example.com')
        self.assertEqual(message['Bcc'], 'hidden@example.com')

    def test_the_composer_cc_row_stays_cc(self):
        """ Odoo puts every recipient contact in To; those of the composer's Cc row go to Cc (issue 19). """
        message = EmailMessage()
        message['To'] = 'kunde@example.com, "Chef" <chef@example.com>, kollege@example.com'
        smtp_to_list = ['kunde@example.com', 'chef@example.com', 'kollege@example.com']
        _outlook_recipients_as_sent(message, smtp_to_list, cc=['Kollege@Example.com', 'not-sent@example.com'])
        self.assertEqual(message['To'], 'kunde@example.com, Chef <chef@example.com>')
        self.assertEqual(message['Cc'], 'kollege@example.com')
        self.assertIsNone(message['Bcc'])
