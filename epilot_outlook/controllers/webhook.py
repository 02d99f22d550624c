import logging
import threading
import time
from collections import Counter
from datetime import timedelta

from werkzeug.exceptions import RequestEntityTooLarge

from odoo import fields, http
from odoo.exceptions import UserError
from odoo.http import request
from odoo.tools import SQL

from ..models.epilot_outlook_subscription import MISMATCH_QUEUE_MAX
from ..outlook_core import const, notifications
from ..outlook_core.errors import VaultError

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
# Plaintexts of the clientStates and tenant ids decrypted by this process, by ciphertext: a Fernet decryption
# per notification would cost more than the rest of the request. Bounded; a new ciphertext (a subscription
# created again) is a new key.
_DECRYPTED = {}
_DECRYPTED_MAX = 4096
# Anyone can post to the webhook: the log lines its input causes are limited to one a minute per kind of line
# and sender (IP address), each saying how many events it stands for (:class:`_LogLimit`). Past this many senders
# within a minute, the others share one line a minute.
LOG_LIMIT_INTERVAL_S = 60
LOG_LIMIT_SENDERS = 1024
# Rejected notifications (wrong clientState or tenant) of a subscription whose queue holds MISMATCH_QUEUE_MAX rows
# already: counted here, by subscription id, and carried by this process's next row for it.
_held_mismatches = {}
_held_mismatches_lock = threading.Lock()


class _LogLimit:
    """ At most one log line per kind and sender within ``interval`` seconds; the events of the lines held back
    are counted, and the next line of that kind and sender says how many there were in all.

    :param float interval: Seconds between two lines of one kind and sender.
    :param int max_senders: Senders tracked at once; past it, new senders share one line per kind.
    """

    def __init__(self, interval=LOG_LIMIT_INTERVAL_S, max_senders=LOG_LIMIT_SENDERS):
        self.interval, self.max_senders = interval, max_senders
        self._entries = {}   # (kind, sender) -> [time of its last line, events held back since]
        self._lock = threading.Lock()

    def take(self, kind, sender, count=1):
        """ Count ``count`` events of ``kind`` from ``sender``.

        :return: ``None`` when no line is due (the events are held back); else how many events the line logged
            now stands for: these and those held back since the previous line.
        :rtype: int or None
        """
        now = time.monotonic()
        with self._lock:
            key = (kind, sender)
            if key not in self._entries and len(self._entries) >= self.max_senders:
                # Forget the senders whose minute is over; if that is not enough, new ones share a line.
                self._entries = {known: entry for known, entry in self._entries.items()
                                 if now - entry[0] < self.interval}
                if len(self._entries) >= self.max_senders:
                    key = (kind, None)
            entry = self._entries.get(key)
            if entry is not None and now - entry[0] < self.interval:
                entry[1] += count
                return None
            self._entries[key] = [now, 0]
            return count + (entry[1] if entry is not None else 0)


_log_limit = _LogLimit()


class OutlookWebhookController(http.Controller):
    """ Microsoft Graph's change and lifecycle notifications (contract §2.2-§2.4): validate, enqueue, 202.

    Thin and fast: the handshake touches no table; a batch costs one ``SELECT`` (the subscriptions it names,
    their encrypted clientState and their connection's tenant) and one ``INSERT`` into the push queue, plus the
    delta cron's trigger when none is pending. It never calls Graph; the delta cron does the work. Any input
    that is not a batch gets a 4xx and changes nothing; an item that fails its checks is ignored and counted.
    Anyone can post here, so what they post costs a bounded number of queued rows (rejected notifications:
    ``MISMATCH_QUEUE_MAX`` per subscription until the delta cron reads them) and of log lines (one a minute per
    kind of line and sender).
    """

    @http.route(
        [const.WEBHOOK_NOTIFY_PATH, const.WEBHOOK_LIFECYCLE_PATH], type='http', auth='public', methods=['POST'],
        csrf=False, save_session=False, max_content_length=const.WEBHOOK_MAX_BODY_BYTES,
    )
    def outlook_webhook(self, **_kwargs):
        """ Answer Graph's validation handshake, or queue a notification batch.

        :return: 200 ``text/plain`` with the decoded ``validationToken``; 202 for a batch; 400 when the body is
            not a batch, 413 when it is too large.
        """
        token = request.httprequest.args.get('validationToken')
        if token is not None:
            # Werkzeug decoded it (``+`` and ``%xx``); text/plain, never HTML: it is attacker-chosen text.
            return request.make_response(token, status=200, headers=[
                ('Content-Type', 'text/plain; charset=utf-8'), ('X-Content-Type-Options', 'nosniff')])
        try:
            raw = request.httprequest.get_data(cache=False)
        except RequestEntityTooLarge:
            return self._plain(413, 'too_large')
        try:
            items = notifications.parse_batch(raw)
        except notifications.BatchError as error:
            sender = request.httprequest.remote_addr
            if events := _log_limit.take('refused', sender):
                _logger.info("Microsoft Outlook: webhook: body refused (%s, %d bytes) from %s%s", error.code,
                             len(raw), sender, self._also(events, 1, "bodies refused"))
            return self._plain(400, error.code)
        self._outlook_enqueue(items)
        return request.make_response('', status=202)

    # === BUSINESS METHODS === #

    def _outlook_enqueue(self, items):
        """ Check each item against its subscription and queue the valid ones (one row per subscription and
        kind); wake the delta cron unless a trigger of it is already pending. """
        sender = request.httprequest.remote_addr
        graph_ids = {item.subscription_id for item in items if item.subscription_id}
        if not graph_ids:
            if items and (events := _log_limit.take('malformed', sender, len(items))):
                _logger.info("Microsoft Outlook: webhook: %d malformed notifications ignored from %s%s", len(items),
                             sender, self._also(events, len(items), "ignored"))
            return
        env = request.env
        cron_id = env.ref('epilot_outlook.ir_cron_outlook_delta').id
        now = fields.Datetime.now()
        rows = env.execute_query(SQL(
            """SELECT s.id, s.graph_id, s.outlook_client_state_ciphertext, c.outlook_tenant_id_ciphertext,
                      EXISTS (SELECT 1 FROM ir_cron_trigger t WHERE t.cron_id = %(cron)s
                                                                  AND t.call_at BETWEEN %(since)s AND %(until)s),
                      (SELECT count(*) FROM epilot_outlook_push_event e WHERE e.subscription_id = s.id
                                                                          AND e.kind = 'mismatch')
                 FROM epilot_outlook_subscription s
                 JOIN epilot_outlook_connection c ON c.id = s.connection_id
                WHERE s.graph_id IN %(ids)s""",
            cron=cron_id, since=now - _TRIGGER_COVERS, until=now + _TRIGGER_COVERS, ids=tuple(graph_ids),
        ))
        try:
            vault = env['epilot.outlook.subscription']._outlook_vault() if rows else None
        except UserError:
            if events := _log_limit.take('no_key', None, len(items)):
                _logger.warning("Microsoft Outlook: webhook: no encryption key configured; %d notifications ignored",
                                events)
            return
        known, mismatches_queued = {}, {}
        for sub_id, graph_id, state_ciphertext, tenant_ciphertext, _triggered, mismatches in rows:
            known[graph_id] = (sub_id, self._decrypt(vault, state_ciphertext), self._decrypt(vault, tenant_ciphertext))
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
        if unknown and (events := _log_limit.take('unknown', None, unknown)):
            _logger.warning("Microsoft Outlook: webhook: %d notifications for unknown subscriptions ignored", events)
        ignored = len(items) - outcomes[notifications.OK]
        if ignored and (events := _log_limit.take('ignored', sender, ignored)):
            _logger.info("Microsoft Outlook: webhook: notifications ignored from %s: %s%s", sender,
                         ', '.join('%s %d' % pair for pair in sorted(outcomes.items()) if pair[0] != 'ok'),
                         self._also(events, ignored, "ignored"))
        for sub_id in [sub_id for sub_id, kind in queued if kind == 'mismatch']:
            if count := self._mismatches_to_queue(sub_id, queued.pop((sub_id, 'mismatch')),
                                                  mismatches_queued[sub_id]):
                queued[sub_id, 'mismatch'] = count
        if not queued:
            return
        # One round trip. The commit does not wait for the disk (``synchronous_commit`` off for this transaction
        # only): a crash in that instant loses a notification, which the delta safety round catches anyway, as
        # it catches the ones Graph drops; the 202 does not wait on an fsync, under load the most it costs.
        env.execute_query(SQL(
            "SET LOCAL synchronous_commit TO OFF; "
            "INSERT INTO epilot_outlook_push_event (subscription_id, kind, count, received_at) VALUES %s",
            SQL(", ").join(SQL("(%s, %s, %s, %s)", sub_id, kind, count, now)
                           for (sub_id, kind), count in queued.items()),
        ))
        triggered = rows[0][4]
        if not triggered and any(kind != 'mismatch' for _sub_id, kind in queued):
            env['ir.cron'].sudo().browse(cron_id)._trigger()

    @staticmethod
    def _decrypt(vault, ciphertext):
        if ciphertext is None:
            return None
        ciphertext = bytes(ciphertext)
        plaintext = _DECRYPTED.get(ciphertext)
        if plaintext is None:
            try:
                plaintext = vault.decrypt(ciphertext).decode()
            except VaultError:
                return None   # A key that is gone: no notification can match; counted as unknown/mismatch.
            if len(_DECRYPTED) >= _DECRYPTED_MAX:
                _DECRYPTED.clear()
            _DECRYPTED[ciphertext] = plaintext
        return plaintext

    @staticmethod
    def _mismatches_to_queue(sub_id, count, queued):
        """ How many rejected notifications a new queue row of subscription ``sub_id`` carries: these ``count``
        and those held back before, while its queue holds fewer than :data:`MISMATCH_QUEUE_MAX` rows (concurrent
        requests may each add one more); else none, and they are held back, counted in this process.

        :param int queued: The subscription's rows of rejected notifications in the queue.
        :rtype: int
        """
        with _held_mismatches_lock:
            if queued >= MISMATCH_QUEUE_MAX:
                _held_mismatches[sub_id] = _held_mismatches.get(sub_id, 0) + count
                return 0
            return count + _held_mismatches.pop(sub_id, 0)

    @staticmethod
    def _also(events, now, what):
        """ The end of a rate-limited log line: what the lines held back since the previous one counted. """
        return '' if events <= now else ' (%d %s from there since the previous line)' % (events, what)

    @staticmethod
    def _plain(status, code):
        return request.make_response(code, headers=[('Content-Type', 'text/plain; charset=utf-8')], status=status)
