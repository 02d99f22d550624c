import logging
import re
from urllib.parse import unquote

from odoo import http
from odoo.http import request

from ..outlook_core.const import OAUTH_CALLBACK_PATH
from ..outlook_core.errors import OutlookError, TransientError
from ..tools.explain import explain

_logger = logging.getLogger(__name__)

_QUERY_RE = re.compile(r'\?[^\s"]*')


def _names_the_callback(text):
    """ Whether ``text`` holds the callback's path with a query, as such or URL-encoded (once or more, as in
    ``/web/login?redirect=%2Fepilot_outlook%2Foauth%2Fcallback%3Fcode%3D...``). """
    for _depth in range(4):
        if OAUTH_CALLBACK_PATH + '?' in text:
            return True
        decoded = unquote(text)
        if decoded == text:
            return False
        text = decoded
    return False


class _HideCallbackQuery(logging.Filter):
    """ Keep the callback's query out of the HTTP access log (logger ``werkzeug``, INFO): Microsoft puts the
    tenant id (admin consent), the authorization code and the state in it. That includes the request that
    carries the callback URL-encoded in its own query: opened without an Odoo session, the callback redirects
    to ``/web/login?redirect=<the callback>``, and the login form posts it back. """

    def filter(self, record):
        if isinstance(record.args, tuple) and any(
                isinstance(arg, str) and _names_the_callback(arg) for arg in record.args):
            record.args = tuple(
                _QUERY_RE.sub('?[hidden]', arg) if isinstance(arg, str) and _names_the_callback(arg) else arg
                for arg in record.args)
        return True


if not any(type(existing).__name__ == '_HideCallbackQuery' for existing in logging.getLogger('werkzeug').filters):
    logging.getLogger('werkzeug').addFilter(_HideCallbackQuery())


class OutlookOAuthController(http.Controller):
    """ Where Microsoft sends the browser back, for both legs of the connect flow.

    One redirect URI serves the admin-consent leg and the service-account sign-in leg, so the Entra admin
    registers a single URI; the signed ``state`` says which leg came back. All the work happens in the
    connection model; this controller only turns its outcome into a redirect or an explained error page.
    """
    _callback_url = OAUTH_CALLBACK_PATH

    @http.route(_callback_url, type='http', auth='user', methods=['GET'])
    def outlook_oauth_callback(self, state=None, **params):
        """ Finish one leg of the connect flow.

        :param str state: The signed state issued when the leg started.
        :param dict params: Everything else Microsoft put in the redirect (``admin_consent``, ``tenant``,
            ``code``, ``client_info``, ``error``, ``error_description``, ...).
        :return: A redirect to the next leg, to the connection form, or the error page.
        """
        Connection = request.env['epilot.outlook.connection']
        try:
            connection, next_url = Connection._outlook_handle_oauth_callback(state, dict(params, state=state))
        except OutlookError as error:
            _logger.info("Microsoft Outlook: connect flow stopped: %s", error.__class__.__name__)
            # Back to the form of the connection being connected: the one of the user's company (one per company).
            back_connection = Connection.search([('company_id', '=', request.env.company.id)], limit=1)
            back_url = '/odoo/action-epilot_outlook.epilot_outlook_connection_action'
            if back_connection:
                back_url += '/%s' % back_connection.id
            return request.render('epilot_outlook.oauth_error_page', {
                'title': request.env._("Outlook could not be connected"),
                'explanation': explain(request.env, error),
                'back_url': back_url,
            }, status=503 if isinstance(error, TransientError) else 400)
        # Through the action, so the form keeps its "Outlook Connections" breadcrumb.
        return request.redirect(
            next_url or f'/odoo/action-epilot_outlook.epilot_outlook_connection_action/{connection.id}', local=False)
