import logging

from odoo import api, fields, models
from odoo.exceptions import UserError
from odoo.tools import email_normalize, email_normalize_all, escape_psql

_logger = logging.getLogger(__name__)


class EpilotOutlookEraseWizard(models.TransientModel):
    """ Erase everything synced for one correspondent (a GDPR erasure request).

    What goes: every conversation whose correspondent is the address (all its e-mails, the team's replies and
    the agents' notes included) and every other synced e-mail the address sent, with their attachments. What
    stays: Outlook's copies (Odoo never deletes in Outlook), the contact (``res.partner``, shared with the rest
    of Odoo), and for each erased e-mail a tombstone holding only Outlook's id, so that sync does not bring it
    back.
    """
    _name = 'epilot.outlook.erase.wizard'
    _description = "Erase a Correspondent's Synced Mail"

    partner_id = fields.Many2one(
        string="Contact",
        comodel_name='res.partner',
        # Opened from a contact's Action menu.
        default=lambda self: self.env.context.get('active_id')
        if self.env.context.get('active_model') == 'res.partner' else False,
    )
    email = fields.Char(
        string="Email", required=True, compute='_compute_email', store=True, readonly=False, precompute=True)
    conversation_count = fields.Integer(string="Conversations", compute='_compute_counts')
    message_count = fields.Integer(string="E-mails", compute='_compute_counts')
    attachment_count = fields.Integer(string="Attachments", compute='_compute_counts')
    summary = fields.Text(string="Summary", compute='_compute_counts')

    # === COMPUTE METHODS === #

    @api.depends('partner_id')
    def _compute_email(self):
        for wizard in self:
            if wizard.partner_id.email_normalized:
                wizard.email = wizard.partner_id.email_normalized

    @api.depends('email')
    def _compute_counts(self):
        for wizard in self:
            conversations, records = wizard._outlook_targets()
            messages = records.mail_message_id
            wizard.conversation_count = len(conversations)
            wizard.message_count = len(messages)
            wizard.attachment_count = len(messages.attachment_ids)
            wizard.summary = self.env._(
                "%(conversations)s conversations, %(messages)s e-mails and %(attachments)s attachments synced for "
                "%(email)s will be deleted from Odoo. Outlook keeps its copies and the contact is kept. This "
                "cannot be undone.",
                conversations=wizard.conversation_count, messages=wizard.message_count,
                attachments=wizard.attachment_count, email=wizard.email or '',
            ) if wizard.email else False

    # === BUSINESS METHODS === #

    def _outlook_targets(self):
        """ The conversations of the correspondent, and the sync records of every e-mail to erase, in the
        companies the user works in (``self.env.companies``; mail of an inbox without a company too, as the
        record rules let them see it).

        The address is matched whole (case-insensitive, normalized): an erasure request names one person, and
        ``_`` or ``%`` in it are characters of that address, not LIKE wildcards standing for others'.

        :rtype: tuple
        """
        self.ensure_one()
        Conversation_sudo = self.env['epilot.shared.conversation'].sudo()
        Message_sudo = self.env['epilot.outlook.message'].sudo()
        email = email_normalize(self.email or '')
        if not email:
            return Conversation_sudo, Message_sudo
        company_ids = self.env.companies.ids + [False]
        # The LIKEs only narrow the searches (wildcards escaped; unaccent, where configured, would still let
        # "josé" match "jose"): the filters decide, on the exact address.
        conversations = Conversation_sudo.search([
            ('company_id', 'in', company_ids),
            '|', ('correspondent_email', '=ilike', escape_psql(email)), ('partner_id.email_normalized', '=', email),
        ]).filtered(lambda conversation: (conversation.correspondent_email or '').lower() == email
                    or conversation.partner_id.email_normalized == email)
        sent = self.env['mail.message'].sudo().search([
            ('model', '=', Conversation_sudo._name), ('message_type', '=', 'email'),
            '|', ('author_id.email_normalized', '=', email), ('email_from', 'ilike', escape_psql(email)),
        ]).filtered(lambda message: message.author_id.email_normalized == email
                    or email in email_normalize_all(message.email_from or ''))
        records = Message_sudo.search([
            ('erased', '=', False), ('mail_message_id', '!=', False), ('inbox_id.company_id', 'in', company_ids),
            '|', ('conversation_id', 'in', conversations.ids), ('mail_message_id', 'in', sent.ids),
        ])
        return conversations, records

    # === ACTION METHODS === #

    def action_outlook_erase(self):
        """ Erase, then say what was erased. """
        self.ensure_one()
        if not self.env.user.has_group('epilot_outlook.group_email_setting_edit'):
            raise UserError(self.env._("Only email settings editors can erase synced mail."))
        conversations, records = self._outlook_targets()
        if not records and not conversations:
            raise UserError(self.env._("Nothing synced for %(email)s.", email=self.email))
        count = len(conversations)
        messages, attachments = records._outlook_erase()
        conversations.exists().unlink()   # those without any synced e-mail left
        _logger.info("Microsoft Outlook: erasure request: %s conversations, %s e-mails, %s attachments erased",
                     count, messages, attachments)
        return {
            'type': 'ir.actions.client',
            'tag': 'display_notification',
            'params': {
                'type': 'success',
                'message': self.env._(
                    "Erased %(conversations)s conversations, %(messages)s e-mails and %(attachments)s attachments.",
                    conversations=count, messages=messages, attachments=attachments),
                'next': {'type': 'ir.actions.act_window_close'},
            },
        }
