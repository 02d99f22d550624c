import logging
from urllib.parse import urlencode

from odoo.tests import tagged

from .outlook_sandbox_common import OutlookSandboxCase

# Loggers whose lines could carry what the connect flow handles: ours, the HTTP server's and client's, MSAL's.
WATCHED_LOGGERS = ('odoo.addons.epilot_outlook', 'werkzeug', 'urllib3', 'msal', 'odoo.http')


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines = []

    def emit(self, record):
        self.lines.append('%s %s %s' % (record.name, record.levelname, record.getMessage()))


@tagged('post_install', '-at_install')
class TestConnectLogs(OutlookSandboxCase):
    """ No log line, at any level of the loggers the flow goes through, holds a code, a state, a token, a secret,
    the tenant id or the service account's address; Microsoft's (or a forger's) error text is bounded and
    escaped. """

    def capture_logs(self):
        capture = _Capture()
        root = logging.getLogger()
        root.addHandler(capture)
        self.addCleanup(root.removeHandler, capture)
        for name in WATCHED_LOGGERS:
            logger = logging.getLogger(name)
            self.addCleanup(logger.setLevel, logger.level)
            logger.setLevel(logging.DEBUG)
        return capture

    def assert_lines_hold_none_of(self, lines, secrets):
        self.assertTrue(lines)
        for name, value in secrets.items():
            self.assertTrue(value, name)
            for line in lines:
                self.assertNotIn(value, line, "a log line holds the %s" % name)

    def test_connect_flow_logs_no_code_state_token_tenant_or_account(self):
        capture = self.capture_logs()
        consent_return = self.microsoft_pages(self.click_connect(), 'admin')
        response = self.odoo_callback(consent_return)
        sign_in_return = self.microsoft_pages(response.headers['Location'], 'service_account')
        # The browser comes back without an Odoo session: Odoo sends it to the login page, the callback
        # URL-encoded in the login page's query, and the login form posts it back.
        self.logout()
        login_page = self.url_open(sign_in_return)
        self.assertIn('/web/login', login_page.url)
        self.authenticate('eo_flow_admin', 'eo_flow_admin_pw')
        self.odoo_callback(sign_in_return)
        self.connection.invalidate_recordset()
        self.assertEqual(self.connection.state, 'connected')
        self.connection.with_user(self.odoo_admin).action_outlook_check_connection()

        secrets = self.secrets()
        self.assert_lines_hold_none_of(capture.lines, {
            'admin-consent state': self.query(consent_return)['state'],
            'sign-in state': self.query(sign_in_return)['state'],
            'authorization code': self.query(sign_in_return)['code'],
            'tenant id': self.demo['tenant_id'],
            'service account address': self.demo['service_account']['username'],
            'client secret': self.demo['client_secret'],
            'access token': secrets['access_token'],
            'refresh token': secrets['refresh_token'],
        })
        self.assertTrue(any(line.startswith('urllib3') for line in capture.lines), "urllib3's lines were seen")
        self.assertTrue(any('/web/login?' in line for line in capture.lines), "the login page's line was seen")

    def test_error_description_is_logged_bounded_and_escaped(self):
        consent_return = self.microsoft_pages(self.click_connect(), 'admin')
        sign_in_url = self.odoo_callback(consent_return).headers['Location']
        capture = self.capture_logs()
        description = ("AADSTS65004: \x1b[31mdeclined\x07\t<script>alert(1)</script> for %s in %s "
                       % (self.demo['service_account']['username'], self.demo['tenant_id'])) + 'x' * 5000
        location = '%s/epilot_outlook/oauth/callback?%s' % (self.base_url(), urlencode({
            'error': 'access_denied', 'error_description': description, 'state': self.query(sign_in_url)['state'],
        }))
        self.odoo_callback(location)
        warnings = [line for line in capture.lines if 'WARNING' in line and 'epilot_outlook' in line]
        self.assertTrue(warnings)
        for line in warnings:
            self.assertLess(len(line), 700)
            self.assertNotIn('<script>', line)
            for control in ('\x1b', '\x07', '\t'):
                self.assertNotIn(control, line)
        self.assertTrue(any('AADSTS65004' in line and '\\x1b' in line for line in warnings), warnings)
        self.assert_lines_hold_none_of(capture.lines, {
            'tenant id': self.demo['tenant_id'], 'service account address': self.demo['service_account']['username'],
        })
