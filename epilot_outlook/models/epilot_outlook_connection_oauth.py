import hashlib
import json
from datetime import timezone

from odoo import api, fields, models
from odoo.exceptions import UserError

from ..outlook_core import const, oauth_state
from ..outlook_core.errors import (
    ConsentRequired, OutlookError, StateInvalid, TenantNotFound, TokenError, TransientError, VaultError,
)
from ..outlook_core.oauth import OAuthClient
from ..tools.explain import explain


class EpilotOutlookConnection(models.Model):
    """ The connect flow: Connect, the admin consent and the service account's sign-in (MSAL), the signed
    OAuth states and their single-use attempts, the model side of the OAuth callback, and the token set stored
    after a sign-in or a refresh. """
    _inherit = 'epilot.outlook.connection'

    # === BUSINESS METHODS - KEYS AND CLIENTS === #

    @api.model
    def _outlook_state_secret(self):
        """ The HMAC key of OAuth states, derived from the database secret so it is never stored apart. """
        database_secret = self.env['ir.config_parameter'].sudo().get_param('database.secret')
        return hashlib.sha256(b'epilot_outlook.oauth_state:' + database_secret.encode()).digest()

    def _outlook_oauth_client(self, tenant):
        """ Return a new MSAL wrapper for ``tenant`` (a GUID, a domain or ``organizations``).

        A new one per operation: MSAL replays a failed answer for 60 s inside one instance.
        """
        self.ensure_one()
        self._outlook_check_endpoints()
        if not self.client_id:
            raise UserError(self.env._("Enter the Application (client) ID of your Entra app first."))
        vault = self._outlook_vault()
        ciphertext = self._outlook_load_secrets('client_secret')['client_secret']
        if not ciphertext:
            raise UserError(self.env._("Enter the client secret of your Entra app first."))
        if not vault.can_decrypt(ciphertext):
            raise UserError(self.env._(
                "The client secret was encrypted with a key that is no longer configured. Type the client "
                "secret again (Entra admin center → App registrations → Certificates & secrets)."))
        return OAuthClient(
            self.client_id.strip(), vault.decrypt(ciphertext).decode(), self.authority_host, tenant,
            ca_bundle=self._outlook_ca_bundle(),
        )

    # === ACTION METHODS === #

    def action_outlook_connect(self):
        """ Start (or restart) the connect flow: admin consent first unless the tenant already consented,
        then the service account's sign-in.

        :return: An action sending the browser to Microsoft.
        :rtype: dict
        """
        self.ensure_one()
        self.check_access('write')
        if not (self.service_account or '').strip():
            raise UserError(self.env._(
                "Enter the Service Account first: the address of the dedicated Microsoft 365 account Odoo signs in "
                "as. Only that account may sign in."))
        vault = self._outlook_vault()  # No key, no connect: say how to set one before anyone signs in.
        tenant_ciphertext = self._outlook_load_secrets('tenant_id')['tenant_id']
        # A tenant id encrypted with a key that is gone is as good as none: consent again records it anew.
        tenant_id = tenant_ciphertext and vault.can_decrypt(tenant_ciphertext) and vault.decrypt(
            tenant_ciphertext).decode()
        try:
            url = None
            if tenant_id and not self.needs_admin_consent:
                try:
                    url = self._outlook_start_sign_in(tenant_id)
                except TenantNotFound:
                    # The recorded tenant is unknown to Microsoft (forged, deleted): forget it, consent again.
                    self._outlook_store_secrets({'tenant_id': None})
            url = url or self._outlook_start_admin_consent()
        except OutlookError as error:
            raise UserError(explain(self.env, error)) from None
        return {'type': 'ir.actions.act_url', 'url': url, 'target': 'self'}

    # === BUSINESS METHODS - CONNECT FLOW === #

    def _outlook_new_state(self, purpose):
        """ Issue a signed state for one leg of the flow; the caller records its attempt under the nonce. """
        nonce = oauth_state.new_nonce()
        state = oauth_state.issue(self._outlook_state_secret(), {
            'database': self.env.cr.dbname,
            'company_id': self.company_id.id,
            'connection_id': self.id,
            'user_id': self.env.uid,
            'purpose': purpose,
            'nonce': nonce,
        })
        return nonce, state

    def _outlook_start_admin_consent(self):
        """ Return the admin-consent URL listing exactly the product's delegated scopes. """
        consent_tenant = (self.consent_tenant or const.DEFAULT_CONSENT_TENANT).strip()
        nonce, state = self._outlook_new_state('consent')
        client = self._outlook_oauth_client(consent_tenant)
        self.env['epilot.outlook.oauth.attempt']._outlook_new(self, 'consent', nonce)
        return client.admin_consent_url(self.redirect_uri, state, tenant=consent_tenant)

    def _outlook_start_sign_in(self, tenant_id):
        """ Return the service account's sign-in URL (auth code + PKCE) against the tenant's authority. """
        nonce, state = self._outlook_new_state('sign_in')
        # Microsoft's page is offered to the service account (the admin who just consented is still signed in).
        flow = self._outlook_oauth_client(tenant_id).start_sign_in(
            self.redirect_uri, state, login_hint=(self.service_account or '').strip() or None)
        flow_ciphertext = self._outlook_vault().encrypt(json.dumps(flow))
        self.env['epilot.outlook.oauth.attempt']._outlook_new(self, 'sign_in', nonce, flow_ciphertext)
        return flow['auth_uri']

    @api.model
    def _outlook_handle_oauth_callback(self, state, params):
        """ Finish the leg of the connect flow that ``state`` belongs to.

        The state must be well signed, less than an hour old, issued in this database to this user for
        this connection, and unused. Then the admin-consent leg records the tenant and starts the sign-in;
        the sign-in leg stores the tokens.

        :param str state: The ``state`` Microsoft sent back.
        :param dict params: The other query parameters of the redirect.
        :return: The connection, and the URL of the next leg (``None`` when connected).
        :rtype: tuple
        :raise OutlookError: For the admin to read through ``explain``; nothing is stored for a bad state.
        """
        attempt_sudo = self._outlook_take_attempt(state)
        connection = attempt_sudo.connection_id.with_env(self.env)
        connection.check_access('write')
        if attempt_sudo.purpose == 'consent':
            try:
                tenant_id = OAuthClient.parse_admin_consent_callback(params)
            except TokenError as error:
                connection._outlook_record_error(error)
                raise
            # The ``tenant`` parameter can be forged: the sign-in starts (and Microsoft's discovery of the tenant
            # answers) before anything is stored, so an unknown tenant leaves the connection as it was.
            try:
                sign_in_url = connection._outlook_start_sign_in(tenant_id)
            except TokenError as error:
                connection._outlook_record_error(error)
                raise
            connection._outlook_encrypt_and_store({'tenant_id': tenant_id})
            connection.write({'state': 'consent_granted', 'needs_admin_consent': False})
            return connection, sign_in_url

        tenant_id = connection._outlook_decrypt_secrets('tenant_id')['tenant_id']
        try:
            flow = json.loads(self._outlook_vault().decrypt(attempt_sudo.flow_ciphertext))
        except VaultError:
            raise StateInvalid("This sign-in was started with an encryption key that is no longer configured.")
        try:
            tokens = connection._outlook_oauth_client(tenant_id).finish_sign_in(flow, params)
        except ConsentRequired as error:
            connection.needs_admin_consent = True
            connection._outlook_record_error(error)
            raise
        except TokenError as error:
            connection._outlook_record_error(error)
            raise
        except TransientError as error:
            # Unlike a refresh, nothing retries a sign-in: say so, not TransientError's "Odoo will retry".
            error = TokenError(str(error), reason='sign_in_unanswered')
            connection._outlook_record_error(error)
            raise error from None
        expected = (connection.service_account or '').strip()
        # Nothing is stored unless the service account signed in: another account's tokens are dropped here.
        error = None
        if not expected:
            error = TokenError("No service account is set on the connection.", reason='no_service_account')
        elif (tokens.identity.username or '').strip().lower() != expected.lower():
            error = TokenError("Another account than the service account signed in.", reason='wrong_account',
                               params={'expected': expected})
        if error:
            connection._outlook_record_error(error)
            raise error
        if tokens.tenant_id != tenant_id:
            raise TokenError("The account that signed in belongs to another Microsoft 365 tenant.",
                             reason='tenant_mismatch')
        if missing := tokens.missing_scopes():
            raise ConsentRequired("Missing scopes: %s" % ' '.join(missing), reason='missing_scopes',
                                  params={'scopes': ' '.join(missing)})
        connection._outlook_store_token_set(tokens)
        connection.email_address_ids._outlook_after_reconnect()
        connection.message_post(body=self.env._(
            "Connected to Microsoft 365; the service account %(account)s signed in.",
            account=connection._outlook_connected_account() or expected))
        return connection, None

    @api.model
    def _outlook_take_attempt(self, state):
        """ Verify ``state`` and consume its attempt.

        :return: The consumed attempt, in sudo.
        :raise StateError: For a malformed, forged, expired, foreign or already used state.
        """
        nonce = oauth_state.read_nonce(state)
        attempt_sudo = self.env['epilot.outlook.oauth.attempt'].sudo().search([('nonce', '=', nonce)], limit=1)
        if not attempt_sudo:
            raise StateInvalid("Unknown OAuth state.")
        oauth_state.verify(self._outlook_state_secret(), state, expected={
            'database': self.env.cr.dbname,
            'company_id': attempt_sudo.connection_id.company_id.id,
            'connection_id': attempt_sudo.connection_id.id,
            'user_id': self.env.uid,
        })
        attempt_sudo = attempt_sudo._outlook_consume(nonce)
        if not attempt_sudo:
            raise StateInvalid("This OAuth state was already used.", reason='state_used')
        return attempt_sudo

    def _outlook_store_token_set(self, tokens):
        """ Store a fresh token set, encrypted, and mark the connection connected. """
        self.ensure_one()
        identity = tokens.identity
        self._outlook_encrypt_and_store({
            'access_token': tokens.access_token,
            'refresh_token': tokens.refresh_token,
            'identity': json.dumps({'oid': identity.oid, 'upn': identity.username, 'name': identity.name}),
        })
        self.write({
            'state': 'connected',
            'scopes_granted': ' '.join(sorted(tokens.scopes)),
            'access_token_expiry': tokens.expires_at.astimezone(timezone.utc).replace(tzinfo=None),
            'last_refresh_date': fields.Datetime.now(),
            'last_error': False,
            'last_error_date': False,
            'needs_admin_consent': False,
        })
