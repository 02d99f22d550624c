from odoo import api, models


class ResPartner(models.Model):
    _inherit = 'res.partner'

    @api.model_create_multi
    def create(self, vals_list):
        """ Override of `base` to link the shared inboxes' conversations with a correspondent of that address
        and no contact yet (an inbox that creates no contacts, then someone made one). """
        partners = super().create(vals_list)
        by_email = {}
        for partner in partners:
            if partner.email_normalized and not partner.parent_id:
                by_email.setdefault(partner.email_normalized, partner)
        if by_email:
            conversations_sudo = self.env['epilot.shared.conversation'].sudo().search([
                ('partner_id', '=', False), ('correspondent_email', 'in', list(by_email)),
            ])
            for email, conversations in conversations_sudo.grouped(
                    lambda conversation: (conversation.correspondent_email or '').lower()).items():
                if email in by_email:
                    conversations.partner_id = by_email[email]
        return partners
