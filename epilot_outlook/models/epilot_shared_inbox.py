from odoo import fields, models


class EpilotSharedInbox(models.Model):
    """ A team inbox that agents work from.

    It is fed by Outlook email addresses but does not depend on them: removing an address, or the whole
    Outlook connection, leaves the inbox and its history in place. Agents see only the inboxes they are a
    member of (see `security/epilot_outlook_security.xml`).
    """
    _name = 'epilot.shared.inbox'
    _description = "Shared Inbox"
    _inherit = ['epilot.outlook.address.mixin', 'mail.thread', 'mail.activity.mixin']
    _order = 'name, id'

    name = fields.Char(string="Name", required=True, tracking=True)
    email = fields.Char(tracking=True)
    active = fields.Boolean(string="Active", default=True, tracking=True)
    company_id = fields.Many2one(
        string="Company",
        comodel_name='res.company',
        default=lambda self: self.env.company,
        index=True,
    )
    member_user_ids = fields.Many2many(
        string="Members",
        comodel_name='res.users',
        relation='epilot_shared_inbox_res_users_rel',
        column1='inbox_id',
        column2='user_id',
        domain=[('share', '=', False)],
        help="The agents who work in this inbox. Agents only see the inboxes they are a member of.",
    )
    outlook_address_ids = fields.One2many(
        string="Outlook Addresses",
        comodel_name='epilot.outlook.email.address',
        inverse_name='shared_inbox_id',
        groups='epilot_outlook.group_email_setting_edit',  # Agents have no access to the Outlook setup.
    )
    create_partners = fields.Boolean(
        string="Create Contacts",
        help="Create a contact for every unknown correspondent of this inbox. When off, e-mails from unknown "
             "addresses show the address and no contact is created.",
    )
    conversation_ids = fields.One2many(
        string="Conversations",
        comodel_name='epilot.shared.conversation',
        inverse_name='inbox_id',
    )
    conversation_count = fields.Integer(string="Conversation Count", compute='_compute_conversation_count')

    # === COMPUTE METHODS === #

    def _compute_conversation_count(self):
        counts = dict(self.env['epilot.shared.conversation']._read_group(
            [('inbox_id', 'in', self.ids)], ['inbox_id'], ['__count']))
        for inbox in self:
            inbox.conversation_count = counts.get(inbox, 0)

    # === ACTION METHODS === #

    def action_open_conversations(self):
        self.ensure_one()
        return {
            'type': 'ir.actions.act_window',
            'name': self.name,
            'res_model': 'epilot.shared.conversation',
            'view_mode': 'list,form',
            'domain': [('inbox_id', '=', self.id)],
            'context': {'default_inbox_id': self.id},
        }

