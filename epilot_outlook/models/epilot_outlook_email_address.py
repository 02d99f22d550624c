from odoo import api, fields, models
from odoo.exceptions import ValidationError

# Bounds of the backfill window, in days. Kept in one place: the SQL CHECK and the Python constraint both use them.
BACKFILL_DAYS_MIN = 1
BACKFILL_DAYS_MAX = 3650
BACKFILL_DAYS_DEFAULT = 30


class EpilotOutlookEmailAddress(models.Model):
    """ A Microsoft 365 shared mailbox address that a connection syncs into a shared inbox.

    The address belongs to its connection and is deleted with it. The shared inbox it feeds does not: the
    inbox, its conversations and their history outlive the Outlook address.
    """
    _name = 'epilot.outlook.email.address'
    _description = "Outlook Email Address"
    _inherit = ['epilot.outlook.address.mixin']
    _order = 'email, id'
    _rec_name = 'email'
    _check_company_auto = True

    email = fields.Char(required=True)
    name = fields.Char(string="Mailbox Name", help="The display name of the shared mailbox in Outlook.")
    connection_id = fields.Many2one(
        string="Connection",
        comodel_name='epilot.outlook.connection',
        required=True,
        default=lambda self: self._default_connection_id(),
        ondelete='cascade',  # Disconnecting a tenant removes its addresses, never the inboxes they fed.
        index=True,
    )
    company_id = fields.Many2one(related='connection_id.company_id', store=True, index=True, precompute=True)
    shared_inbox_id = fields.Many2one(
        string="Shared Inbox",
        comodel_name='epilot.shared.inbox',
        ondelete='restrict',  # An inbox still fed by an address must not vanish under it; archive it instead.
        index='btree_not_null',
        check_company=True,
    )
    backfill_days = fields.Integer(
        string="Backfill Window (Days)",
        help="How many days of past mail to import when the address is first synced.",
        required=True,
        default=BACKFILL_DAYS_DEFAULT,
    )
    sync_mode = fields.Selection(
        string="Sync Mode",
        selection=[
            ('webhook', "Webhook"),
            ('polling', "Delta Polling"),
        ],
        help="Webhook: Graph notifies Odoo of new mail. Delta polling: Odoo asks Graph for changes on a "
             "schedule, for mailboxes where Graph refuses a subscription.",
        required=True,
        default='webhook',
    )
    sync_state = fields.Selection(
        string="Sync Status",
        selection=[
            ('pending', "Pending"),
            ('backfilling', "Backfilling"),
            ('live', "Live"),
            ('polling', "Polling"),
            ('paused', "Paused"),
            ('error', "Error"),
        ],
        required=True,
        default='pending',
        copy=False,
    )
    last_sync_date = fields.Datetime(string="Last Sync", copy=False)
    paused_from_state = fields.Char(
        string="Sync Status Before Pause",
        help="Technical: where sync stood when the connection stopped, to resume there after a reconnect.",
        copy=False,
    )

    _email_connection_uniq = models.UniqueIndex(
        '(connection_id, lower(email))',
        "This email address is already configured on this Outlook connection.",
    )
    _backfill_days_range = models.Constraint(
        f'CHECK (backfill_days BETWEEN {BACKFILL_DAYS_MIN} AND {BACKFILL_DAYS_MAX})',
        "The backfill window must be between 1 and 3650 days.",
    )

    # === DEFAULT METHODS === #

    @api.model
    def _default_connection_id(self):
        """ Return the connection of the current company: there is at most one. """
        return self.env['epilot.outlook.connection'].search([('company_id', '=', self.env.company.id)], limit=1)

    # === CONSTRAINT METHODS === #

    @api.constrains('backfill_days')
    def _check_backfill_days(self):
        """ Check that the backfill window is within bounds.

        The SQL CHECK `_backfill_days_range` guards the table; this gives the user the bounds and the value
        before the database is reached on write.

        :return: None
        :raise ValidationError: If a window is out of bounds.
        """
        for address in self:
            if not BACKFILL_DAYS_MIN <= address.backfill_days <= BACKFILL_DAYS_MAX:
                raise ValidationError(self.env._(
                    "The backfill window of %(email)s is %(days)s days; it must be between %(min)s and "
                    "%(max)s days.",
                    email=address.email, days=address.backfill_days,
                    min=BACKFILL_DAYS_MIN, max=BACKFILL_DAYS_MAX,
                ))

    # === BUSINESS METHODS - PAUSE AND RESUME === #

    def _outlook_pause(self):
        """ Pause sync while the connection needs a reconnect, remembering where each address stood. """
        for address in self.filtered(lambda address: address.sync_state != 'paused'):
            address.write({'paused_from_state': address.sync_state, 'sync_state': 'paused'})

    def _outlook_resume(self):
        """ Resume the addresses paused by :meth:`_outlook_pause` where they stood. """
        for address in self.filtered(lambda address: address.sync_state == 'paused'):
            address.write({'sync_state': address.paused_from_state or 'pending', 'paused_from_state': False})
