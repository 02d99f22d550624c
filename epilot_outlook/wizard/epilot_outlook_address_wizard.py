from odoo import api, fields, models

from ..models.epilot_outlook_email_address import BACKFILL_DAYS_DEFAULT


class EpilotOutlookAddressWizard(models.TransientModel):
    """ Add a shared mailbox: check access, link (or create) its shared inbox, start backfill and live sync.

    Everything happens in the one transaction of the button: when Microsoft refuses, the explained error rolls
    it back and nothing half-made is left (no address, no inbox).
    """
    _name = 'epilot.outlook.address.wizard'
    _description = "Add a Shared Mailbox"
    _inherit = ['epilot.outlook.address.mixin']

    connection_id = fields.Many2one(
        string="Connection",
        comodel_name='epilot.outlook.connection',
        required=True,
        default=lambda self: self.env['epilot.outlook.email.address']._default_connection_id(),
    )
    email = fields.Char(required=True)
    backfill_days = fields.Integer(
        string="Import the Last (Days)",
        help="Mail received in this many past days is imported; newer mail follows live.",
        required=True,
        default=BACKFILL_DAYS_DEFAULT,
    )
    odoo_mail_warning = fields.Text(
        string="Odoo's Own Mail Warning", compute='_compute_odoo_mail_warning',
        help="Odoo sends its own mail from this address.")
    shared_inbox_id = fields.Many2one(
        string="Shared Inbox",
        comodel_name='epilot.shared.inbox',
        help="Leave empty: the inbox that already has this address is used, or one is created and named after "
             "the mailbox.",
    )

    # === COMPUTE METHODS === #

    @api.depends('email', 'connection_id')
    def _compute_odoo_mail_warning(self):
        Address = self.env['epilot.outlook.email.address']
        for wizard in self:
            wizard.odoo_mail_warning = Address._outlook_odoo_mail_warning(
                wizard.email, wizard.connection_id.company_id)

    # === ACTION METHODS === #

    def action_outlook_add(self):
        """ Create the address and start its sync; open it. """
        self.ensure_one()
        address = self.env['epilot.outlook.email.address'].with_context(active_test=False).search([
            ('connection_id', '=', self.connection_id.id), ('email', '=', self.email),
        ], limit=1)
        values = {'backfill_days': self.backfill_days}
        if self.shared_inbox_id:
            values['shared_inbox_id'] = self.shared_inbox_id.id
        if address:
            address.write(values)
        else:
            address = self.env['epilot.outlook.email.address'].create({
                **values, 'email': self.email, 'connection_id': self.connection_id.id,
            })
        address._outlook_start_sync()
        return {
            'type': 'ir.actions.act_window',
            'res_model': 'epilot.outlook.email.address',
            'res_id': address.id,
            'view_mode': 'form',
            'target': 'current',
        }
