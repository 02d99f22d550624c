import sys
import unittest
import uuid
from urllib.parse import parse_qsl, urlsplit

import requests

from odoo.tests import HttpCase, new_test_user

from ..outlook_core.oauth import OAuthClient
from .sandbox_process import REPO_ROOT, SandboxProcess

if REPO_ROOT not in sys.path:
    sys.path.append(REPO_ROOT)  # The sandbox's browser module, for signing in without a person.
from m365_sandbox.browser import sign_in  # noqa: E402


def sign_in_service_account(sandbox, demo, redirect_uri):
    """ Admin consent and the service account's sign-in, through the plain layer and the sandbox pages,
    without Odoo's connect flow.

    :param SandboxProcess sandbox: The running sandbox.
    :param dict demo: What :meth:`SandboxProcess.reset_and_seed` returned (``redirect_uri`` registered).
    :return: The service account's token set.
    """
    browser = requests.Session()
    browser.verify = sandbox.info['ca_bundle']
    browser.trust_env = False  # Else REQUESTS_CA_BUNDLE from the environment overrides ``verify``.
    client = OAuthClient(demo['client_id'], demo['client_secret'], sandbox.info['authority_base_url'],
                         demo['tenant_id'], ca_bundle=sandbox.info['ca_bundle'])
    admin, service = demo['admin'], demo['service_account']
    with browser:
        sign_in(browser, client.admin_consent_url(redirect_uri, 'consent-state', tenant=demo['tenant_id']),
                admin['username'], admin['password'])
        flow = client.start_sign_in(redirect_uri, 'sign-in-state')
        _location, params = sign_in(browser, flow['auth_uri'], service['username'], service['password'])
    return client.finish_sign_in(flow, params)


def create_signed_in_connection(env, sandbox, demo, tokens, company_name):
    """ A new company and its connection to the sandbox's tenant, holding ``tokens`` (for tests that commit
    real transactions of their own, and delete what they made afterwards).

    :return: The ``epilot.outlook.connection``.
    """
    sandbox.allow_in(env)   # In the same transaction: code running in transactions of their own reads it.
    company = env['res.company'].create({'name': "%s %s" % (company_name, uuid.uuid4().hex[:8])})
    connection = env['epilot.outlook.connection'].create({
        'company_id': company.id,
        'client_id': demo['client_id'],
        'client_secret': demo['client_secret'],
        'authority_host': sandbox.info['authority_base_url'],
        'graph_endpoint': sandbox.info['graph_base_url'],
        'ca_bundle': sandbox.info['ca_bundle'],
    })
    connection._outlook_encrypt_and_store({'tenant_id': demo['tenant_id']})
    connection._outlook_store_token_set(tokens)
    return connection


class OutlookSandboxCase(HttpCase):
    """ A connection pointed at a freshly seeded Microsoft 365 sandbox, and the people of the flow.

    - ``odoo_admin``: holds Email settings: edit; clicks Connect and comes back through the callback;
    - ``browser``: the admin's browser towards Microsoft (the sandbox), trusting the sandbox's CA;
    - ``demo``: the seed's tenant id, app credentials, tenant admin and service account.

    The Odoo side of every redirect goes through :meth:`url_open`, so it reaches the real controllers with
    the admin's session.
    """

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.sandbox = SandboxProcess.get()
        cls.sandbox.allow_in(cls.env)  # Only Microsoft's hosts are accepted unless a system admin allows others.
        cls.odoo_admin = new_test_user(
            cls.env, 'eo_flow_admin', password='eo_flow_admin_pw', groups='epilot_outlook.group_email_setting_edit',
            email='eo_flow_admin@example.com',
        )

    def setUp(self):
        super().setUp()
        self.env['ir.config_parameter'].sudo().set_param('web.base.url', self.base_url())
        self.demo = self.sandbox.reset_and_seed([self.base_url() + '/epilot_outlook/oauth/callback'])
        info = self.sandbox.info
        self.connection = self.env['epilot.outlook.connection'].search([('company_id', '=', self.env.company.id)])
        values = {
            'client_id': self.demo['client_id'],
            'client_secret': self.demo['client_secret'],
            'authority_host': info['authority_base_url'],
            'graph_endpoint': info['graph_base_url'],
            'ca_bundle': info['ca_bundle'],
            'service_account': self.demo['service_account']['username'],
        }
        if self.connection:
            self.connection.write(values)
        else:
            self.connection = self.env['epilot.outlook.connection'].create(values)
        self.browser = requests.Session()
        self.browser.verify = info['ca_bundle']
        self.browser.trust_env = False  # Else REQUESTS_CA_BUNDLE from the environment overrides ``verify``.
        self.addCleanup(self.browser.close)
        self.authenticate('eo_flow_admin', 'eo_flow_admin_pw')

    # --- the people of the flow -----------------------------------------------------------------------

    def click_connect(self):
        """ The Odoo admin clicks Connect; returns the Microsoft URL the browser is sent to. """
        action = self.connection.with_user(self.odoo_admin).action_outlook_connect()
        self.assertEqual(action['type'], 'ir.actions.act_url')
        return action['url']

    def microsoft_pages(self, url, who, consent='accept'):
        """ ``who`` (``admin`` or ``service_account``) signs in at the sandbox; returns the redirect back. """
        account = self.demo[who]
        location, _params = sign_in(self.browser, url, account['username'], account['password'], consent=consent)
        return location

    def odoo_callback(self, location):
        """ The browser lands on Odoo's callback; returns Odoo's response (not followed). """
        self.assertTrue(location.startswith(self.base_url()), location)
        return self.url_open(location, allow_redirects=False)

    def connect(self):
        """ The whole first connect: admin consent, then the service account's sign-in. """
        return self.connect_from(self.click_connect())

    def connect_from(self, consent_url):
        """ The flow from the admin-consent page on: consent, then the service account's sign-in. """
        consent_return = self.microsoft_pages(consent_url, 'admin')
        response = self.odoo_callback(consent_return)
        self.assertEqual(response.status_code, 303, response.text[:500])
        sign_in_return = self.microsoft_pages(response.headers['Location'], 'service_account')
        response = self.odoo_callback(sign_in_return)
        self.assertEqual(response.status_code, 303, response.text[:500])
        self.connection.invalidate_recordset()
        return response

    def assertRaisesKeepingCommits(self, exception):
        """ ``assertRaises`` without Odoo's savepoint around the block.

        Odoo's version rolls its block back. Under HttpCase the refresh's transaction of its own is nested in
        the test's, so that rollback would also undo what the code committed before raising (the needs
        reconnect state, the rotated token), which is exactly what these tests check.
        """
        return unittest.TestCase.assertRaises(self, exception)

    # --- reading state --------------------------------------------------------------------------------

    @staticmethod
    def query(url):
        return dict(parse_qsl(urlsplit(url).query))

    def sandbox_state(self):
        return self.sandbox.control('GET', '/state')

    def secrets(self):
        """ The connection's decrypted secrets (as the addon sees them). """
        return self.connection.sudo()._outlook_decrypt_secrets()
