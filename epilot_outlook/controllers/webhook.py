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
# Notifications naming a subscription nobody here knows: counted by process (nothing is written for them),
# logged at most once a minute.
_unknown = {'count': 0, 'logged_at': 0.0}
_unknown_lock = threading.Lock()


class OutlookWebhookController(http.Controller):
    """ Microsoft Graph's change and lifecycle notifications (contract §2.2-§2.4): validate, enqueue, 202.

    Thin and fast: the handshake touches no table; a batch costs one ``SELECT`` (the subscriptions it names,
    their encrypted clientState and their connection's tenant) and one ``INSERT`` into the push queue, plus the
    delta cron's trigger when none is pending. It never calls Graph; the delta cron does the work. Any input
    that is not a batch gets a 4xx and changes nothing; an item that fails its checks is ignored and counted.
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
            _logger.info("Microsoft Outlook: webhook: body refused (%s, %d bytes)", error.code, len(raw))
            return self._plain(400, error.code)
        self._outlook_enqueue(items)
        return request.make_response('', status=202)

    # === BUSINESS METHODS === #

    def _outlook_enqueue(self, items):
        """ Check each item against its subscription and queue the valid ones (one row per subscription and
        kind); wake the delta cron unless a trigger of it is already pending. """
        graph_ids = {item.subscription_id for item in items if item.subscription_id}
        if not graph_ids:
            if items:
                _logger.info("Microsoft Outlook: webhook: %d malformed notifications ignored", len(items))
            return
        env = request.env
        cron_id = env.ref('epilot_outlook.ir_cron_outlook_delta').id
        now = fields.Datetime.now()
        rows = env.execute_query(SQL(
            """SELECT s.id, s.graph_id, s.outlook_client_state_ciphertext, c.outlook_tenant_id_ciphertext,
                      EXISTS (SELECT 1 FROM ir_cron_trigger t WHERE t.cron_id = %(cron)s
                                                                  AND t.call_at BETWEEN %(since)s AND %(until)s)
                 FROM epilot_outlook_subscription s
                 JOIN epilot_outlook_connection c ON c.id = s.connection_id
                WHERE s.graph_id IN %(ids)s""",
            cron=cron_id, since=now - _TRIGGER_COVERS, until=now + _TRIGGER_COVERS, ids=tuple(graph_ids),
        ))
        try:
            vault = env['epilot.outlook.subscription']._outlook_vault() if rows else None
        except UserError:
            _logger.warning("Microsoft Outlook: webhook: no encryption key configured; notifications ignored")
            return
        known = {}
        for sub_id, graph_id, state_ciphertext, tenant_ciphertext, _triggered in rows:
            known[graph_id] = (sub_id, self._decrypt(vault, state_ciphertext), self._decrypt(vault, tenant_ciphertext))
        queued, outcomes = Counter(), Counter()
        for item in items:
            sub_id, client_state, tenant_id = known.get(item.subscription_id, (None, None, None))
            outcome = notifications.check_item(item, client_state, tenant_id)
            outcomes[outcome] += 1
            if outcome == notifications.OK:
                queued[sub_id, _KIND_BY_EVENT[item.event]] += 1
            elif outcome in (notifications.CLIENT_STATE_MISMATCH, notifications.TENANT_MISMATCH):
                queued[sub_id, 'mismatch'] += 1
        if outcomes[notifications.UNKNOWN_SUBSCRIPTION]:
            self._count_unknown(outcomes[notifications.UNKNOWN_SUBSCRIPTION])
        if outcomes[notifications.OK] != len(items):
            _logger.info("Microsoft Outlook: webhook: notifications ignored: %s",
                         ', '.join('%s %d' % pair for pair in sorted(outcomes.items()) if pair[0] != 'ok'))
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
    def _count_unknown(count):
        with _unknown_lock:
            _unknown['count'] += count
            now = time.monotonic()
            if now - _unknown['logged_at'] < 60:
                return
            total, _unknown['count'], _unknown['logged_at'] = _unknown['count'], 0, now
        _logger.warning("Microsoft Outlook: webhook: %d notifications for unknown subscriptions ignored", total)

    @staticmethod
    def _plain(status, code):
        return request.make_response(code, headers=[('Content-Type', 'text/plain; charset=utf-8')], status=status)
