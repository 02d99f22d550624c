from odoo import fields, models


class EpilotOutlookPushEvent(models.Model):
    """ What the webhook received and the crons have not handled yet: an insert-only queue.

    The webhook writes one row per subscription and kind of event of a notification POST, in one ``INSERT``,
    and never updates a row: concurrent notifications (20 connections, two servers) never wait on each other's
    row locks nor fail on a serialization conflict. The delta cron is the one consumer: it deletes the rows it
    read and folds them into the subscriptions (counters, flags) and into the folders' "round wanted" mark, so a
    burst of notifications costs one delta round per folder, not one per notification.

    No access rights: only the webhook and the crons (sudo) read and write it.
    """
    _name = 'epilot.outlook.push.event'
    _description = "Outlook Push Notification (queued)"
    _log_access = False
    _order = 'id'

    subscription_id = fields.Many2one(
        comodel_name='epilot.outlook.subscription', required=True, ondelete='cascade', index=True)
    kind = fields.Selection(
        selection=[
            ('change', "Change"),
            ('missed', "Missed"),
            ('resync', "Round Wanted"),
            ('reauthorizationRequired', "Reauthorization Required"),
            ('subscriptionRemoved', "Subscription Removed"),
            ('mismatch', "Wrong clientState or Tenant"),
        ],
        required=True,
    )
    count = fields.Integer(required=True, default=1)
    received_at = fields.Datetime(required=True)
