import time
from types import SimpleNamespace

from markupsafe import escape

from odoo.tests import tagged

from ..models import epilot_outlook_connection_tokens as tokens_module
from ..outlook_core.errors import ConnectionUnusable, TransientError, token_error_from_aad
from ..tools.explain import explain
from .outlook_sandbox_common import OutlookSandboxCase, sign_in


@tagged('post_install', '-at_install')
class TestConnectErrors(OutlookSandboxCase):
    """ Every failure Microsoft (the sandbox) reports, where it really surfaces: on Microsoft's own pages
    (Odoo then stores nothing), on Odoo's callback (an explained error page, never a traceback), or on a
    refresh (the connection needs a reconnect, with the reason in ``last_error``). """

    # --- helpers --------------------------------------------------------------------------------------

    def explanation(self, aadsts):
        """ The admin-facing words the addon has for an AADSTS code. """
        return explain(self.env, token_error_from_aad({'error': 'invalid_grant', 'error_codes': [aadsts]}))

    def assert_error_page(self, response, text):
        """ Odoo's own page, an error status, with the explanation and without a traceback or a secret. """
        self.assertIn(response.status_code, (400, 503), response.text[:500])
        self.assertIn('Outlook could not be connected', response.text)
        self.assertIn(str(escape(text)), response.text)
        self.assertNotIn('Traceback', response.text)
        self.assertNotIn(self.demo['client_secret'], response.text)

    def assert_no_tokens(self):
        self.connection.invalidate_recordset()
        self.assertEqual(
            self.connection.sudo()._outlook_load_secrets('access_token', 'refresh_token', 'identity'),
            {'access_token': None, 'refresh_token': None, 'identity': None},
        )

    def assert_nothing_stored(self):
        """ Not even the tenant: the flow stopped before Odoo learnt anything. """
        self.assert_no_tokens()
        self.assertEqual(self.connection.state, 'not_connected')
        self.assertIsNone(self.connection.sudo()._outlook_load_secrets('tenant_id')['tenant_id'])

    def assert_sign_in_stops_at_microsoft(self, url, aadsts, username=None, password=None):
        """ The sandbox, like Microsoft, stops on its own error page and never comes back to Odoo: the
        connection keeps only the consent it had. """
        account = self.demo['service_account']
        with self.assertRaisesRegex(AssertionError, 'AADSTS%s' % aadsts):
            sign_in(self.browser, url, username or account['username'], password or account['password'])
        self.connection.invalidate_recordset()
        self.assertEqual(self.connection.state, 'consent_granted')
        self.assertEqual(self.secrets()['tenant_id'], self.demo['tenant_id'])
        self.assert_no_tokens()

    def assert_sign_in_callback_refused(self, location, text=None):
        """ Odoo's callback cannot redeem the code: the explained error page; consent kept, no token. """
        response = self.odoo_callback(location)
        self.connection.invalidate_recordset()
        self.assertTrue(self.connection.last_error)
        self.assertEqual(self.connection.last_error, text or self.connection.last_error)
        self.assert_error_page(response, self.connection.last_error)
        self.assertEqual(self.connection.state, 'consent_granted')
        self.assertEqual(self.secrets()['tenant_id'], self.demo['tenant_id'])
        self.assert_no_tokens()
        return response

    def consent(self):
        """ The tenant admin grants consent; returns the service account's sign-in URL. """
        response = self.odoo_callback(self.microsoft_pages(self.click_connect(), 'admin'))
        self.assertEqual(response.status_code, 303, response.text[:500])
        self.connection.invalidate_recordset()
        self.assertEqual(self.connection.state, 'consent_granted')
        return response.headers['Location']

    def user_switch(self, who, switch, payload=None):
        self.sandbox.control('POST', '/users/%s/%s' % (self.demo[who]['id'], switch), payload)

    def assert_refresh_needs_reconnect(self, text):
        """ A forced refresh fails with ``text``: the connection needs a reconnect, keeps its (old, still
        encrypted) tokens untouched, and the chatter tells the editors. """
        before = self.connection.sudo()._outlook_load_secrets()
        self.assertEqual(str(self.failed_refresh()), text)
        self.connection.invalidate_recordset()
        self.assertEqual(self.connection.state, 'needs_reconnect')
        self.assertEqual(self.connection.last_error, text)
        self.assertTrue(self.connection.last_error_date)
        self.assertEqual(self.connection.sudo()._outlook_load_secrets(), before, "nothing new was stored")
        notices = self.connection.message_ids.filtered(lambda message: 'needs to be reconnected' in message.body)
        self.assertEqual(len(notices), 1, "the editors are told once")
        self.assertIn(text, str(notices.body))

    def refresh_after(self, control_path, payload, aadsts):
        """ Connected, then ``control_path`` happens at Microsoft: the next refresh says ``aadsts``. """
        self.connect()
        self.sandbox.control('POST', control_path, payload)
        self.assert_refresh_needs_reconnect(self.explanation(aadsts))

    def failed_refresh(self):
        """ Force a refresh that must fail (``ConnectionUnusable``, Microsoft's refusal as its cause); return
        what a user reads of it.

        Not ``assertRaises``: Odoo's rolls back to a savepoint taken before the call, and in tests every
        cursor shares the test transaction, so it would also undo what the refresh committed in its own
        transaction (the needs-reconnect state, the last error), which is exactly what is tested.
        """
        try:
            self.connection._outlook_refresh_tokens(force=True)
        except ConnectionUnusable as error:
            self.assertIsNotNone(error.cause, "Microsoft's refusal travels with it")
            text = explain(self.env, error)
            self.assertNotIn('Traceback', text)
            return text
        self.fail("the refresh did not fail")

    # --- consent --------------------------------------------------------------------------------------

    def test_consent_declined_by_the_tenant_admin(self):
        location = self.microsoft_pages(self.click_connect(), 'admin', consent='cancel')
        params = self.query(location)
        self.assertEqual(params['error'], 'access_denied')
        self.assertIn('AADSTS65004', params['error_description'])
        self.assert_error_page(self.odoo_callback(location), self.explanation(65004))
        self.assert_nothing_stored()
        self.assertEqual(self.connection.last_error, self.explanation(65004))
        self.assertFalse(self.sandbox_state()['consents'])

    # --- MFA: satisfied interactively, fails only on refresh --------------------------------------------

    def test_mfa_at_sign_in_is_completed_on_microsofts_page(self):
        # At sign-in the sandbox asks for MFA and the service account approves it: no failure there, and
        # the refresh token it gets carries MFA, so refreshing works.
        self.user_switch('service_account', 'mfa', {'required': True})
        self.connect()
        self.assertEqual(self.connection.state, 'connected')
        self.connection._outlook_refresh_tokens(force=True)
        self.connection.invalidate_recordset()
        self.assertEqual(self.connection.state, 'connected')
        self.assertFalse(self.connection.last_error)

    def test_mfa_newly_required_surfaces_on_refresh(self):
        # A refresh token issued before MFA was required cannot be refreshed: 50076.
        self.refresh_after('/users/%s/mfa' % self.demo['service_account']['id'], {'required': True}, 50076)
        self.assertFalse(self.connection.needs_admin_consent)

        # Reconnecting (sign-in with MFA, no new consent) repairs it.
        url = self.click_connect()
        self.assertNotIn('adminconsent', url)
        self.assertEqual(self.odoo_callback(self.microsoft_pages(url, 'service_account')).status_code, 303)
        self.connection.invalidate_recordset()
        self.assertEqual(self.connection.state, 'connected')
        self.assertFalse(self.connection.last_error)

    # --- Conditional Access ---------------------------------------------------------------------------

    def test_conditional_access_block_at_sign_in_stops_on_microsofts_page(self):
        sign_in_url = self.consent()
        self.user_switch('service_account', 'conditional-access', {'blocked': True})
        self.assert_sign_in_stops_at_microsoft(sign_in_url, 53003)

    def test_conditional_access_block_at_refresh_needs_reconnect(self):
        self.refresh_after('/users/%s/conditional-access' % self.demo['service_account']['id'], {'blocked': True},
                           53003)

    # --- disabled service account ---------------------------------------------------------------------

    def test_disabled_account_at_sign_in_stops_on_microsofts_page(self):
        sign_in_url = self.consent()
        self.user_switch('service_account', 'disable')
        self.assert_sign_in_stops_at_microsoft(sign_in_url, 50057)

    def test_disabled_account_at_code_redemption_is_explained(self):
        # Disabled between the sign-in page and Odoo's callback: the code redemption says 50057.
        location = self.microsoft_pages(self.consent(), 'service_account')
        self.user_switch('service_account', 'disable')
        self.assert_sign_in_callback_refused(location, self.explanation(50057))

    def test_disabled_account_at_refresh_needs_reconnect(self):
        self.refresh_after('/users/%s/disable' % self.demo['service_account']['id'], None, 50057)

    # --- more reasons a refresh token stops working --------------------------------------------------

    def test_mfa_enrolment_required_surfaces_on_refresh(self):
        self.refresh_after('/users/%s/mfa' % self.demo['service_account']['id'],
                           {'required': False, 'enrollment_required': True}, 50079)

    def test_password_reset_by_an_admin_surfaces_on_refresh(self):
        self.refresh_after('/users/%s/reset-password' % self.demo['service_account']['id'], None, 50173)

    def test_refresh_token_unused_for_90_days(self):
        self.refresh_after('/clock/advance', {'days': 91}, 700082)

    def test_expired_client_secret_at_refresh_needs_reconnect(self):
        self.refresh_after('/apps/%s/secret/expire' % self.demo['client_id'], None, 7000222)

    # --- the app's client secret ----------------------------------------------------------------------

    def test_wrong_client_secret_at_code_redemption(self):
        location = self.microsoft_pages(self.consent(), 'service_account')
        self.connection.with_user(self.odoo_admin).client_secret = 'sbx~not-the-secret'
        response = self.assert_sign_in_callback_refused(location, self.explanation(7000215))
        self.assertNotIn('sbx~not-the-secret', response.text)

    def test_expired_client_secret_at_code_redemption(self):
        location = self.microsoft_pages(self.consent(), 'service_account')
        self.sandbox.control('POST', '/apps/%s/secret/expire' % self.demo['client_id'])
        self.assert_sign_in_callback_refused(location, self.explanation(7000222))

    # --- the identity platform down while Odoo redeems the code ---------------------------------------------

    def test_outage_at_code_redemption_says_to_connect_again(self):
        location = self.microsoft_pages(self.consent(), 'service_account')
        self.token_fault(status=503, times=1)
        response = self.assert_sign_in_callback_refused(location)
        # Nothing retries a sign-in: the admin is told to start it again, not that Odoo will retry.
        self.assertIn('Connect again', self.connection.last_error)
        self.assertNotIn('retry automatically', response.text)
        url = self.click_connect()
        self.assertEqual(self.odoo_callback(self.microsoft_pages(url, 'service_account')).status_code, 303)
        self.connection.invalidate_recordset()
        self.assertEqual(self.connection.state, 'connected')
        self.assertFalse(self.connection.last_error)

    # --- tenants --------------------------------------------------------------------------------------

    def test_unknown_consent_tenant_stops_on_microsofts_page(self):
        self.connection.consent_tenant = 'nowhere.onmicrosoft.com'
        url = self.click_connect()
        self.assertIn('/nowhere.onmicrosoft.com/v2.0/adminconsent', url)
        # The sandbox, like Microsoft, shows its own error page and never comes back to Odoo.
        with self.assertRaisesRegex(AssertionError, 'AADSTS90002'):
            self.microsoft_pages(url, 'admin')
        self.assert_nothing_stored()
        self.assertFalse(self.connection.last_error)

    def seed_other_tenant(self):
        return self.sandbox.control('POST', '/seed', {
            'tenant': {'domain': 'fabrikam.onmicrosoft.com', 'display_name': 'Fabrikam'},
            'users': [{'upn': 'admin@fabrikam.onmicrosoft.com', 'admin': True},
                      {'upn': 'svc@fabrikam.onmicrosoft.com'}],
        })

    def test_account_of_another_tenant_is_refused(self):
        fabrikam = self.seed_other_tenant()
        sign_in_url = self.consent()  # Contoso's admin consented: the sign-in is pinned to Contoso.
        self.assertIn('/%s/oauth2/v2.0/authorize' % self.demo['tenant_id'], sign_in_url)
        account = fabrikam['users']['svc@fabrikam.onmicrosoft.com']
        self.assert_sign_in_stops_at_microsoft(
            sign_in_url, 50034, 'svc@fabrikam.onmicrosoft.com', account['password'])

        # The same sign-in sent to Fabrikam's authority instead (an edited link): Fabrikam's admin gets a
        # code, but Contoso's token endpoint, where Odoo redeems it, refuses a code of another tenant.
        admin = fabrikam['users']['admin@fabrikam.onmicrosoft.com']
        location, params = sign_in(
            self.browser, sign_in_url.replace('/%s/' % self.demo['tenant_id'], '/%s/' % fabrikam['tenant_id']),
            'admin@fabrikam.onmicrosoft.com', admin['password'])
        self.assertIn('code', params)
        self.assert_sign_in_callback_refused(location)
        # Said as it is (a code of another tenant), not as a revocation of the service account's access.
        self.assertIn('AADSTS9002313', self.connection.last_error)
        self.assertIn('another tenant', self.connection.last_error)
        self.assertNotIn('revoked', self.connection.last_error)

    # --- transient failures: retried with backoff, never taken for a revocation -------------------------

    def record_sleeps(self):
        """ Replace only the retry loop's ``time.sleep`` (waiting is not what is tested; the schedule is). """
        delays = []
        # Everything else of the module's ``time`` stays the real one.
        clock = {name: getattr(time, name) for name in dir(time) if not name.startswith('_')}
        self.patch(tokens_module, 'time', SimpleNamespace(**dict(clock, sleep=delays.append)))
        return delays

    def token_fault(self, **fault):
        self.sandbox.control('POST', '/faults', {'token_endpoint': fault or None})

    def test_refresh_retries_5xx_then_succeeds(self):
        self.connect()
        before = self.secrets()
        delays = self.record_sleeps()
        self.token_fault(status=503, times=2)
        access_token = self.connection._outlook_refresh_tokens(force=True)
        self.assertEqual(delays, [1.0, 2.0], "exponential backoff from const.BACKOFF_BASE_S")
        self.connection.invalidate_recordset()
        self.assertEqual(self.connection.state, 'connected')
        self.assertFalse(self.connection.last_error)
        self.assertEqual(self.secrets()['access_token'], access_token)
        self.assertNotEqual(access_token, before['access_token'])
        self.assertNotEqual(self.secrets()['refresh_token'], before['refresh_token'], "rotated and stored")
        self.assertNotIn('token_endpoint', self.sandbox_state()['faults'])

    def test_refresh_waits_retry_after_on_429(self):
        self.connect()
        delays = self.record_sleeps()
        self.token_fault(status=429, times=2, retry_after=3)
        self.connection._outlook_refresh_tokens(force=True)
        self.assertEqual(delays, [3, 3], "Retry-After is honoured instead of the backoff")
        self.connection.invalidate_recordset()
        self.assertEqual(self.connection.state, 'connected')
        self.assertFalse(self.connection.last_error)

    def test_refresh_always_failing_5xx_keeps_the_connection(self):
        self.connect()
        before = self.connection.sudo()._outlook_load_secrets()
        delays = self.record_sleeps()
        self.token_fault(status=500)
        self.assertEqual(str(self.failed_refresh()), explain(self.env, TransientError()))
        self.assertEqual(delays, [1.0, 2.0, 4.0])
        self.connection.invalidate_recordset()
        self.assertEqual(self.connection.state, 'connected', "an outage is not a revocation")
        self.assertFalse(self.connection.needs_admin_consent)
        self.assertEqual(self.connection.last_error, explain(self.env, TransientError()))
        self.assertEqual(self.connection.sudo()._outlook_load_secrets(), before)

        # Microsoft is back: the very same refresh token still works.
        self.token_fault()
        self.connection._outlook_refresh_tokens(force=True)
        self.connection.invalidate_recordset()
        self.assertEqual(self.connection.state, 'connected')
        self.assertFalse(self.connection.last_error)
