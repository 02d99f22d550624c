import logging
import threading
import time
from datetime import timedelta

import psycopg2

from odoo import api, fields, models
from odoo.tools import SQL

from ..outlook_core import const

_logger = logging.getLogger(__name__)

# Outlook's limit per app and mailbox (docs/microsoft-graph.md §5): 10,000 requests in 10 minutes.
GRAPH_WINDOW = timedelta(minutes=10)
# Usage rows are kept this long (the throttled figure looks back that far).
USAGE_KEPT = timedelta(days=1)
# An address lags when its oldest folder's last successful round is older than this many polling intervals; the
# editors hear of it once, and once again when it recovers.
LAG_INTERVALS = 3


# Graph usage counted by this process and not written yet (see EpilotOutlookGraphUsage), and when it last wrote.
_pending_usage = {}   # (dbname, connection id, mailbox, window start) -> [requests, throttled]
_last_flush = {}      # dbname -> monotonic seconds
_pending_lock = threading.Lock()
FLUSH_EVERY_S = 10


def _window_start(now):
    """ The start of the 10-minute window ``now`` falls in (Outlook's limit counts per such window). """
    return now - timedelta(minutes=now.minute % 10, seconds=now.second, microseconds=now.microsecond)


class EpilotOutlookGraphUsage(models.Model):
    """ Graph requests per connection, mailbox and 10-minute window, as Outlook counts them against its limit
    (each attempt and each ``$batch`` item), and how many of them were throttled; read by the connection's
    freshness figures.

    Every Graph call of the connection adds its counts (``epilot.outlook.connection._outlook_call_graph``), but not
    to the table in its own transaction: the row of a busy mailbox would then be locked until that step commits,
    and every other lane counting the same mailbox would wait for it (and REPEATABLE READ would fail it). The
    counts are added up in the process and written every :data:`FLUSH_EVERY_S` seconds (and before the figures
    are read) in a short transaction of their own; counts that could not be written wait for the next time.
    """
    _name = 'epilot.outlook.graph.usage'
    _description = "Outlook Graph Usage"
    _log_access = False
    _order = 'window_start desc, id desc'

    connection_id = fields.Many2one(
        string="Connection", comodel_name='epilot.outlook.connection', required=True, ondelete='cascade',
        index=True)
    mailbox = fields.Char(string="Mailbox", required=True)
    window_start = fields.Datetime(string="Window", required=True)
    requests = fields.Integer(string="Requests")
    throttled = fields.Integer(string="Throttled")

    _connection_mailbox_window_uniq = models.UniqueIndex('(connection_id, mailbox, window_start)')

    @api.model
    def _outlook_record(self, connection, usage):
        """ Add a Graph client's counts (``GraphClient.usage``) to the connection's current window.

        :param dict usage: ``{mailbox: [requests, throttled]}``.
        """
        if not usage:
            return
        window = _window_start(fields.Datetime.now())
        dbname = self.env.cr.dbname
        with _pending_lock:
            for mailbox, (sent, throttled) in usage.items():
                counts = _pending_usage.setdefault((dbname, connection.id, mailbox, window), [0, 0])
                counts[0] += sent
                counts[1] += throttled
            due = time.monotonic() - _last_flush.get(dbname, 0.0) >= FLUSH_EVERY_S
        if due:
            self._outlook_flush()

    @api.model
    def _outlook_flush(self):
        """ Write the counts this process added up for this database, in one ``INSERT … ON CONFLICT`` of a
        transaction of its own; put them back if it fails (another process wrote the same row at that moment). """
        dbname = self.env.cr.dbname
        with _pending_lock:
            _last_flush[dbname] = time.monotonic()
            rows = {key: counts for key, counts in _pending_usage.items() if key[0] == dbname}
            for key in rows:
                del _pending_usage[key]
        if not rows:
            return
        try:
            with self.env.registry.cursor() as cr:
                cr.execute(SQL(
                    """INSERT INTO epilot_outlook_graph_usage (connection_id, mailbox, window_start, requests,
                                                               throttled)
                       SELECT v.connection_id, v.mailbox, v.window_start, v.requests, v.throttled
                         FROM (VALUES %s) AS v (connection_id, mailbox, window_start, requests, throttled)
                         JOIN epilot_outlook_connection c ON c.id = v.connection_id
                       ON CONFLICT (connection_id, mailbox, window_start) DO UPDATE
                          SET requests = epilot_outlook_graph_usage.requests + EXCLUDED.requests,
                              throttled = epilot_outlook_graph_usage.throttled + EXCLUDED.throttled""",
                    SQL(", ").join(SQL("(%s, %s, %s::timestamp, %s, %s)", connection_id, mailbox, window, sent,
                                       throttled)
                                   for (_db, connection_id, mailbox, window), (sent, throttled) in sorted(
                                       rows.items()))), log_exceptions=False)
        except psycopg2.Error as error:
            _logger.info("Microsoft Outlook: Graph usage kept for the next write (%s)", type(error).__name__)
            with _pending_lock:
                for key, (sent, throttled) in rows.items():
                    counts = _pending_usage.setdefault(key, [0, 0])
                    counts[0] += sent
                    counts[1] += throttled

    @api.autovacuum
    def _gc_outlook_usage(self):
        self.env.cr.execute(SQL("DELETE FROM epilot_outlook_graph_usage WHERE window_start < %s",
                                fields.Datetime.now() - USAGE_KEPT))


class EpilotOutlookEmailAddress(models.Model):
    """ The freshness of an address: how old its last successful delta round is, and whether the editors were
    told it lags. """
    _inherit = 'epilot.outlook.email.address'

    sync_lag_minutes = fields.Integer(
        string="Last Round (Minutes Ago)", compute='_compute_sync_lag',
        help="How long ago the folder synced least recently had its last successful delta round: mail that "
             "arrived since may not be in Odoo yet.")
    lag_notified = fields.Boolean(
        string="Lag Notified", readonly=True, copy=False,
        help="Technical: the editors were told this address lags; they hear again when it recovers.")

    @api.depends('folder_sync_ids.last_round_date')
    def _compute_sync_lag(self):
        now = fields.Datetime.now()
        for address in self:
            oldest = address._outlook_oldest_round()
            address.sync_lag_minutes = int((now - oldest).total_seconds() // 60) if oldest else 0

    def _outlook_oldest_round(self):
        """ The last successful round of the folder synced least recently, or ``False`` (none yet, or not live). """
        if self.sync_state not in ('backfilling', 'live'):
            return False
        dates = self.folder_sync_ids.mapped('last_round_date')
        return min(dates) if dates and all(dates) else False

    def _outlook_lag_limit(self):
        """ How old the last round may be before the address counts as lagging: a few polling intervals (the
        push safety net's interval while push works). """
        interval = timedelta(minutes=self.connection_id.poll_interval_minutes)
        if self._outlook_push_healthy():
            interval = max(interval, timedelta(minutes=15))
        return LAG_INTERVALS * interval


class EpilotOutlookConnection(models.Model):
    """ The connection's freshness figures and the lag notices. """
    _inherit = 'epilot.outlook.connection'

    synced_mailbox_count = fields.Integer(
        string="Mailboxes Synced", compute='_compute_freshness', help="Addresses backfilling or live.")
    lag_p95_minutes = fields.Integer(
        string="Lag, p95 (Minutes)", compute='_compute_freshness',
        help="95 % of the synced mailboxes had a successful delta round of every folder within this many minutes.")
    lagging_count = fields.Integer(
        string="Mailboxes Lagging", compute='_compute_freshness',
        help="Synced mailboxes whose last round is older than a few polling intervals.")
    graph_requests_window = fields.Integer(
        string="Graph Requests (10 Minutes)", compute='_compute_freshness',
        help="Graph requests of this connection in the current 10-minute window, all mailboxes together.")
    graph_busiest_mailbox = fields.Char(string="Busiest Mailbox", compute='_compute_freshness')
    graph_busiest_requests = fields.Integer(
        string="Its Requests (10 Minutes)", compute='_compute_freshness',
        help="Microsoft allows 10,000 requests per 10 minutes per mailbox; past it Graph throttles (429).")
    graph_limit = fields.Integer(string="Limit per Mailbox", compute='_compute_freshness')
    graph_throttled_day = fields.Integer(
        string="Throttled Calls (24 Hours)", compute='_compute_freshness',
        help="Graph requests answered 429 or 503 in the last 24 hours; Odoo waits and retries them.")

    def _compute_freshness(self):
        now = fields.Datetime.now()
        Usage = self.env['epilot.outlook.graph.usage'].sudo()
        Usage._outlook_flush()
        for connection in self:
            addresses = connection.sudo().email_address_ids.filtered(
                lambda address: address.sync_state in ('backfilling', 'live'))
            lags = sorted(address.sync_lag_minutes for address in addresses)
            connection.synced_mailbox_count = len(addresses)
            connection.lag_p95_minutes = lags[max(0, -(-len(lags) * 95 // 100) - 1)] if lags else 0
            connection.lagging_count = len(addresses.filtered('lag_notified'))
            current = Usage.search([('connection_id', '=', connection.id), ('window_start', '=', _window_start(now))])
            busiest = max(current, key=lambda row: row.requests, default=Usage)
            connection.graph_requests_window = sum(current.mapped('requests'))
            connection.graph_busiest_mailbox = busiest.mailbox or False
            connection.graph_busiest_requests = busiest.requests
            connection.graph_limit = const.GRAPH_REQUESTS_PER_MAILBOX_PER_10_MIN
            connection.graph_throttled_day = sum(Usage.search([
                ('connection_id', '=', connection.id), ('window_start', '>=', now - USAGE_KEPT)]).mapped('throttled'))

    @api.model
    def _cron_outlook_freshness(self):
        """ Tell the editors, once, when a synced address lags (its last successful round older than a few
        intervals), and once again when it caught up: one chatter note per connection and run. """
        now = fields.Datetime.now()
        addresses = self.env['epilot.outlook.email.address'].sudo().search([
            ('sync_state', 'in', ('backfilling', 'live')), ('connection_id.state', '=', 'connected')])
        lagging, recovered = addresses.browse(), addresses.browse()
        for address in addresses:
            oldest = address._outlook_oldest_round()
            late = bool(oldest) and now - oldest > address._outlook_lag_limit()
            if late and not address.lag_notified:
                lagging |= address
            elif not late and address.lag_notified:
                recovered |= address
        # Addresses that stopped syncing (paused, in error, removed) say so elsewhere: no recovery note.
        addresses.search([('lag_notified', '=', True), ('id', 'not in', addresses.ids)]).lag_notified = False
        lagging.lag_notified = True
        recovered.lag_notified = False
        for connection in (lagging | recovered).connection_id:
            late = lagging.filtered(lambda address: address.connection_id == connection)
            back = recovered.filtered(lambda address: address.connection_id == connection)
            if late:
                _logger.warning("Microsoft Outlook: connection %s: %s addresses lag", connection.id, len(late))
                connection._outlook_tell_editors(self.env._(
                    "These mailboxes have not synced for longer than %(intervals)s polling intervals; new mail may "
                    "reach Odoo late: %(addresses)s. Odoo keeps retrying; the address forms say why (Sync Problem, "
                    "Last Error).", intervals=LAG_INTERVALS, addresses=', '.join(late.mapped('email'))))
            if back:
                connection._outlook_tell_editors(self.env._(
                    "These mailboxes are in sync again: %(addresses)s.", addresses=', '.join(back.mapped('email'))))
