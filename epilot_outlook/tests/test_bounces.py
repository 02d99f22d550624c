from odoo.addons.mail.tools.discuss import Store
from odoo.tests import tagged

from ..outlook_core.mailbox import MESSAGE_SELECT
from ..outlook_core.mapping import map_messages

from .mail_sync_common import SUPPORT
from .send_common import OutlookSendCase

NOWHERE = 'anna@nowhere.invalid'   # the sandbox refuses any .invalid domain, as Exchange does (5.4.310)
FIGURES = ['first_message_date', 'last_message_date', 'email_count', 'unread_count', 'is_unread',
           'last_inbound_date', 'last_outbound_date', 'state']


@tagged('post_install', '-at_install')
class TestBounces(OutlookSendCase):
    """ Issue 19, item 3: a non-delivery report Exchange drops into the mailbox marks the reply it bounces as not
    delivered, with the reason, and opens no conversation; an automatic reply is marked and never reopens a
    conversation nor counts as the customer's answer. Against the sandbox, which bounces and auto-replies as
    Exchange Online does (m365_sandbox/mail_bounce.py). """

    def ndr_records(self):
        return self.env['epilot.outlook.message'].search([
            ('inbox_id', '=', self.inbox.id), ('kind', '=', 'ndr')])

    def assertFiguresAsRefreshed(self, conversations):
        stored = conversations.read(FIGURES)
        conversations._outlook_refresh_stats()
        self.assertEqual(conversations.read(FIGURES), stored, "the stored figures differ from a refresh")

    # --- bounces --------------------------------------------------------------------------------------

    def test_a_reply_to_a_refused_address_is_marked_not_delivered_with_the_reason(self):
        conversation, _delivered = self.customer_writes(sender=NOWHERE)
        reply = self.reply(conversation)
        self.run_mail_queue()
        [sent] = self.sent()
        conversations_before = self.inbox.conversation_ids
        self.run_delta(self.address)   # the sent copy and Exchange's report

        # The report shows no e-mail and opens no conversation: it is a known, hidden record of this one.
        [ndr] = self.ndr_records()
        self.assertFalse(ndr.mail_message_id)
        self.assertEqual(ndr.bounced_mail_message_id, reply)
        self.assertEqual(ndr.conversation_id, conversation)
        self.assertEqual(self.inbox.conversation_ids, conversations_before)
        self.assertEqual(conversation.email_count, 2, "the customer's e-mail and the reply")
        self.assertFalse(conversation.message_ids.filtered(lambda m: (m.subject or '').startswith('Undeliverable')))
        self.assertEqual(conversation.state, 'waiting', "a report is not the customer's answer")

        # The reply: Odoo's bounce on the refused recipient's notification, with the reason in words.
        [notification] = reply.notification_ids
        self.assertEqual(notification.res_partner_id.email_normalized, NOWHERE)
        self.assertEqual(notification.notification_status, 'bounce')
        self.assertEqual(notification.failure_type, 'mail_email_invalid')
        self.assertEqual(notification.outlook_bounce_reason, 'domain_unknown')
        self.assertEqual(notification.failure_reason, '5.4.310')
        data = self._store_of(reply)
        [stored] = [n for n in data['mail.notification'] if n['id'] == notification.id]
        self.assertEqual(stored['notification_status'], 'bounce')
        self.assertEqual(stored['outlook_bounce_text'],
                         "The recipient's domain does not exist or does not receive e-mail. (status 5.4.310)")
        self.assertEqual(sent['internetMessageId'], reply.message_id)

        # A replay of the same report (delta repeats items) changes nothing.
        self.address.folder_sync_ids.write({'delta_link': False})
        self.run_delta(self.address)
        self.assertEqual(len(self.ndr_records()), 1)
        self.assertEqual(len(reply.notification_ids), 1)
        self.assertFiguresAsRefreshed(conversation)

    def test_a_late_bounce_of_mail_sent_from_outlook_marks_the_synced_copy(self):
        conversation, delivered = self.customer_writes()
        # A colleague answers from Outlook, the sent copy is synced; later the recipient's server bounces it.
        self.graph('POST', '/users/%s/messages/%s/reply' % (SUPPORT, delivered['immutable_id']),
                   {'comment': 'Sent from Outlook'})
        self.run_delta(self.address)
        sent_copy = self.env['epilot.outlook.message'].search([
            ('conversation_id', '=', conversation.id), ('folder', '=', 'sentitems')])
        self.assertEqual(len(sent_copy), 1)
        self.sandbox.control('POST', '/mail/bounce', {
            'internetMessageId': sent_copy.internet_message_id, 'status': '5.2.2'})
        self.run_delta(self.address)
        [ndr] = self.ndr_records()
        self.assertFalse(ndr.mail_message_id)
        [notification] = sent_copy.mail_message_id.notification_ids
        self.assertEqual((notification.notification_status, notification.failure_type),
                         ('bounce', 'mail_bounce'))
        self.assertEqual(notification.outlook_bounce_reason, 'mailbox_full')
        self.assertEqual(notification.res_partner_id.email_normalized or notification.mail_email_address,
                         'customer@fabrikam.com')
        self.assertEqual(conversation.email_count, 2)

    def test_a_report_of_mail_the_inbox_does_not_show_is_imported_as_an_email(self):
        # Sent from Outlook and bounced before Odoo synced anything of it: nothing to tie the report to.
        self.graph('POST', '/users/%s/sendMail' % SUPPORT, {'message': {
            'subject': 'Newsletter', 'body': {'contentType': 'html', 'content': '<p>News</p>'},
            'toRecipients': [{'emailAddress': {'address': NOWHERE}}]}, 'saveToSentItems': False})
        self.run_delta(self.address)
        [ndr] = self.ndr_records()
        self.assertTrue(ndr.mail_message_id, "shown, so that the team sees it")
        self.assertFalse(ndr.bounced_mail_message_id)
        self.assertEqual(ndr.mail_message_id.subject, 'Undeliverable: Newsletter')
        self.assertEqual(ndr.conversation_id.state, 'new')
        self.assertFalse(ndr.conversation_id.last_inbound_date, "no customer wrote")
        self.assertFiguresAsRefreshed(ndr.conversation_id)

    def test_a_backfill_page_with_a_report_keeps_each_body_with_its_email(self):
        # A page read ahead comes with its bodies sanitized in page order: the report taken out, every other
        # e-mail must keep its own body.
        conversation, _delivered = self.customer_writes(sender=NOWHERE)
        reply = self.reply(conversation)
        self.run_mail_queue()
        self.deliver(subject='Another question', body_html='<p>Second customer body</p>')
        items = self.graph('GET', '/users/%s/mailFolders/inbox/messages?$orderby=receivedDateTime desc&$select=%s'
                           '&$expand=attachments' % (SUPPORT, MESSAGE_SELECT))['value']
        messages, _skipped = map_messages(items[::-1], 'inbox')   # oldest first: the report before the new mail
        [ndr] = [message for message in messages if message.kind == 'ndr']
        [second] = [message for message in messages if message.subject == 'Another question']
        self.assertGreater(messages.index(second), messages.index(ndr))
        Sync = self.env['epilot.outlook.message']
        Sync._outlook_import(self.address, messages, Sync._outlook_bodies(messages))
        [record] = Sync.search([('graph_id', '=', second.graph_id)])
        self.assertIn('Second customer body', record.mail_message_id.body)
        self.assertFalse(Sync.search([('graph_id', '=', ndr.graph_id)]).mail_message_id)
        self.assertEqual(reply.notification_ids.notification_status, 'bounce')

    def test_a_report_of_odoos_own_mail_is_hidden_as_that_mail_is(self):
        # A password reset Odoo sent through the mailbox (issue 17) to a refused address: its report is never shown.
        self.address.send_odoo_mail = True
        self.env['mail.mail'].sudo().create({
            'model': 'res.users', 'res_id': self.agent.id, 'email_from': '"My Company" <%s>' % SUPPORT,
            'subject': 'Password reset', 'email_to': NOWHERE, 'auto_delete': False,
            'body_html': '<p>Reset: https://odoo.example.com/web/reset_password?token=SECRET-TOKEN-42</p>'}).send()
        conversations = self.inbox.conversation_ids
        self.run_delta(self.address)
        [ndr] = self.ndr_records()
        self.assertTrue(ndr.odoo_own_mail)
        self.assertFalse(ndr.mail_message_id or ndr.conversation_id or ndr.subject)
        self.assertEqual(self.inbox.conversation_ids, conversations)

    def test_a_forged_report_from_a_customer_is_an_email_and_the_reply_stays_delivered(self):
        # Whoever got a team reply can send a delivery report naming it: from a customer, not a system mailer,
        # it is their e-mail, shown, and the reply is not marked bounced.
        conversation, _delivered = self.customer_writes()
        reply = self.reply(conversation)
        self.run_mail_queue()
        [sent] = self.sent()
        self.run_delta(self.address)
        self.sandbox.control('POST', '/clock/advance', {'seconds': 60})
        forged = self.deliver(
            subject='Undeliverable: RE: Zählerstand', in_reply_to=sent['internetMessageId'],
            body_html='<p>Your message to customer@fabrikam.com couldn\'t be delivered. Status code: 550 5.1.1</p>',
            headers=[{'name': 'Content-Type',
                      'value': 'multipart/report; report-type=delivery-status; boundary="b1"'}])
        self.run_delta(self.address)
        self.assertFalse(self.ndr_records())
        [record] = self.env['epilot.outlook.message'].search([('graph_id', '=', forged['immutable_id'])])
        self.assertFalse(record.kind, "mail a person wrote")
        self.assertEqual(record.conversation_id, conversation)
        self.assertEqual(record.mail_message_id.subject, 'Undeliverable: RE: Zählerstand', "shown")
        self.assertEqual(conversation.email_count, 3)
        [notification] = reply.notification_ids
        self.assertEqual(notification.notification_status, 'sent')
        self.assertFalse(notification.outlook_bounce_reason)

    # --- automatic replies -------------------------------------------------------------------------------

    def test_an_automatic_reply_is_marked_and_does_not_reopen_a_closed_conversation(self):
        conversation, _delivered = self.customer_writes()
        self.reply(conversation)
        self.run_mail_queue()
        self.run_delta(self.address)
        [sent] = self.sent()
        conversation.state = 'closed'
        last_inbound = conversation.last_inbound_date
        # Later than anything known (Odoo's dates are whole seconds): mail received now would reopen it.
        self.sandbox.control('POST', '/clock/advance', {'seconds': 60})
        self.sandbox.control('POST', '/mail/auto-reply', {
            'mailbox': SUPPORT, 'from': 'customer@fabrikam.com', 'in_reply_to': sent['internetMessageId']})
        self.run_delta(self.address)
        [record] = self.env['epilot.outlook.message'].search([
            ('conversation_id', '=', conversation.id), ('kind', '=', 'auto_reply')])
        self.assertTrue(record.mail_message_id.outlook_auto_reply)
        self.assertTrue(record.mail_message_id.subject.startswith('Automatic reply:'))
        self.assertEqual(conversation.email_count, 3, "shown in the conversation")
        self.assertEqual(conversation.state, 'closed')
        self.assertEqual(conversation.last_inbound_date, last_inbound, "not the customer's answer")
        data = self._store_of(record.mail_message_id)
        [stored] = [m for m in data['mail.message'] if m['id'] == record.mail_message_id.id]
        self.assertIs(stored['outlook_auto_reply'], True)
        self.assertFiguresAsRefreshed(conversation)
        # The customer's own answer still reopens it.
        self.sandbox.control('POST', '/clock/advance', {'seconds': 60})
        self.deliver(subject='RE: Zählerstand', in_reply_to=sent['internetMessageId'])
        self.run_delta(self.address)
        self.assertEqual(conversation.state, 'open')

    def test_a_conversation_an_automatic_reply_starts_is_not_an_answer(self):
        self.sandbox.control('POST', '/mail/auto-reply', {
            'mailbox': SUPPORT, 'from': 'robot@fabrikam.com', 'subject': 'Automatic reply: Welcome'})
        self.run_delta(self.address)
        [record] = self.env['epilot.outlook.message'].search([
            ('inbox_id', '=', self.inbox.id), ('kind', '=', 'auto_reply')])
        conversation = record.conversation_id
        self.assertFalse(conversation.last_inbound_date)
        self.assertFiguresAsRefreshed(conversation)

    # --- in the browser --------------------------------------------------------------------------------

    def test_the_chatter_shows_the_bounce_and_the_automatic_reply(self):
        conversation, _delivered = self.customer_writes(sender=NOWHERE)
        self.reply(conversation)
        self.run_mail_queue()
        [sent] = self.sent()
        self.sandbox.control('POST', '/mail/auto-reply', {
            'mailbox': SUPPORT, 'from': NOWHERE, 'in_reply_to': sent['internetMessageId']})
        self.run_delta(self.address)
        self.start_tour('/odoo/action-epilot_outlook.epilot_shared_conversation_action/%d' % conversation.id,
                        'epilot_outlook_bounces', login=self.agent.login)

    # --- helpers ---------------------------------------------------------------------------------------

    def _store_of(self, message):
        """ What the chatter gets for ``message`` (Odoo's store), as the agent. """
        return Store().add(message.with_user(self.agent)).get_result()
