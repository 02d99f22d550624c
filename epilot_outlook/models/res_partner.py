from odoo import api, models
from odoo.tools import email_normalize


class ResPartner(models.Model):
    _name = 'res.partner'
    _inherit = ['res.partner', 'epilot.conversation.linked.mixin']
    _epilot_conversation_link = 'partner_id'

    @api.model_create_multi
    def create(self, vals_list):
        """ Override of `base` to link the shared inboxes' conversations with a correspondent of that address
        and no contact yet (an inbox that creates no contacts, then someone made one). """
        partners = super().create(vals_list)
        partners.filtered(lambda partner: partner.email_normalized and not partner.parent_id)._outlook_link_conversations()
        return partners

    def _outlook_link_conversations(self):
        """ Make these contacts the correspondents of the conversations of their address that have none, and
        the authors of those conversations' e-mails from their address (the chatter then shows the contact,
        not a bare address). As the superuser: it follows from the contact, whoever may see the mail. A contact
        of one company is linked to that company's conversations only. """
        by_email = {}
        for partner in self:
            by_email.setdefault(partner.email_normalized, partner)
        by_email.pop(False, None)
        if not by_email:
            return
        conversations_sudo = self.env['epilot.shared.conversation'].sudo().search([
            ('correspondent_email', 'in', list(by_email)),
        ]).filtered(lambda conversation: by_email[conversation.correspondent_email.lower()].company_id
                    in (conversation.company_id, self.env['res.company']))
        messages_sudo = self.env['mail.message'].sudo().search([
            ('model', '=', 'epilot.shared.conversation'), ('res_id', 'in', conversations_sudo.ids),
            ('author_id', '=', False), ('message_type', '=', 'email'),
        ])
        for email, conversations in conversations_sudo.filtered(lambda conversation: not conversation.partner_id).grouped(
                lambda conversation: conversation.correspondent_email.lower()).items():
            conversations.partner_id = by_email[email]
        for email, messages in messages_sudo.grouped(lambda message: email_normalize(message.email_from or '')).items():
            if email in by_email:
                messages.author_id = by_email[email]
