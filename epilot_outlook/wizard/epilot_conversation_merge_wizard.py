from odoo import api, fields, models
from odoo.exceptions import UserError


class EpilotConversationMergeWizard(models.TransientModel):
    """ Merge conversations of one shared inbox into one of them (by default the oldest): see
    ``epilot.shared.conversation._outlook_merge_into``, which checks the user and does the work. """
    _name = 'epilot.conversation.merge.wizard'
    _description = "Merge Conversations"

    conversation_ids = fields.Many2many(
        string="Conversations",
        comodel_name='epilot.shared.conversation',
        default=lambda self: self._default_conversation_ids(),
    )
    target_id = fields.Many2one(
        string="Merge Into",
        comodel_name='epilot.shared.conversation',
        compute='_compute_target_id', store=True, readonly=False, precompute=True,
        domain="[('id', 'in', conversation_ids)]",
        help="The conversation that stays: the others' e-mails, notes, followers and activities move to it.",
    )

    @api.model
    def _default_conversation_ids(self):
        # From the list's Actions menu: the selected conversations.
        if self.env.context.get('active_model') == 'epilot.shared.conversation':
            return self.env.context.get('active_ids') or []
        return []

    @api.depends('conversation_ids')
    def _compute_target_id(self):
        for wizard in self:
            if wizard.target_id not in wizard.conversation_ids._origin:
                wizard.target_id = wizard.conversation_ids._origin.sorted(lambda conversation: (
                    conversation.first_message_date or fields.Datetime.now(), conversation.id))[:1]

    def action_outlook_merge(self):
        """ Merge, then open the conversation that stays. """
        self.ensure_one()
        if not self.target_id:
            raise UserError(self.env._("Pick the conversation to merge into."))
        target = self.conversation_ids._outlook_merge_into(self.target_id)
        return {'type': 'ir.actions.act_window', 'res_model': target._name, 'res_id': target.id,
                'views': [(False, 'form')], 'target': 'current'}


class EpilotConversationSplitWizard(models.TransientModel):
    """ Split an e-mail (and, if asked, the later ones) off its conversation into a new one: see
    ``epilot.shared.conversation._outlook_split``, which checks the user and does the work. """
    _name = 'epilot.conversation.split.wizard'
    _description = "Split an E-mail Off"

    conversation_id = fields.Many2one(
        string="Conversation", comodel_name='epilot.shared.conversation', required=True, readonly=True)
    message_id = fields.Many2one(string="E-mail", comodel_name='mail.message', required=True, readonly=True)
    subject = fields.Char(related='message_id.subject', string="Subject")
    email_from = fields.Char(related='message_id.email_from', string="From")
    date = fields.Datetime(related='message_id.date', string="Date")
    with_later = fields.Boolean(
        string="And the Later E-mails",
        help="Also move the e-mails of the conversation that came after this one.")

    def _outlook_messages(self):
        """ The e-mails to move: the one chosen, and the later ones of the conversation if asked. """
        self.ensure_one()
        message = self.message_id
        if not self.with_later:
            return message
        emails, _records = self.conversation_id._outlook_emails()
        return message | emails.filtered(lambda email: (email.date, email.id) > (message.date, message.id))

    def action_outlook_split(self):
        """ Split, then open the new conversation. """
        self.ensure_one()
        self.conversation_id._outlook_check_can_rearrange()   # before reading the e-mails as the superuser
        new = self.conversation_id._outlook_split(self._outlook_messages())
        return {'type': 'ir.actions.act_window', 'res_model': new._name, 'res_id': new.id,
                'views': [(False, 'form')], 'target': 'current'}
