from odoo.tests import new_test_user

from .mail_sync_common import SUPPORT, OutlookMailSyncCase


class OutlookSendCase(OutlookMailSyncCase):
    """ A synced shared inbox (``support@``), an agent who is a member of it, a customer's conversation, and
    Odoo's mail queue sending for real through the sandbox.

    Odoo's ``ir.mail_server._disable_send()`` is true in every test, so that nothing reaches an SMTP server; it is
    turned off here, as Odoo's own mail tests do (``MockSmtplibCase``). Graph is not mocked: e-mails from the
    shared address go to the sandbox through the address's Outlook server; any other e-mail would fail to reach
    SMTP and stays in the queue, untouched by these tests.
    """

    def setUp(self):
        super().setUp()
        IrMailServer = type(self.env['ir.mail_server'])
        self.patch(IrMailServer, '_disable_send', lambda _self: False)
        self.address = self.add_address(SUPPORT)
        self.inbox = self.address.shared_inbox_id
        self.inbox.sudo().create_partners = True
        self.agent = new_test_user(
            self.env, 'eo_send_agent', groups='base.group_user,epilot_outlook.group_agent',
            name='Alice Agent', email='alice@odoo.example.com')
        self.agent.notification_type = 'inbox'
        self.inbox.sudo().member_user_ids = [(4, self.agent.id)]
        self.run_backfill(self.address)
        self.sandbox.control('DELETE', '/mail/sent')

    # --- acting -------------------------------------------------------------------------------------------

    def customer_writes(self, subject='Zählerstand', **values):
        """ A customer's e-mail arrives in the shared mailbox and delta imports it; returns its conversation. """
        delivered = self.deliver(subject=subject, **values)
        self.run_delta(self.address)
        record = self.env['epilot.outlook.message'].search([('graph_id', '=', delivered['immutable_id'])])
        self.assertEqual(len(record), 1)
        return record.conversation_id, delivered

    def reply(self, conversation, body='<p>Danke, erledigt.</p>', user=None, mode=None, partners=None,
              attachments=()):
        """ The agent sends a message from the conversation's chatter; returns the ``mail.message``. """
        conversation = conversation.with_user(user or self.agent)
        if mode:
            conversation = conversation.with_context(epilot_outlook_send_mode=mode)
        attachment_ids = [self.env['ir.attachment'].create({
            'name': name, 'raw': raw, 'res_model': 'epilot.shared.conversation', 'res_id': conversation.id,
        }).id for name, raw in attachments]
        return conversation.message_post(
            body=body, message_type='comment', subtype_xmlid='mail.mt_comment',
            partner_ids=(partners or conversation.partner_id).ids, attachment_ids=attachment_ids)

    def mails_of(self, message):
        return self.env['mail.mail'].sudo().search([('mail_message_id', '=', message.id)])

    def sent(self):
        return self.sandbox.control('GET', '/mail/sent')['value']

    def run_mail_queue(self):
        self.env['mail.mail'].sudo().process_email_queue()
        self.env.invalidate_all()
