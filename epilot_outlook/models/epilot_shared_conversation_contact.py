from markupsafe import Markup

from odoo import api, fields, models
from odoo.tools import formataddr


class EpilotSharedConversation(models.Model):
    """ Who the customer of a conversation is: its contact, or the name and address they wrote from (an inbox
    creates no contacts unless told to), and the agent's way to make them a contact. """
    _inherit = 'epilot.shared.conversation'

    customer_display = fields.Char(
        string="Customer", compute='_compute_customer_display',
        help="The contact, or else the name and address the customer wrote from.")

    @api.depends('partner_id', 'correspondent_name', 'correspondent_email')
    def _compute_customer_display(self):
        for conversation in self:
            conversation.customer_display = conversation.partner_id.display_name or (
                formataddr((conversation.correspondent_name or '', conversation.correspondent_email))
                if conversation.correspondent_email else conversation.correspondent_name or False)

    # === ACTION METHODS === #

    def action_outlook_create_contact(self):
        """ Make each conversation's correspondent a contact: the contact of that address if there is one, else
        a new one with the name and address the customer wrote from. It becomes the correspondent of every
        conversation of that address without one, and the author of their e-mails from that address.

        Members may do it without Odoo's right to create contacts: only these two values are taken, from mail
        the inbox received (as Reply All does for the people the customer copied).
        """
        self.check_access('write')   # the members of the conversations' inboxes (record rules)
        Partner_sudo = self.env['res.partner'].sudo()
        for conversation in self.filtered(lambda conversation: not conversation.partner_id):
            email = conversation.correspondent_email
            if not email:
                continue
            # A contact of that address this conversation's company may use: shared, or its own.
            partner = Partner_sudo.search([('email_normalized', '=', email),
                                           ('company_id', 'in', [False, conversation.company_id.id])],
                                          order='id', limit=1)
            if partner:
                partner._outlook_link_conversations()
            else:
                # create() links the conversations (res.partner.create)
                partner = Partner_sudo.create({'name': conversation.correspondent_name or email, 'email': email})
            conversation._message_log(body=Markup(self.env._("%(contact)s is the customer's contact now.")) % {
                'contact': partner.sudo(False)._get_html_link()})
        return True
