import logging

from werkzeug.exceptions import RequestEntityTooLarge

from odoo import http
from odoo.http import request

from ..models.epilot_outlook_push_event import WEBHOOK_LOG_LIMIT
from ..outlook_core import const, notifications
from ..outlook_core.logsafe import LogLimit

_logger = logging.getLogger(__name__)


class OutlookWebhookController(http.Controller):
    """ Microsoft Graph's change and lifecycle notifications (docs/microsoft-graph.md §2.2-§2.4): validate,
    hand over, 202.

    As thin as ``payment_stripe``'s: the handshake touches no table; a batch is parsed and verified against its
    subscriptions by ``epilot.outlook.push.event._outlook_accept`` (one ``SELECT``, one ``INSERT`` into the push
    queue, the delta cron's trigger when none is pending). It never calls Graph; the delta cron does the work.
    Any input that is not a batch gets a 4xx and changes nothing; an item that fails its checks is ignored and
    counted there.
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
        sender = request.httprequest.remote_addr
        try:
            items = notifications.parse_batch(raw)
        except notifications.BatchError as error:
            if events := WEBHOOK_LOG_LIMIT.take('refused', sender):
                _logger.info("Microsoft Outlook: webhook: body refused (%s, %d bytes) from %s%s", error.code,
                             len(raw), sender, LogLimit.also(events, 1, "bodies refused"))
            return self._plain(400, error.code)
        # sudo: Graph is no user; the notifications were only parsed so far, and are verified there first.
        request.env['epilot.outlook.push.event'].sudo()._outlook_accept(items, sender)
        return request.make_response('', status=202)

    @staticmethod
    def _plain(status, code):
        return request.make_response(code, headers=[('Content-Type', 'text/plain; charset=utf-8')], status=status)
