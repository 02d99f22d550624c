import logging
import threading
from collections import Counter
from datetime import timedelta

from odoo import api, fields, models
from odoo.exceptions import UserError
from odoo.tools import SQL

from ..outlook_core import notifications
from ..outlook_core.logsafe import LogLimit
from .epilot_outlook_subscription import MISMATCH_QUEUE_MAX

_logger = logging.getLogger(__name__)

# What an item that passed its checks asks of the crons (a lifecycle event or a change), by event.
_KIND_BY_EVENT = {
    'created': 'change',
    'updated': 'change',
    'deleted': 'change',
    notifications.MISSED: 'missed',
    notifications.REAUTHORIZATION_REQUIRED: 'reauthorizationRequired',
    notifications.SUBSCRIPTION_REMOVED: 'subscriptionRemoved',
}
# A trigger of the delta cron due this close to now (not yet consumed) already covers a new notification: no new
# one. A trigger due later (a retry after throttling) covers nothing: the notification would wait for it.
_TRIGGER_COVERS = timedelta(seconds=2)
# Anyone can post to the webhook: the log lines its input causes are limited to one a minute per kind of line and
# sender (IP address), each saying how many events it stands for. Shared with the controller (refused bodies).
WEBHOOK_LOG_LIMIT = LogLimit(interval=60, max_senders=1024)
# Rejected notifications (wrong clientState or tenant) of a subscription whose queue holds MISMATCH_QUEUE_MAX rows
# already: counted here, by subscription id, and carried by this process's next row for it.
_held_mismatches = {}
_held_mismatches_lock = threading.Lock()


class EpilotOutlookPushEvent(models.Model):
    """ What the webhook received and the crons have not handled yet: an insert-only queue.

    The webhook hands each notification batch to :meth:`_outlook_accept`, which checks every item against its
    subscription and writes one row per subscription and kind of event, in one ``INSERT``, and never updates a
    row: concurrent notifications (20 connections, two servers) never wait on each other's row locks nor fail on
    a serialization conflict. The delta cron is the one consumer: it deletes the rows it read and folds them into
    the subscriptions (counters, flags) and into the folders' "round wanted" mark, so a burst of notifications
    costs one delta round per folder, not one per notification.

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

    # === BUSINESS METHODS === #

    @api.model
    def _outlook_accept(self, items, sender):
        """ Check each notification against its subscription and queue the valid ones (one row per subscription
        and kind); wake the delta cron unless a trigger of it is already pending.

        One ``SELECT`` (the subscriptions named, their encrypted clientState and their connection's tenant,
        through the secret mixin), one ``INSERT``. Anyone can post, so what they post costs a bounded number of
        queued rows (rejected notifications: ``MISMATCH_QUEUE_MAX`` per subscription until the delta cron reads
        them) and of log lines (:data:`WEBHOOK_LOG_LIMIT`).

        :param list items: :class:`outlook_core.notifications` items of one batch.
        :param str sender: The sender's IP address (for the log lines).
        """
        graph_ids = {item.subscription_id for item in items if item.subscription_id}
        if not graph_ids:
            if items and (events := WEBHOOK_LOG_LIMIT.take('malformed', sender, len(items))):
                _logger.info("Microsoft Outlook: webhook: %d malformed notifications ignored from %s%s", len(items),
                             sender, LogLimit.also(events, len(items), "ignored"))
            return
        Subscription = self.env['epilot.outlook.subscription']
        Connection = self.env['epilot.outlook.connection']
        cron_id = self.env.ref('epilot_outlook.ir_cron_outlook_delta').id
        now = fields.Datetime.now()
        rows = self.env.execute_query(SQL(
            """SELECT s.id, s.graph_id, s.%(state)s, c.%(tenant)s,
                      EXISTS (SELECT 1 FROM ir_cron_trigger t WHERE t.cron_id = %(cron)s
                                                                  AND t.call_at BETWEEN %(since)s AND %(until)s),
                      (SELECT count(*) FROM epilot_outlook_push_event e WHERE e.subscription_id = s.id
                                                                          AND e.kind = 'mismatch')
                 FROM epilot_outlook_subscription s
                 JOIN epilot_outlook_connection c ON c.id = s.connection_id
                WHERE s.graph_id IN %(ids)s""",
            state=SQL.identifier(Subscription._outlook_secret_column('client_state')),
            tenant=SQL.identifier(Connection._outlook_secret_column('tenant_id')),
            cron=cron_id, since=now - _TRIGGER_COVERS, until=now + _TRIGGER_COVERS, ids=tuple(graph_ids),
        ))
        try:
            vault = Subscription._outlook_vault() if rows else None
        except UserError:
            if events := WEBHOOK_LOG_LIMIT.take('no_key', None, len(items)):
                _logger.warning("Microsoft Outlook: webhook: no encryption key configured; %d notifications ignored",
                                events)
            return
        known, mismatches_queued = {}, {}
        for sub_id, graph_id, state_ciphertext, tenant_ciphertext, _triggered, mismatches in rows:
            # A key that is gone opens nothing: no notification can match; counted as unknown/mismatch.
            known[graph_id] = (sub_id, Subscription._outlook_decrypt_cached(vault, state_ciphertext),
                               Subscription._outlook_decrypt_cached(vault, tenant_ciphertext))
            mismatches_queued[sub_id] = mismatches
        queued, outcomes = Counter(), Counter()
        for item in items:
            sub_id, client_state, tenant_id = known.get(item.subscription_id, (None, None, None))
            outcome = notifications.check_item(item, client_state, tenant_id)
            outcomes[outcome] += 1
            if outcome == notifications.OK:
                queued[sub_id, _KIND_BY_EVENT[item.event]] += 1
            elif outcome in (notifications.CLIENT_STATE_MISMATCH, notifications.TENANT_MISMATCH):
                queued[sub_id, 'mismatch'] += 1
        unknown = outcomes[notifications.UNKNOWN_SUBSCRIPTION]
        if unknown and (events := WEBHOOK_LOG_LIMIT.take('unknown', None, unknown)):
            _logger.warning("Microsoft Outlook: webhook: %d notifications for unknown subscriptions ignored", events)
        ignored = len(items) - outcomes[notifications.OK]
        if ignored and (events := WEBHOOK_LOG_LIMIT.take('ignored', sender, ignored)):
            _logger.info("Microsoft Outlook: webhook: notifications ignored from %s: %s%s", sender,
                         ', '.join('%s %d' % pair for pair in sorted(outcomes.items()) if pair[0] != 'ok'),
                         LogLimit.also(events, ignored, "ignored"))
        for sub_id in [sub_id for sub_id, kind in queued if kind == 'mismatch']:
            if count := _mismatches_to_queue(sub_id, queued.pop((sub_id, 'mismatch')), mismatches_queued[sub_id]):
                queued[sub_id, 'mismatch'] = count
        if not queued:
            return
        # One round trip. The commit does not wait for the disk (``synchronous_commit`` off for this transaction
        # only): a crash in that instant loses a notification, which the delta safety round catches anyway, as
        # it catches the ones Graph drops; the 202 does not wait on an fsync, under load the most it costs.
        self.env.execute_query(SQL(
            "SET LOCAL synchronous_commit TO OFF; "
            "INSERT INTO epilot_outlook_push_event (subscription_id, kind, count, received_at) VALUES %s",
            SQL(", ").join(SQL("(%s, %s, %s, %s)", sub_id, kind, count, now)
                           for (sub_id, kind), count in queued.items()),
        ))
        triggered = rows[0][4]
        if not triggered and any(kind != 'mismatch' for _sub_id, kind in queued):
            self.env['ir.cron'].sudo().browse(cron_id)._trigger()


def _mismatches_to_queue(sub_id, count, queued):
    """ How many rejected notifications a new queue row of subscription ``sub_id`` carries: these ``count`` and
    those held back before, while its queue holds fewer than :data:`MISMATCH_QUEUE_MAX` rows (concurrent requests
    may each add one more); else none, and they are held back, counted in this process.

    :param int queued: The subscription's rows of rejected notifications in the queue.
    :rtype: int
    """
    with _held_mismatches_lock:
        if queued >= MISMATCH_QUEUE_MAX:
            _held_mismatches[sub_id] = _held_mismatches.get(sub_id, 0) + count
            return 0
        return count + _held_mismatches.pop(sub_id, 0)
