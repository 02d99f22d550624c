import time
import uuid

from odoo.exceptions import UserError
from odoo.tests import new_test_user, tagged
from odoo.tools import SQL

from ..models.epilot_outlook_connection import OUTLOOK_SECRET_COLUMNS
from ..outlook_core import const, oauth_state
from .outlook_sandbox_common import OutlookSandboxCase


@tagged('post_install', '-at_install')
class TestConnectFlow(OutlookSandboxCase):
    """ The admin's side of the seed: admin consent, the service account's sign-in, and the signed state. """

    def test_first_connect_goes_through_admin_consent_then_sign_in(self):
        consent_url = self.click_connect()
        self.assertIn('/v2.0/adminconsent', consent_url)
        # Exactly the product's delegated scopes, and never an application permission (.default).
        self.assertEqual(
            self.query(consent_url)['scope'].split(),
            ['https://graph.microsoft.com/User.Read', 'offline_access',
             'https://graph.microsoft.com/Mail.Read.Shared', 'https://graph.microsoft.com/Mail.ReadWrite.Shared',
             'https://graph.microsoft.com/Mail.Send.Shared'],
        )
        response = self.odoo_callback(self.microsoft_pages(consent_url, 'admin'))
        self.assertEqual(response.status_code, 303)
        sign_in_url = response.headers['Location']
        # The sign-in goes to the tenant's own authority, with PKCE.
        self.assertIn('/%s/oauth2/v2.0/authorize' % self.demo['tenant_id'], sign_in_url)
        self.assertEqual(self.query(sign_in_url)['code_challenge_method'], 'S256')
        self.connection.invalidate_recordset()
        self.assertEqual(self.connection.state, 'consent_granted')

        response = self.odoo_callback(self.microsoft_pages(sign_in_url, 'service_account'))
        self.assertEqual(response.status_code, 303)
        self.assertTrue(response.headers['Location'].endswith(
            '/odoo/action-epilot_outlook.epilot_outlook_connection_action/%s' % self.connection.id))
        self.connection.invalidate_recordset()
        self.assertEqual(self.connection.state, 'connected')
        self.assertEqual(set(self.connection.scopes_granted.split()) & set(const.MSAL_SCOPES), set(const.MSAL_SCOPES))
        self.assertTrue(self.connection.access_token_expiry)
        secrets = self.secrets()
        self.assertEqual(secrets['tenant_id'], self.demo['tenant_id'])
        self.assertIn(self.demo['service_account']['id'], secrets['identity'])
        # The token works on Graph: the service account reads a shared mailbox it has Full Access to.
        inbox = self.connection._outlook_call_graph(
            lambda graph: graph.get('users/support@contoso.onmicrosoft.com/mailFolders/inbox'))
        self.assertIn('totalItemCount', inbox)

    def test_reconnect_skips_admin_consent(self):
        self.connect()
        consents = self.sandbox_state()['consents']
        url = self.click_connect()
        self.assertIn('/oauth2/v2.0/authorize', url)
        self.assertNotIn('adminconsent', url)
        response = self.odoo_callback(self.microsoft_pages(url, 'service_account'))
        self.assertEqual(response.status_code, 303)
        self.connection.invalidate_recordset()
        self.assertEqual(self.connection.state, 'connected')
        self.assertEqual(self.sandbox_state()['consents'], consents, "no second consent was recorded")

    def test_database_holds_only_ciphertext(self):
        self.connect()
        secrets = self.secrets()
        rows = self.env.execute_query(SQL(
            "SELECT %s FROM epilot_outlook_connection WHERE id = %s",
            SQL(", ").join(SQL.identifier(column) for column in OUTLOOK_SECRET_COLUMNS.values()),
            self.connection.id,
        ))
        stored = b''.join(bytes(value) for value in rows[0] if value)
        for name, plaintext in secrets.items():
            self.assertTrue(plaintext, name)
            self.assertNotIn(plaintext.encode(), stored, "%s is stored in clear" % name)
        for value in rows[0]:
            self.assertTrue(bytes(value).startswith(b'gAAAAA'), "every secret column holds a Fernet token")
        # And none of them is reachable through the ORM, even for the admin who connected.
        data = self.connection.with_user(self.odoo_admin).read()[0]
        for plaintext in secrets.values():
            self.assertNotIn(plaintext, repr(data))

    # --- the signed, single-use state -------------------------------------------------------------------

    def assert_error_page(self, response, text):
        self.assertEqual(response.status_code, 400)
        self.assertIn('Outlook could not be connected', response.text)
        self.assertIn(text, response.text)
        # Back to this connection's form, not the list.
        self.assertIn('href="/odoo/action-epilot_outlook.epilot_outlook_connection_action/%s"' % self.connection.id,
                      response.text)

    def assert_nothing_stored(self):
        self.connection.invalidate_recordset()
        self.assertEqual(self.connection.state, 'not_connected')
        self.assertEqual(self.connection.sudo()._outlook_load_secrets('tenant_id', 'refresh_token'),
                         {'tenant_id': None, 'refresh_token': None})

    def test_replayed_state_is_refused(self):
        consent_return = self.microsoft_pages(self.click_connect(), 'admin')
        self.assertEqual(self.odoo_callback(consent_return).status_code, 303)
        self.assert_error_page(self.odoo_callback(consent_return), 'already used')

    def test_forged_state_is_refused_and_nothing_is_stored(self):
        consent_return = self.microsoft_pages(self.click_connect(), 'admin')
        state = self.query(consent_return)['state']
        version, payload, signature = state.split('.')
        forged = '.'.join([version, payload, ('A' if signature[0] != 'A' else 'B') + signature[1:]])
        response = self.odoo_callback(consent_return.replace(state, forged))
        self.assert_error_page(response, 'not valid')
        self.assert_nothing_stored()

    def test_expired_state_is_refused(self):
        Connection = self.env['epilot.outlook.connection']
        nonce = oauth_state.new_nonce()
        self.env['epilot.outlook.oauth.attempt'].with_user(self.odoo_admin)._outlook_new(self.connection, 'consent', nonce)
        state = oauth_state.issue(Connection._outlook_state_secret(), {
            'database': self.env.cr.dbname, 'company_id': self.connection.company_id.id,
            'connection_id': self.connection.id, 'user_id': self.odoo_admin.id, 'purpose': 'consent',
            'nonce': nonce,
        }, now=time.time() - const.OAUTH_STATE_MAX_AGE_S - 5)
        response = self.url_open('/epilot_outlook/oauth/callback?admin_consent=True&tenant=%s&state=%s' % (
            self.demo['tenant_id'], state), allow_redirects=False)
        self.assert_error_page(response, 'expired')
        self.assert_nothing_stored()

    def test_state_of_another_user_is_refused(self):
        consent_return = self.microsoft_pages(self.click_connect(), 'admin')
        new_test_user(self.env, 'eo_other_admin', password='eo_other_admin_pw',
                      groups='epilot_outlook.group_email_setting_edit')
        self.authenticate('eo_other_admin', 'eo_other_admin_pw')
        self.assert_error_page(self.odoo_callback(consent_return), 'started by another user')
        self.assert_nothing_stored()


    # --- the tenant of the admin-consent redirect ------------------------------------------------------

    def test_forged_tenant_is_refused_and_nothing_is_stored(self):
        consent_return = self.microsoft_pages(self.click_connect(), 'admin')
        forged = consent_return.replace(self.demo['tenant_id'], str(uuid.uuid4()))
        self.assertNotEqual(forged, consent_return)
        response = self.odoo_callback(forged)
        self.assert_error_page(response, 'Microsoft does not know this tenant')
        self.assert_nothing_stored()
        # Connect still works: admin consent again, then the service account.
        self.connect()
        self.assertEqual(self.connection.state, 'connected')

    def test_disconnect_then_connect_recovers_from_an_unknown_stored_tenant(self):
        # What the flow stored before it checked the tenant: a forged one, consent granted.
        self.connection.sudo()._outlook_encrypt_and_store({'tenant_id': str(uuid.uuid4())})
        self.connection.state = 'consent_granted'
        self.connection.with_user(self.odoo_admin).action_outlook_disconnect()
        url = self.click_connect()
        self.assertIn('/v2.0/adminconsent', url, "the unknown tenant is forgotten: consent again")
        self.connect_from(url)
        self.assertEqual(self.connection.state, 'connected')
        self.assertEqual(self.secrets()['tenant_id'], self.demo['tenant_id'])

    # --- the service account, named and enforced -------------------------------------------------------

    def test_sign_in_by_another_account_is_refused_and_nothing_is_stored(self):
        response = self.odoo_callback(self.microsoft_pages(self.click_connect(), 'admin'))
        sign_in_url = response.headers['Location']
        self.assertEqual(self.query(sign_in_url)['login_hint'], self.demo['service_account']['username'])
        # The tenant admin, still signed in at Microsoft, signs in again on the second page.
        response = self.odoo_callback(self.microsoft_pages(sign_in_url, 'admin'))
        self.assertIn('Outlook could not be connected', response.text)
        self.assertIn('Only the service account %s may sign in' % self.demo['service_account']['username'],
                      response.text)
        self.connection.invalidate_recordset()
        self.assertEqual(self.connection.state, 'consent_granted')
        self.assertEqual(self.connection.sudo()._outlook_load_secrets('access_token', 'refresh_token', 'identity'),
                         {'access_token': None, 'refresh_token': None, 'identity': None})
        self.assertFalse(self.connection.with_user(self.odoo_admin).connected_account)

    def test_connect_needs_a_service_account(self):
        self.connection.service_account = False
        with self.assertRaisesRegex(UserError, 'Service Account'):
            self.click_connect()

    def test_connected_account_shown_to_editors_only_and_named_in_the_chatter(self):
        self.connect()
        service = self.demo['service_account']
        account = self.connection.with_user(self.odoo_admin).connected_account
        self.assertIn(service['username'], account)
        connected = self.connection.message_ids.filtered(lambda message: 'Connected to' in (message.body or ''))
        self.assertIn(service['username'], connected.body)
        # Reconnect: named again.
        self.odoo_callback(self.microsoft_pages(self.click_connect(), 'service_account'))
        self.connection.invalidate_recordset()
        self.assertEqual(len(self.connection.message_ids.filtered(
            lambda message: service['username'] in (message.body or ''))), 2)
        # Never in a list or an export.
        Connection = self.env['epilot.outlook.connection'].with_user(self.odoo_admin)
        views = Connection.get_views([(False, 'list'), (False, 'form')])['views']
        self.assertNotIn('connected_account', views['list']['arch'])
        self.assertIn('connected_account', views['form']['arch'])
        self.assertFalse(Connection.fields_get(['connected_account'])['connected_account']['exportable'])
        with self.assertRaises(UserError):
            self.connection.with_user(self.odoo_admin).export_data(['connected_account'])
