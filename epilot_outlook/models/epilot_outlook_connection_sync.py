from odoo import fields, models


class EpilotOutlookConnection(models.Model):
    """ The mail-sync side of the connection: polling interval, and the button that adds a shared mailbox. """
    _inherit = 'epilot.outlook.connection'

    poll_interval_minutes = fields.Integer(
        string="Polling Interval (Minutes)",
        help="How often Odoo asks Microsoft Graph for changes (delta) of each synced folder.",
        required=True,
        default=1,
    )

    _poll_interval_positive = models.Constraint(
        'CHECK (poll_interval_minutes BETWEEN 1 AND 1440)',
        "The polling interval must be between 1 and 1440 minutes.",
    )

    # === ACTION METHODS === #

    def action_outlook_add_address(self):
        """ Open the wizard that connects a shared mailbox to this connection. """
        self.ensure_one()
        return {
            'type': 'ir.actions.act_window',
            'name': self.env._("Add a Shared Mailbox"),
            'res_model': 'epilot.outlook.address.wizard',
            'view_mode': 'form',
            'target': 'new',
            'context': {'default_connection_id': self.id},
        }
