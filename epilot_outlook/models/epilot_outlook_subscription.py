import logging
from collections import defaultdict
from datetime import timedelta

import psycopg2.errors

from odoo import api, fields, models
from odoo.exceptions import UserError
from odoo.tools import SQL
from odoo.tools.translate import LazyTranslate

from ..outlook_core import const, subscriptions as graph_subscriptions
from ..outlook_core.errors import Forbidden, NotFound, OutlookError, Throttled, TransientError
from ..tools.explain import explain

_logger = logging.getLogger(__name__)
_lt = LazyTranslate(__name__)

OUTLOOK_SECRET_COLUMNS = {'client_state': 'outlook_client_state_ciphertext'}
# Renew (PATCH) once less than this is left of the ~7 days Graph grants: a day of Odoo downtime still renews.
RENEW_BEFORE = timedelta(days=2)
# Microsoft: never PATCH and reauthorize the same subscription within 10 minutes (docs/microsoft-graph.md §2.4).
REAUTHORIZE_PATCH_GAP = timedelta(minutes=10)
# A subscription Graph could not create for another reason than a refusal (handshake failed, 5xx) is tried
# again after this; meanwhile delta polling covers the address.
CREATE_RETRY_DELAY = timedelta(minutes=15)
# Wrong clientState or tenant: this many within MISMATCH_WINDOW on one subscription alert the editors, once.
MISMATCH_ALERT_THRESHOLD = 10
MISMATCH_WINDOW = timedelta(hours=1)
# Rows of rejected notifications the webhook queues per subscription, at most, until the delta cron reads the
# queue (every minute): whoever knows a subscription's id can post forged notifications without end. Those past
# it are counted in the webhook's process and carried by its next row for the subscription, not stored. As many
# as the alert threshold, so that the alert never waits for a count held back.
MISMATCH_QUEUE_MAX = MISMATCH_ALERT_THRESHOLD
# How long a sync step waits for Retry-After or a mailbox slot before rescheduling (as the sync steps).
GRAPH_MAX_WAIT_S = 2
# Errors of the database after which the step is retried later (another worker wrote the same rows).
DB_CONFLICTS = (psycopg2.errors.SerializationFailure, psycopg2.errors.DeadlockDetected,
                psycopg2.errors.LockNotAvailable)

REFUSED_WORDING = _lt(
    "Microsoft 365 refused change notifications for this mailbox (%(code)s): Microsoft does not let delegated "
    "permissions subscribe to shared mailboxes. Odoo asks Graph for changes every %(minutes)s minute(s) instead "
    "(delta polling); nothing is lost. Push is tried again after a reconnect, or with Retry Push."
)
REMOVED_WORDING = _lt(
    "Microsoft 365 removed the change notifications for this mailbox, as it does when the service account's "
    "password is changed or reset, or its account is disabled. Odoo asks Graph for changes every %(minutes)s "
    "minute(s) instead (delta polling); nothing is lost. It subscribes again once the service account's sign-in "
    "is confirmed at the next token refresh, or after the connection is reconnected."
)
REMOVED_NOTE = _lt(
    "Microsoft 365 removed Odoo's change notifications for %(mailboxes)s. Microsoft does this when the service "
    "account's password is changed or reset, or its account is disabled. Odoo polls these mailboxes meanwhile "
    "(every %(minutes)s minute(s)), so no mail is lost. If an admin reset the password, Microsoft also ended "
    "Odoo's sign-in: the connection asks for a reconnect at its next token refresh (click Reconnect now to sign "
    "in with the new password). Otherwise Odoo subscribes again by itself after that refresh."
)
FAILED_WORDING = _lt(
    "Odoo could not subscribe to change notifications for this mailbox: %(reason)s Odoo polls Graph for changes "
    "meanwhile and tries again in %(minutes)s minutes. Check that the Webhook Base URL on the connection is "
    "Odoo's public https address."
)


class EpilotOutlookSubscription(models.Model):
    """ A Microsoft Graph change-notification subscription on one folder (Inbox, Sent Items) of one address.

    A notification only says "run this folder's delta round now": delta stays the truth. The subscription is
    created when the address starts syncing and again after a reconnect; the subscription cron renews it before
    it expires, reacts to Graph's lifecycle events and recreates it when Graph lost it. Where Graph refuses it
    (shared mailboxes under delegated permissions, docs/microsoft-graph.md §0), the address polls, and says why.

    The ``clientState`` is stored encrypted (secret mixin), never as a field.
    """
    _name = 'epilot.outlook.subscription'
    _description = "Outlook Change Notification Subscription"
    _inherit = ['epilot.outlook.secret.mixin', 'epilot.outlook.work.item']
    _order = 'address_id, folder'
    _outlook_secret_columns = OUTLOOK_SECRET_COLUMNS

    address_id = fields.Many2one(
        string="Email Address", comodel_name='epilot.outlook.email.address', required=True, ondelete='cascade',
        index=True)
    connection_id = fields.Many2one(related='address_id.connection_id', store=True, index=True)
    folder = fields.Selection(
        string="Folder", selection=[('inbox', "Inbox"), ('sentitems', "Sent Items")], required=True)
    graph_id = fields.Char(string="Subscription ID", help="Graph's id of the subscription.", copy=False,
                           index='btree_not_null')
    resource = fields.Char(string="Resource", copy=False)
    expiration = fields.Datetime(string="Expires", help="As Graph returned it.", copy=False)
    state = fields.Selection(
        string="Status",
        selection=[
            ('pending', "To Create"),
            ('active', "Active"),
            ('refused', "Refused by Microsoft"),
            ('removed', "Removed by Microsoft"),
            ('error', "Failed, Retrying"),
        ],
        required=True, default='pending', copy=False,
    )
    needs_reauthorization = fields.Boolean(
        string="Reauthorization Required", help="Graph sent reauthorizationRequired: the cron reauthorizes.",
        copy=False)
    last_notification_date = fields.Datetime(string="Last Notification", copy=False)
    notification_count = fields.Integer(string="Notifications", copy=False)
    mismatch_count = fields.Integer(
        string="Rejected Notifications", help="Notifications with a wrong clientState or tenant, ignored.",
        copy=False)
    mismatch_window_start = fields.Datetime(copy=False)
    mismatch_window_count = fields.Integer(copy=False)
    mismatch_alerted = fields.Boolean(copy=False)
    last_lifecycle_event = fields.Char(string="Last Lifecycle Event", copy=False)
    last_lifecycle_date = fields.Datetime(string="Last Lifecycle Event Date", copy=False)
    removed_token_mark = fields.Char(
        help="Technical: the connection's token set when Microsoft removed the subscription (a digest of its "
             "ciphertext); a new one means the service account's sign-in worked since.", copy=False)
    last_renewed_date = fields.Datetime(string="Last Renewal", copy=False)
    last_reauthorized_date = fields.Datetime(string="Last Reauthorization", copy=False)

    _address_folder_uniq = models.Constraint(
        'UNIQUE (address_id, folder)', "A folder of an address has one subscription.")

    # === CRON METHODS === #

    @api.model
    def _cron_outlook_subscriptions(self):
        """ Create, renew, reauthorize and recreate the subscriptions that are due, one at a time, committing
        after each. Connections that need a reconnect are skipped: their subscriptions lapse and are recreated
        after the reconnect. """
        # Addresses that sync without subscriptions (synced before push existed, or a create that was lost).
        self.env['epilot.outlook.email.address'].sudo().search([
            ('sync_state', 'in', ('backfilling', 'live')), ('connection_id.state', '=', 'connected'),
            ('subscription_ids', '=', False)])._outlook_subscribe()
        self.env['epilot.outlook.email.address']._outlook_run_due_steps(
            self.sudo(), lambda only=None: self._outlook_due(only).ids,
            lambda subscription: subscription._outlook_maintain())

    @api.model
    def _outlook_due(self, only=None):
        now = fields.Datetime.now()
        return self.sudo().search([
            *([('id', 'in', only)] if only is not None else []),
            ('address_id.sync_state', 'in', ('backfilling', 'live')),
            ('connection_id.state', '=', 'connected'),
            '|', ('retry_at', '=', False), ('retry_at', '<=', now),
            '|', '|', '|', '|',
            ('state', '=', 'pending'),
            ('state', '=', 'error'),
            ('state', '=', 'removed'),
            ('needs_reauthorization', '=', True),
            '&', ('state', '=', 'active'), ('expiration', '<', now + RENEW_BEFORE),
        ], order='retry_at asc nulls first, id').filtered(
            lambda sub: sub.state != 'removed' or sub._outlook_signed_in_since_removal())

    # === BUSINESS METHODS - MAINTENANCE === #

    def _outlook_maintain(self):
        """ One step on this subscription: create it, reauthorize it or renew it, as due.

        :return: True (the loop may go on).
        """
        self.ensure_one()
        now = fields.Datetime.now()
        if self.state in ('pending', 'error', 'removed'):
            self._outlook_create()
        elif self.needs_reauthorization:
            self._outlook_reauthorize(now)
        elif self.expiration and self.expiration < now + RENEW_BEFORE:
            self._outlook_renew(now)
        return True

    def _outlook_create(self):
        """ (Re)create the subscription in Graph with a fresh clientState; the old one, if any, is deleted.

        Graph validates the webhook before answering: Odoo must be reachable at the connection's Webhook Base
        URL. A refusal (403) switches the address to polling with the reason; other failures retry later.
        """
        address = self.address_id
        connection = address.connection_id
        client_state = graph_subscriptions.new_client_state()
        old_graph_id = self.graph_id
        base = connection.webhook_base_url.removesuffix(const.WEBHOOK_BASE_PATH)

        def create(client):
            if old_graph_id:
                graph_subscriptions.delete(client, old_graph_id)
            return graph_subscriptions.create(
                client, address.email, self.folder, base + const.WEBHOOK_NOTIFY_PATH,
                base + const.WEBHOOK_LIFECYCLE_PATH, client_state)

        try:
            info = self._outlook_graph(create)
        except Forbidden as error:
            _logger.info("Microsoft Outlook: address %s, %s: Graph refused the subscription (%s); polling",
                         address.id, self.folder, error.code or error.status)
            reason = self.env._(REFUSED_WORDING) % {'code': error.code or error.status,
                                                    'minutes': connection.poll_interval_minutes}
            self.write({'state': 'refused', 'graph_id': False, 'expiration': False, 'last_error': reason,
                        'needs_reauthorization': False, 'retry_at': False})
            address._outlook_update_push_mode()
            return
        except _RETRY_LATER as error:
            self._outlook_retry_later(error)
            return
        except (OutlookError, UserError) as error:
            _logger.warning("Microsoft Outlook: address %s, %s: subscription not created: %s", address.id,
                            self.folder, error)
            reason = self.env._(FAILED_WORDING) % {'reason': explain(self.env, error),
                                                   'minutes': int(CREATE_RETRY_DELAY.total_seconds() // 60)}
            retry_at = fields.Datetime.now() + CREATE_RETRY_DELAY
            self.write({'state': 'error', 'last_error': reason, 'retry_at': retry_at,
                        'needs_reauthorization': False})
            self._outlook_cron()._trigger(at=retry_at)
            address._outlook_update_push_mode()
            return
        self._outlook_encrypt_and_store({'client_state': client_state})
        self.write({
            'state': 'active', 'graph_id': info.id, 'resource': info.resource, 'expiration': info.expiration,
            'needs_reauthorization': False, 'retry_at': False, 'last_error': False, 'mismatch_alerted': False,
            'mismatch_window_count': 0, 'mismatch_window_start': False,
        })
        _logger.info("Microsoft Outlook: address %s, %s: subscribed to change notifications (until %s)",
                     address.id, self.folder, info.expiration)
        address._outlook_update_push_mode()
        # Changes made while there was no subscription were not notified: a delta round catches them.
        self._outlook_want_round()

    def _outlook_renew(self, now):
        """ PATCH the expiry (which also reauthorizes); 404 means Graph lost it: recreate. Never within 10
        minutes of a reauthorize: then wait until those 10 minutes have passed. """
        if self.last_reauthorized_date and now - self.last_reauthorized_date < REAUTHORIZE_PATCH_GAP:
            self._outlook_postpone(self.last_reauthorized_date + REAUTHORIZE_PATCH_GAP)
            return
        graph_id = self.graph_id
        try:
            info = self._outlook_graph(lambda client: graph_subscriptions.renew(client, graph_id))
        except NotFound:
            _logger.info("Microsoft Outlook: subscription %s is gone in Graph; creating it again", self.id)
            self.write({'state': 'pending', 'graph_id': False})
            self._outlook_create()
            return
        except _RETRY_LATER as error:
            self._outlook_retry_later(error)
            return
        except (OutlookError, UserError) as error:
            self._outlook_retry_later(error)
            return
        self.write({'expiration': info.expiration, 'last_renewed_date': fields.Datetime.now(),
                    'needs_reauthorization': False, 'retry_at': False, 'last_error': False})

    def _outlook_reauthorize(self, now):
        """ React to ``reauthorizationRequired``: a renewal due anyway is a PATCH (it reauthorizes too);
        otherwise ``POST /reauthorize``. A PATCH or a reauthorize less than 10 minutes ago already did it.
        Delivery paused until now, so a delta round follows. """
        recent = [date for date in (self.last_renewed_date, self.last_reauthorized_date) if date]
        if recent and now - max(recent) < REAUTHORIZE_PATCH_GAP:
            self.needs_reauthorization = False
            return
        if self.expiration and self.expiration < now + RENEW_BEFORE:
            self._outlook_renew(now)
        else:
            graph_id = self.graph_id
            try:
                self._outlook_graph(lambda client: graph_subscriptions.reauthorize(client, graph_id))
            except NotFound:
                self.write({'state': 'pending', 'graph_id': False, 'needs_reauthorization': False})
                self._outlook_create()
                return
            except (OutlookError, UserError) as error:
                self._outlook_retry_later(error)
                return
            self.write({'last_reauthorized_date': fields.Datetime.now(), 'needs_reauthorization': False,
                        'retry_at': False, 'last_error': False})
        self._outlook_want_round()

    def _outlook_delete_in_graph(self):
        """ Delete these subscriptions in Graph (best effort: one already gone counts as deleted).

        :return: How many were deleted, and the first error met (worded), if any.
        :rtype: tuple
        """
        deleted, failure = 0, None
        for subscription in self.filtered('graph_id'):
            graph_id = subscription.graph_id
            connection = subscription.address_id.connection_id
            if connection.state != 'connected':
                failure = failure or self.env._("the connection is not connected")
                continue
            try:
                if connection._outlook_call_graph(lambda client: graph_subscriptions.delete(client, graph_id)):
                    deleted += 1
            except (OutlookError, UserError) as error:
                failure = failure or explain(self.env, error)
        return deleted, failure

    # === BUSINESS METHODS - NOTIFICATIONS === #

    @api.model
    def _outlook_collect_notifications(self):
        """ Fold what the webhook queued into the subscriptions and the folders: counters, last notification,
        lifecycle flags, and "a delta round is wanted" on the folders notified. Called by the delta cron (the one
        consumer of the queue) before it looks for due folders.

        Runs in a savepoint: if another transaction wrote the same subscription meanwhile, nothing is taken and
        the events wait for the next call.
        """
        try:
            with self.env.cr.savepoint():
                rows = self.env.execute_query(SQL(
                    "DELETE FROM epilot_outlook_push_event RETURNING subscription_id, kind, count, received_at"))
                if rows:
                    self._outlook_apply_events(rows)
        except DB_CONFLICTS:
            _logger.info("Microsoft Outlook: notifications left for the next round (concurrent update)")

    @api.model
    def _outlook_apply_events(self, rows):
        per_subscription = defaultdict(lambda: defaultdict(lambda: [0, None]))
        for subscription_id, kind, count, received_at in rows:
            entry = per_subscription[subscription_id][kind]
            entry[0] += count
            entry[1] = max(entry[1], received_at) if entry[1] else received_at
        subscriptions = self.sudo().browse(list(per_subscription)).exists()
        wake_maintenance = False
        removed = self.sudo()
        now = fields.Datetime.now()
        for subscription in subscriptions:
            events = per_subscription[subscription.id]
            values = {}
            notified = [events[kind] for kind in ('change', 'missed', 'reauthorizationRequired',
                                                  'subscriptionRemoved') if kind in events]
            if notified:
                values['notification_count'] = subscription.notification_count + sum(n for n, _at in notified)
                values['last_notification_date'] = max(at for _n, at in notified)
            for event in ('missed', 'reauthorizationRequired', 'subscriptionRemoved'):
                if event in events:
                    values['last_lifecycle_event'] = event
                    values['last_lifecycle_date'] = events[event][1]
            if 'reauthorizationRequired' in events and subscription.state == 'active':
                values['needs_reauthorization'] = True
                wake_maintenance = True
            if 'subscriptionRemoved' in events and subscription.state != 'removed':
                _logger.info("Microsoft Outlook: subscription %s removed by Microsoft; polling until a token "
                             "refresh confirms the service account's sign-in", subscription.id)
                connection = subscription.connection_id
                values.update({
                    'state': 'removed', 'graph_id': False, 'expiration': False, 'needs_reauthorization': False,
                    'retry_at': False, 'removed_token_mark': connection._outlook_token_set_mark(),
                    'last_error': self.env._(REMOVED_WORDING) % {'minutes': connection.poll_interval_minutes},
                })
                removed |= subscription
            if 'mismatch' in events:
                values.update(subscription._outlook_count_mismatches(events['mismatch'][0], now))
            if values:
                subscription.write(values)
            if {'change', 'missed', 'resync'} & set(events):
                subscription._outlook_folder_sync()._outlook_want_round_now(
                    min(events[kind][1] for kind in ('change', 'missed', 'resync') if kind in events))
        if removed:
            removed.address_id._outlook_update_push_mode()
            removed._outlook_tell_removed()
        if wake_maintenance:
            self._outlook_cron()._trigger()

    def _outlook_signed_in_since_removal(self):
        """ Whether the service account's sign-in worked after Microsoft removed this subscription: a token
        refresh (or a sign-in) stored a new token set since (not a date: a refresh within the second of the
        removal would be ambiguous). Until then it is not recreated: after an admin's password reset the refresh
        token is revoked, and the connection asks for a reconnect at its next refresh (docs/microsoft-graph.md
        §2.4.1). """
        self.ensure_one()
        return self.connection_id._outlook_token_set_mark() != self.removed_token_mark

    def _outlook_tell_removed(self):
        """ One chatter note per connection on these subscriptions just removed by Microsoft, unless others of
        the connection were already removed (the lifecycle notifications of one removal come in several
        POSTs). """
        for connection in self.connection_id:
            if self.sudo().search_count([('connection_id', '=', connection.id), ('state', '=', 'removed'),
                                         ('id', 'not in', self.ids)], limit=1):
                continue
            mailboxes = sorted(set(self.filtered(lambda sub: sub.connection_id == connection).address_id.mapped(
                'email')))
            connection._outlook_tell_editors(self.env._(REMOVED_NOTE) % {
                'mailboxes': ', '.join(mailboxes), 'minutes': connection.poll_interval_minutes})

    def _outlook_count_mismatches(self, count, now):
        """ Count rejected notifications; above the threshold within the window, alert the editors once. """
        self.ensure_one()
        start = self.mismatch_window_start
        if not start or now - start > MISMATCH_WINDOW:
            start, window_count = now, 0
        else:
            window_count = self.mismatch_window_count
        window_count += count
        values = {'mismatch_count': self.mismatch_count + count, 'mismatch_window_start': start,
                  'mismatch_window_count': window_count}
        if window_count >= MISMATCH_ALERT_THRESHOLD and not self.mismatch_alerted:
            values['mismatch_alerted'] = True
            self._outlook_alert_mismatches(window_count)
        return values

    def _outlook_alert_mismatches(self, count):
        connection = self.address_id.connection_id
        _logger.warning("Microsoft Outlook: subscription %s: %d notifications with a wrong clientState or tenant "
                        "within an hour", self.id, count)
        connection._outlook_tell_editors(self.env._(
            "Odoo rejected %(count)s change notifications for %(mailbox)s (%(folder)s) within an hour: their "
            "clientState or tenant did not match the subscription's. Someone may be sending forged "
            "notifications to Odoo's webhook; they were ignored and changed nothing. If it goes on, check "
            "the web server's logs for their origin.",
            count=count, mailbox=self.address_id.email,
            folder=dict(self._fields['folder']._description_selection(self.env))[self.folder]))

    def _outlook_want_round(self):
        """ Ask for a delta round of this subscription's folder, through the queue (no row written here that
        the delta cron writes: that cron may run at the same time). """
        self.ensure_one()
        self.env['epilot.outlook.push.event'].sudo().create({
            'subscription_id': self.id, 'kind': 'resync', 'received_at': fields.Datetime.now()})
        self.env['epilot.outlook.folder.sync']._outlook_cron()._trigger()

    def _outlook_folder_sync(self):
        self.ensure_one()
        return self.address_id.folder_sync_ids.filtered(lambda sync: sync.folder == self.folder)

    # === TOOLING === #

    def _outlook_graph(self, operation):
        """ Run ``operation(client)`` on the address's connection, waiting for no Retry-After. """
        return self.address_id.connection_id._outlook_call_graph(
            operation, max_wait=GRAPH_MAX_WAIT_S, slot_wait=GRAPH_MAX_WAIT_S)

    def _outlook_retry_later(self, error):
        """ Try this subscription again later (:meth:`_outlook_schedule_retry`'s policy; a failure that is not
        transient waits ``CREATE_RETRY_DELAY``). A ``UserError`` (the connection is not usable) was told on the
        connection already: nothing more to say here. """
        retry_at = self._outlook_schedule_retry(error, CREATE_RETRY_DELAY.total_seconds())
        _logger.info("Microsoft Outlook: subscription %s: retrying at %s (%s)", self.id, retry_at,
                     type(error).__name__)

    def _outlook_postpone(self, until):
        self.retry_at = until
        self._outlook_cron()._trigger(at=until)

    @api.model
    def _outlook_cron(self):
        return self.env.ref('epilot_outlook.ir_cron_outlook_subscriptions')


# Failures a later attempt may not meet: Graph throttled or briefly unavailable.
_RETRY_LATER = (Throttled, TransientError)
