import hashlib
import json
import logging
import re
import time
from datetime import timedelta, timezone
from urllib.parse import urlsplit

import psycopg2.errors

from odoo import api, fields, models
from odoo.exceptions import UserError, ValidationError
from odoo.tools import SQL

from ..outlook_core import const, oauth_state
from ..outlook_core.errors import (
    ClientCredentialError, ConsentRequired, GrantRevoked, InteractionRequired, NotFound, OutlookError,
    StateInvalid, TenantNotFound, Throttled, TokenError, TransientError, Unauthorized, VaultError,
)
from ..outlook_core.graph import GraphClient, thread_session
from ..outlook_core.oauth import OAuthClient
from ..tools.explain import explain

_logger = logging.getLogger(__name__)

# Logical secret name -> ciphertext column on the connection table. These columns are deliberately NOT ORM
# fields: see the docstring of the secret mixin (`epilot.outlook.secret.mixin`).
OUTLOOK_SECRET_COLUMNS = {
    'refresh_token': 'outlook_refresh_token_ciphertext',
    'access_token': 'outlook_access_token_ciphertext',
    'tenant_id': 'outlook_tenant_id_ciphertext',
    'identity': 'outlook_identity_ciphertext',  # JSON blob: display name, UPN and object id of the consenting user.
    'client_secret': 'outlook_client_secret_ciphertext',  # The Entra app's secret; write-only in the UI.
}

# Errors after which only a person can help: sync stops until an admin reconnects.
RECONNECT_ERRORS = (GrantRevoked, ConsentRequired, InteractionRequired, ClientCredentialError, TenantNotFound)
# A refresh waits this long for another worker's refresh of the same connection (single flight).
REFRESH_LOCK_TIMEOUT_MS = 20000
# How often a refresh looks again after the worker it queued behind committed (REPEATABLE READ).
REFRESH_SERIALIZATION_RETRIES = 3
# Access tokens this worker obtained itself, by (database, connection id) -> (token, naive UTC expiry, mark of
# the stored token set it came with). A refresh commits in a transaction of its own, and the caller's older
# REPEATABLE READ snapshot still shows the previous token: without this, a retry after a 401 would send
# Microsoft the very token it just refused. An entry is used only while the token set it came with is still the
# stored one, as the database says now (not this snapshot): a Disconnect, a reconnect or another worker's
# refresh, in any process, retires it.
_tokens_refreshed_here = {}
# System parameter (``ir.config_parameter``: only system administrators read or write it) listing the hosts,
# other than Microsoft's own sign-in and Graph hosts, a connection may point at: ``host:port`` (that port only)
# or ``host`` (any port), separated by commas or spaces. Empty in production; the sandbox's for the demo and tests.
ALLOWED_HOSTS_PARAM = 'epilot_outlook.allowed_hosts'
# The secrets were issued by, and are sent to, these: changing one unbinds them (see ``write``).
ENDPOINT_FIELDS = ('authority_host', 'graph_endpoint', 'ca_bundle')
# Transient identity-platform failures are retried this often, with exponential backoff, before giving up.
REFRESH_TRANSIENT_RETRIES = 3


class EpilotOutlookConnection(models.Model):
    """ The link between one company and its Microsoft 365 tenant.

    Only the non-secret facts of the connection are ORM fields: its state, the scopes granted, the token
    expiry and the dates of the last refresh, error and successful Graph call.

    The refresh token, the access token, the tenant id, the connecting identity and the app's client secret
    are stored encrypted, in ``bytea`` columns of this model's table that are **not declared as fields**
    (:data:`OUTLOOK_SECRET_COLUMNS`); the secret mixin (``epilot.outlook.secret.mixin``) creates them and
    says why they are not fields.
    """
    _name = 'epilot.outlook.connection'
    _description = "Outlook Connection"
    _inherit = ['mail.thread', 'epilot.outlook.secret.mixin']
    _order = 'company_id, id'
    _outlook_secret_columns = OUTLOOK_SECRET_COLUMNS

    company_id = fields.Many2one(
        string="Company",
        comodel_name='res.company',
        required=True,
        default=lambda self: self.env.company,
        ondelete='cascade',
    )
    state = fields.Selection(
        string="Status",
        selection=[
            ('not_connected', "Not Connected"),
            ('consent_granted', "Consent Granted"),
            ('connected', "Connected"),
            ('needs_reconnect', "Needs Reconnect"),
            ('disconnected', "Disconnected"),
        ],
        required=True,
        default='not_connected',
        copy=False,
        tracking=True,
    )
    scopes_granted = fields.Char(
        string="Scopes Granted",
        help="The Microsoft Graph permissions granted by the tenant, space-separated.",
        copy=False,
    )
    access_token_expiry = fields.Datetime(string="Access Token Expiry", copy=False)
    last_refresh_date = fields.Datetime(string="Last Token Refresh", copy=False)
    last_error = fields.Text(string="Last Error", copy=False)
    last_error_date = fields.Datetime(string="Last Error Date", copy=False)
    last_graph_call_date = fields.Datetime(
        string="Last Successful Graph Call",
        copy=False,
    )
    has_refresh_token = fields.Boolean(
        string="Refresh Token Stored",
        help="Whether an encrypted refresh token is stored for this connection. The token itself is never shown.",
        compute='_compute_has_refresh_token',
    )
    email_address_ids = fields.One2many(
        string="Email Addresses",
        comodel_name='epilot.outlook.email.address',
        inverse_name='connection_id',
    )

    # Settings of the Entra app registration and of the endpoints (the demo points them at the sandbox).
    client_id = fields.Char(
        string="Application (Client) ID",
        help="The Application (client) ID of the Entra app registration.",
        copy=False,
        tracking=True,
    )
    client_secret = fields.Char(
        string="Client Secret",
        help="Write-only: stored encrypted, never shown again. Type a new one to replace it.",
        compute='_compute_client_secret',
        inverse='_inverse_client_secret',
        copy=False,
    )
    has_client_secret = fields.Boolean(string="Client Secret Stored", compute='_compute_has_client_secret')
    authority_host = fields.Char(
        string="Authority Host",
        required=True,
        default=const.DEFAULT_AUTHORITY_HOST,
        help="The Microsoft identity platform (login.microsoftonline.com, or a national cloud's). Another host "
             "only when a system administrator allowed it. Changing it discards the client secret.",
        tracking=True,
    )
    graph_endpoint = fields.Char(
        string="Graph Endpoint",
        required=True,
        default=const.GRAPH_BASE_URL,
        help="Microsoft Graph v1.0 (graph.microsoft.com, or a national cloud's). Another host only when a system "
             "administrator allowed it. Changing it discards the client secret.",
        tracking=True,
    )
    ca_bundle = fields.Char(
        string="CA Bundle",
        help="Path, on the Odoo server, of a PEM file of certificate authorities to trust instead of the "
             "system's (for a sandbox). Changing it discards the client secret.",
        tracking=True,
        # Whom Odoo trusts with the client secret and the tokens over TLS: as the allowed hosts (a system
        # parameter), for system administrators only. Email settings editors do not see it; the connection's
        # clients read it as superuser.
        groups='base.group_system',
    )
    service_account = fields.Char(
        string="Service Account",
        help="The address of the dedicated Microsoft 365 account Odoo signs in as (not a person's, not the admin's), "
             "with Full Access and Send As on the shared mailboxes. Microsoft's sign-in page is offered to it, and "
             "a sign-in by any other account is refused.",
        tracking=True,
    )
    connected_account = fields.Char(
        string="Connected Account",
        help="The account whose tokens Odoo holds, as Microsoft named it at sign-in.",
        compute='_compute_connected_account',
        # Decrypted for the email settings editors' form only: never exported, never in a list or a log.
        groups='epilot_outlook.group_email_setting_edit',
        exportable=False,
    )
    consent_tenant = fields.Char(
        string="Tenant Domain",
        help="Optional: your tenant's domain (contoso.onmicrosoft.com) or id, to send the Microsoft 365 admin "
             "straight to your tenant's consent page.",
    )
    redirect_uri = fields.Char(
        string="Redirect URI",
        help="Register this URI (type Web) on the Entra app registration.",
        compute='_compute_public_urls',
    )
    webhook_base_url = fields.Char(
        string="Webhook Base URL",
        help="Microsoft Graph sends change notifications here. It must be public and https.",
        compute='_compute_public_urls',
    )
    needs_admin_consent = fields.Boolean(
        string="Admin Consent Needed",
        help="Set when Microsoft reported missing or revoked admin consent: the next Connect starts with it.",
        copy=False,
    )
    encryption_key_status = fields.Char(string="Encryption Key", compute='_compute_encryption_key_status')
    has_secrets_to_reencrypt = fields.Boolean(
        string="Secrets to Re-encrypt",
        help="Some stored secret is encrypted with an older configured key: Re-encrypt Secrets moves it to the "
             "newest.",
        compute='_compute_has_secrets_to_reencrypt',
    )
    public_url_warning = fields.Char(
        string="Public Address Warning",
        compute='_compute_public_urls',
        help="Why Microsoft will refuse the Redirect URI or the Webhook Base URL, if it will.",
    )

    _company_uniq = models.Constraint(
        'UNIQUE (company_id)',
        "A company can have only one Outlook connection.",
    )

    # === COMPUTE METHODS === #

    def _compute_display_name(self):
        for connection in self:
            connection.display_name = self.env._("Outlook (%(company)s)", company=connection.company_id.name or "")

    def _compute_has_refresh_token(self):
        stored_ids = self._outlook_ids_with_secret('refresh_token')
        for connection in self:
            connection.has_refresh_token = connection.id in stored_ids

    def _compute_connected_account(self):
        for connection in self:
            connection.connected_account = connection._origin.id and connection._origin._outlook_connected_account()

    def _outlook_connected_account(self):
        """ ``Name <address>`` of the account that signed in, from the encrypted identity; ``False`` when none is
        stored or it cannot be decrypted (a key that is gone). """
        self.ensure_one()
        ciphertext = self.sudo()._outlook_load_secrets('identity')['identity']
        try:
            vault = self._outlook_vault()
        except UserError:
            return False
        if not ciphertext or not vault.can_decrypt(ciphertext):
            return False
        try:
            identity = json.loads(vault.decrypt(ciphertext))
        except (VaultError, ValueError):
            return False
        name, address = identity.get('name'), identity.get('upn')
        return '%s <%s>' % (name, address) if name and address else (address or name or False)

    def _compute_has_client_secret(self):
        stored_ids = self._outlook_ids_with_secret('client_secret')
        for connection in self:
            connection.has_client_secret = connection.id in stored_ids

    def _compute_client_secret(self):
        # Write-only: the secret is never read back, not even by those who may set it.
        self.client_secret = False

    def _inverse_client_secret(self):
        for connection in self:
            if connection.client_secret:
                connection._outlook_store_secrets({
                    'client_secret': connection._outlook_vault().encrypt(connection.client_secret.strip()),
                })
                # Tracked like the other settings of the app, without the value (never shown, never logged).
                connection._message_log(body=self.env._("Client secret changed (the value is never shown)."))

    @api.depends_context('uid')
    def _compute_public_urls(self):
        for connection in self:
            base_url = connection.get_base_url()
            connection.redirect_uri = base_url + const.OAUTH_CALLBACK_PATH
            connection.webhook_base_url = base_url + const.WEBHOOK_BASE_PATH
            connection.public_url_warning = connection._outlook_public_url_warning(base_url)

    def _outlook_public_url_warning(self, base_url):
        """ Why Microsoft will refuse addresses built on ``base_url``, or ``False``: Entra accepts a Redirect URI
        in http only on a loopback address, never 0.0.0.0 (a listening address, not one a browser opens), and
        Graph posts notifications to https only (loopback excepted for a local test). """
        parts = urlsplit(base_url or '')
        host = (parts.hostname or '').lower()
        if host in ('0.0.0.0', '::'):
            return self.env._(
                "Odoo's address (web.base.url) is %(url)s: 0.0.0.0 is where Odoo listens, not an address a browser "
                "or Microsoft can reach, and Microsoft refuses it. Open Odoo at its real address as an administrator "
                "(or set web.base.url), then register the Redirect URI shown here.", url=base_url)
        if parts.scheme != 'https' and host not in ('localhost', '127.0.0.1', '::1'):
            return self.env._(
                "Odoo's address (web.base.url) is %(url)s: Microsoft accepts a Redirect URI and a Webhook Base URL "
                "only in https (http only on localhost). Serve Odoo over https (with proxy mode behind a proxy) and "
                "open it at its https address.", url=base_url)
        return False

    def _compute_has_secrets_to_reencrypt(self):
        try:
            vault = self._outlook_vault()
        except UserError:
            vault = None
        for connection in self:
            ciphertexts = connection._origin.id and vault and connection._origin.sudo()._outlook_load_secrets()
            connection.has_secrets_to_reencrypt = bool(ciphertexts) and any(
                value and vault.can_decrypt(value) and not vault.is_current(value) for value in ciphertexts.values())

    def _compute_encryption_key_status(self):
        try:
            status = self.env._("Configured (newest key %(key_id)s)", key_id=self._outlook_vault().key_id)
        except UserError as error:
            status = str(error)
        self.encryption_key_status = status

    # === CONSTRAINT METHODS === #

    @api.constrains('authority_host', 'graph_endpoint')
    def _check_endpoints_https(self):
        for connection in self:
            for url in (connection.authority_host, connection.graph_endpoint):
                parts = urlsplit(url or '')
                if parts.scheme != 'https' or not parts.hostname:
                    raise ValidationError(self.env._(
                        "%(url)s is not an https:// address. Microsoft's endpoints, and MSAL, accept only https.",
                        url=url,
                    ))
            connection._outlook_check_endpoints(ValidationError)

    # === CRUD METHODS === #

    def write(self, vals):
        """ Override of `base` to unbind the secrets from endpoints they were not issued for.

        The client secret and the tokens are sent to the authority host and the Graph endpoint, over TLS
        checked against the CA bundle. Changing one of them on a connection that holds tokens (connected, or
        needing a reconnect) is refused until Disconnect: discarding the tokens of a live connection would
        stop every mailbox's sync as a side effect of editing a field. On any other connection the change
        discards the client secret (to be typed again, possibly in the same save) and the tenant id (recorded
        by the old authority's consent). Either way no secret ever travels to a host it was not typed for.
        """
        if changed_endpoints := [name for name in ENDPOINT_FIELDS if name in vals]:
            for connection in self:
                if any((connection[name] or False) != (vals[name] or False) for name in changed_endpoints):
                    connection._outlook_unbind_secrets()
        return super().write(vals)

    def export_data(self, fields_to_export):
        """ Override of `base`: the connected account is shown on the form only, never exported. """
        if any(path.split('/')[0] == 'connected_account' for path in fields_to_export):
            raise UserError(self.env._("The connected account is shown on the connection's form only."))
        return super().export_data(fields_to_export)

    def _outlook_unbind_secrets(self):
        """ Discard the secrets bound to the current endpoints, or refuse while tokens are held. """
        self.ensure_one()
        holds_tokens = self._outlook_ids_with_secret('refresh_token') or self._outlook_ids_with_secret('access_token')
        if holds_tokens or self.state in ('connected', 'needs_reconnect'):
            raise UserError(self.env._(
                "The authority host, Graph endpoint and CA bundle of %(connection)s cannot change while it holds "
                "Microsoft 365 tokens: they were issued there. Click Disconnect first, then change them.",
                connection=self.display_name,
            ))
        held = self._outlook_load_secrets('client_secret', 'tenant_id')
        if held['client_secret'] or held['tenant_id']:
            self._outlook_store_secrets({'client_secret': None, 'tenant_id': None})
            self._message_log(body=self.env._(
                "The endpoints changed: the client secret and the recorded tenant were discarded, as they were "
                "issued for the previous ones. Type the client secret again; Connect asks for admin consent."))
        if self.state == 'consent_granted':
            super(EpilotOutlookConnection, self).write({'state': 'not_connected'})

    # === BUSINESS METHODS - ENDPOINTS === #

    @api.model
    def _outlook_allowed_extra_hosts(self):
        """ The hosts beyond Microsoft's that a system administrator allowed (:data:`ALLOWED_HOSTS_PARAM`). """
        value = self.env['ir.config_parameter'].sudo().get_param(ALLOWED_HOSTS_PARAM) or ''
        return {host.lower() for host in re.split(r'[\s,]+', value) if host}

    @api.model
    def _outlook_host_allowed(self, url, microsoft_hosts):
        """ Whether ``url`` is https on one of ``microsoft_hosts`` (default port) or an allowed extra host. """
        parts = urlsplit(url or '')
        try:
            port = parts.port or 443
        except ValueError:
            return False
        host = (parts.hostname or '').lower()
        if parts.scheme != 'https' or not host or '@' in parts.netloc or '\\' in parts.netloc:
            return False
        if host in microsoft_hosts and port == 443:
            return True
        extra = self._outlook_allowed_extra_hosts()
        return host in extra or '%s:%s' % (host, port) in extra

    def _outlook_check_endpoints(self, error_class=UserError):
        """ Refuse an authority host or Graph endpoint that is neither Microsoft's nor allowed by a system
        administrator; checked when they are written and again before any secret is sent. """
        self.ensure_one()
        for url, hosts in ((self.authority_host, const.MICROSOFT_AUTHORITY_HOSTS),
                           (self.graph_endpoint, const.MICROSOFT_GRAPH_HOSTS)):
            if not self._outlook_host_allowed(url, hosts):
                raise error_class(self.env._(
                    "%(url)s is not one of Microsoft's sign-in or Graph addresses (%(hosts)s). A system "
                    "administrator can allow another host, such as a sandbox's, in the system parameter "
                    "%(parameter)s.",
                    url=url, hosts=', '.join(hosts), parameter=ALLOWED_HOSTS_PARAM,
                ))

    def _outlook_ca_bundle(self):
        """ The CA bundle the clients trust (``None``: the system's), whoever runs them: a system administrator
        set it, and editors and agents act through the connection without reading the field themselves. """
        self.ensure_one()
        return self.sudo().ca_bundle or None

    # === BUSINESS METHODS - SECRET STORAGE === #

    def _outlook_store_secrets(self, values):
        """ Override of `epilot_outlook` (secret mixin) to recompute the flags shown from the stored secrets. """
        super()._outlook_store_secrets(values)
        self.invalidate_recordset(['has_refresh_token'])

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

    def _outlook_graph_client(self, token_provider=None, **client_options):
        """ Return the Graph client of this connection; it asks for a fresh access token on every call.

        :param callable token_provider: Where the client gets its token (default: the stored, refreshed one).
        :param client_options: Passed to :class:`GraphClient` (``max_wait``: a cron waits for no
            ``Retry-After``, it reschedules; ``slots`` defaults to the slots every process on the database
            shares).
        """
        self.ensure_one()
        self._outlook_check_endpoints()
        from ..tools.graph_slots import OutlookGraphSlots
        # Outlook's 4 requests per mailbox hold across every worker and server on the database, not per process.
        client_options.setdefault('slots', OutlookGraphSlots(self.env.cr.dbname))
        client_options.setdefault('session', thread_session(self.graph_endpoint))
        # The configured endpoint was checked just above; nextLinks must stay on it.
        return GraphClient(
            self.graph_endpoint, token_provider or self._outlook_get_access_token, ca_bundle=self._outlook_ca_bundle(),
            allowed_hosts=(*const.DEFAULT_GRAPH_HOSTS, urlsplit(self.graph_endpoint).netloc), **client_options,
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

    def action_outlook_check_connection(self):
        """ Refresh the tokens now and make one Graph call, so an admin sees at once whether Microsoft still
        accepts the connection. A refusal moves the connection to "needs reconnect", as the cron would.

        :return: A notification saying the connection works.
        :rtype: dict
        :raise UserError: With Microsoft's refusal explained.
        """
        self.ensure_one()
        self.check_access('write')
        try:
            # Always Microsoft's answer of now: never a token another worker (or this one) refreshed before.
            self._outlook_refresh_tokens(force=True, ask_microsoft=True)
            self._outlook_call_graph(lambda graph: graph.get('me', params={'$select': 'id'}))
        except UserError as error:
            # Not raised: the refusal was recorded (state, last error) in a transaction of its own, and the form
            # must show it now, not the state it loaded before the click.
            return self._outlook_notify_and_reload('danger', explain(self.env, error), sticky=True)
        return self._outlook_notify_and_reload(
            'success', self.env._("Microsoft 365 accepted the connection: tokens refreshed, Graph answered."))

    @api.model
    def _outlook_notify_and_reload(self, kind, message, sticky=False):
        """ A notification, then a reload of the form, so it shows the state stored. """
        return {
            'type': 'ir.actions.client',
            'tag': 'display_notification',
            'params': {
                'type': kind,
                'message': message,
                'sticky': sticky,
                'next': {'type': 'ir.actions.client', 'tag': 'soft_reload'},
            },
        }

    def action_outlook_disconnect(self):
        """ Disconnect the tenant: delete our Graph subscriptions, remove the Outlook addresses and the
        tokens. Shared inboxes and their mail stay. What was removed is logged in the chatter. """
        self.ensure_one()
        self.check_access('write')
        # Graph's listing holds every subscription Odoo knows (and any it lost track of): deleted there, once.
        deleted, remote_note = self._outlook_delete_graph_subscriptions()
        addresses = self.email_address_ids
        address_names = addresses.mapped('email')
        # Removing an address ends its sync (and its subscriptions in Odoo); its shared inbox and mail are kept.
        addresses.with_context(outlook_subscriptions_deleted=True).unlink()
        self._outlook_store_secrets({'access_token': None, 'refresh_token': None, 'identity': None})
        _tokens_refreshed_here.pop((self.env.cr.dbname, self.id), None)  # Other workers see the tokens gone.
        self.write({
            'state': 'disconnected',
            'access_token_expiry': False,
            'scopes_granted': False,
        })
        self.message_post(body=self.env._(
            "Disconnected. Removed Outlook addresses: %(addresses)s. Deleted Graph subscriptions: %(count)s. "
            "%(note)s Shared inboxes and their mail are kept.",
            addresses=', '.join(address_names) or self.env._("none"), count=deleted, note=remote_note,
        ))
        return True

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

    # === BUSINESS METHODS - TOKENS === #

    def _outlook_get_access_token(self):
        """ Return a valid access token, refreshing it when it expires within 5 minutes.

        :rtype: str
        :raise UserError: When the connection is not connected (it needs an admin to connect it).
        """
        self.ensure_one()
        if self.sudo().state != 'connected':
            raise UserError(self.env._("The Outlook connection is not connected; an admin must connect it."))
        return self._outlook_current_access_token() or self.sudo()._outlook_refresh_tokens()

    def _outlook_current_access_token(self):
        """ The access token this worker would use now without refreshing, or ``None`` when it expires soon.

        A token this worker refreshed itself comes first: its transaction may predate that refresh.
        """
        key = (self.env.cr.dbname, self.id)
        token, expiry, mark = _tokens_refreshed_here.get(key, (None, None, None))
        if token and not self._outlook_expires_soon(expiry):
            if mark in (self._outlook_token_set_mark(), self._outlook_stored_token_set_mark()):
                return token
            _tokens_refreshed_here.pop(key, None)  # Retired: the stored token set is another one now.
        connection_sudo = self.sudo()
        if connection_sudo._outlook_token_expires_soon():
            return None
        return connection_sudo._outlook_decrypt_secrets('access_token')['access_token']

    def _outlook_token_set_mark(self):
        """ What identifies the stored token set in this transaction's snapshot: a digest of the refresh token's
        ciphertext, new at every store (Fernet's random IV), ``None`` when no token is stored. """
        ciphertext = self.sudo()._outlook_load_secrets('refresh_token')['refresh_token']
        return ciphertext and hashlib.sha256(ciphertext).hexdigest()

    def _outlook_stored_token_set_mark(self):
        """ :meth:`_outlook_token_set_mark` as committed now, read in a transaction of its own. """
        with self.env.registry.cursor() as cr:
            return self.with_env(self.env(cr=cr))._outlook_token_set_mark()

    def _outlook_token_expires_soon(self):
        return self._outlook_expires_soon(self.access_token_expiry)

    @api.model
    def _outlook_expires_soon(self, expiry):
        return not expiry or expiry - fields.Datetime.now() < timedelta(seconds=const.TOKEN_REFRESH_MARGIN_S)

    def _outlook_refresh_tokens(self, force=False, ask_microsoft=False):
        """ Refresh the tokens in a transaction of their own, once across workers.

        The rotated refresh token is committed before this returns, so it survives a rollback of the work
        that needed the token. Workers wanting a refresh at the same time queue on the row lock; those
        behind the first find a fresh token and return it without calling Microsoft again.

        :param bool force: Refresh even if the stored access token looks valid (Graph just refused it).
        :param bool ask_microsoft: Redeem the refresh token even if another worker just did (Check Connection:
            the answer must be Microsoft's of now).
        :return: The new access token.
        :rtype: str
        :raise UserError: When the connection needs a reconnect (revoked, consent withdrawn, ...), the
            identity platform kept failing, or another worker's refresh held the lock too long.
        """
        self.ensure_one()
        # With force, Graph refused the token this worker uses now: only a different one will do.
        refused_token = self._outlook_current_access_token() if force else None
        _tokens_refreshed_here.pop((self.env.cr.dbname, self.id), None)
        try:
            for attempt in range(REFRESH_SERIALIZATION_RETRIES + 1):
                try:
                    access_token, expiry, mark = self._outlook_refresh_tokens_once(
                        force, refused_token, ask_microsoft)
                    _tokens_refreshed_here[self.env.cr.dbname, self.id] = (access_token, expiry, mark)
                    return access_token
                except psycopg2.errors.SerializationFailure:
                    # Odoo's transactions are REPEATABLE READ: when the worker we queued behind commits its
                    # refresh, our lock fails. A new transaction sees its token, so look again.
                    if attempt == REFRESH_SERIALIZATION_RETRIES:
                        raise
                except psycopg2.errors.LockNotAvailable:
                    raise UserError(self.env._(
                        "Another Odoo worker has been refreshing the Outlook tokens for too long; try again."
                    )) from None
        finally:
            # The other transaction changed the connection and maybe its addresses (paused): forget what
            # this one cached of them.
            self.env.invalidate_all()

    def _outlook_refresh_tokens_once(self, force, refused_token, ask_microsoft=False):
        """ One locked transaction of :meth:`_outlook_refresh_tokens`; commits on success.

        :return: The access token, its expiry and the mark of the stored token set it belongs to.
        """
        with self.env.registry.cursor() as cr:
            connection = self.with_env(self.env(cr=cr)).sudo()
            cr.execute(SQL("SET LOCAL lock_timeout = %s", REFRESH_LOCK_TIMEOUT_MS))
            cr.execute(SQL(
                "SELECT id FROM %s WHERE id = %s FOR NO KEY UPDATE", SQL.identifier(self._table), self.id,
            ), log_exceptions=False)  # A serialization failure here is expected and handled by the caller.
            if connection.state != 'connected':
                raise UserError(self.env._("The Outlook connection needs to be reconnected."))
            stored_token = connection._outlook_decrypt_secrets('access_token')['access_token']
            # Another worker may have refreshed while we waited for the lock: its token is a new one.
            refreshed_meanwhile = force and stored_token != refused_token and not ask_microsoft
            if (refreshed_meanwhile or not force) and not connection._outlook_token_expires_soon():
                return stored_token, connection.access_token_expiry, connection._outlook_token_set_mark()
            try:
                tokens = connection._outlook_refresh_with_retries()
            except RECONNECT_ERRORS as error:
                connection._outlook_mark_needs_reconnect(error)
                cr.commit()
                raise UserError(explain(self.env, error)) from None
            except OutlookError as error:
                connection._outlook_record_error(error)
                cr.commit()
                raise UserError(explain(self.env, error)) from None
            connection._outlook_store_token_set(tokens)
            return tokens.access_token, connection.access_token_expiry, connection._outlook_token_set_mark()

    def _outlook_refresh_with_retries(self):
        """ Redeem the refresh token, retrying transient failures (5xx, timeouts, 429) with backoff. """
        secrets = self._outlook_decrypt_secrets('refresh_token', 'tenant_id')
        if not secrets['refresh_token']:
            raise GrantRevoked("No refresh token is stored.", reason='no_refresh_token')
        for attempt in range(REFRESH_TRANSIENT_RETRIES + 1):
            try:
                return self._outlook_oauth_client(secrets['tenant_id']).refresh(secrets['refresh_token'])
            except TransientError as error:
                if attempt == REFRESH_TRANSIENT_RETRIES:
                    raise
                retry_after = getattr(error, 'retry_after', None) if isinstance(error, Throttled) else None
                delay = min(retry_after or const.BACKOFF_BASE_S * 2 ** attempt, const.BACKOFF_MAX_S)
                _logger.info("Microsoft Outlook: connection %s: token refresh failed transiently (%s); retrying "
                             "in %.1f s", self.id, error.__class__.__name__, delay)
                time.sleep(delay)

    def _outlook_record_error(self, error):
        """ Record ``error`` as the last error, worded for the admin (never its technical message: no token
        can slip in). """
        self.write({
            'last_error': explain(self.env, error),
            'last_error_date': fields.Datetime.now(),
        })

    def _outlook_mark_needs_reconnect(self, error):
        """ Stop syncing until an admin reconnects; tell the email settings editors once. """
        self.ensure_one()
        first_time = self.state != 'needs_reconnect'
        self._outlook_record_error(error)
        self.write({
            'state': 'needs_reconnect',
            'needs_admin_consent': self.needs_admin_consent or isinstance(error, ConsentRequired),
        })
        self.email_address_ids._outlook_pause()
        _logger.warning("Microsoft Outlook: connection %s needs a reconnect (%s)", self.id, error.__class__.__name__)
        if first_time:
            # The button the form shows now: Grant Admin Consent when consent is needed, Connect otherwise.
            if self.needs_admin_consent:
                body = self.env._(
                    "Outlook sync is paused: the connection needs to be reconnected. %(explanation)s Open the "
                    "connection and click Grant Admin Consent; sync resumes where it stopped.",
                    explanation=explain(self.env, error))
            else:
                body = self.env._(
                    "Outlook sync is paused: the connection needs to be reconnected. %(explanation)s Open the "
                    "connection and click Connect; sync resumes where it stopped.",
                    explanation=explain(self.env, error))
            self._outlook_tell_editors(body)

    def _outlook_tell_editors(self, body):
        """ Post ``body`` in the connection's chatter, notifying the email settings editors of its company. """
        self.ensure_one()
        editors = self.env.ref('epilot_outlook.group_email_setting_edit').all_user_ids.filtered(
            lambda user: user.active and not user.share and self.company_id in user.company_ids)
        self.message_post(body=body, partner_ids=editors.partner_id.ids, subtype_xmlid='mail.mt_comment')

    # === BUSINESS METHODS - GRAPH === #

    def _outlook_call_graph(self, operation, **client_options):
        """ Run ``operation(graph_client)``; on 401 refresh once and retry, and on a second 401 (right after
        a fresh token) mark the connection as needing a reconnect.

        :param callable operation: Receives a :class:`GraphClient`; returns anything.
        :param client_options: For :meth:`_outlook_graph_client`.
        :return: What ``operation`` returned.
        """
        self.ensure_one()
        client = self._outlook_graph_client(**client_options)
        try:
            result = operation(client)
        except Unauthorized:
            self._outlook_refresh_tokens(force=True)
            try:
                result = operation(client)
            except Unauthorized as error:
                error.reason = 'token_refused_after_refresh'  # Not a stale token: reconnecting is needed.
                with self.env.registry.cursor() as cr:
                    self.with_env(self.env(cr=cr)).sudo()._outlook_mark_needs_reconnect(error)
                self.env.invalidate_all()
                raise UserError(explain(self.env, error)) from None
        finally:
            # Counted whatever the outcome: throttled calls are what the figures are for.
            self.env['epilot.outlook.graph.usage'].sudo()._outlook_record(self, client.usage)
        self._outlook_touch_graph_success()
        return result

    def _outlook_touch_graph_success(self):
        """ Note a successful Graph call, at most once a minute.

        In a transaction of its own that never waits: it is only a health timestamp, the row may be locked by
        a refresh, and the caller's snapshot may predate a refresh that changed the row (REPEATABLE READ).
        """
        last = self.last_graph_call_date
        if last and fields.Datetime.now() - last < timedelta(minutes=1):
            return
        try:
            with self.env.registry.cursor() as cr:
                cr.execute(SQL(
                    "UPDATE %(table)s SET last_graph_call_date = %(now)s WHERE id IN ("
                    " SELECT id FROM %(table)s WHERE id = %(id)s FOR NO KEY UPDATE SKIP LOCKED)",
                    table=SQL.identifier(self._table), now=fields.Datetime.now(), id=self.id,
                ), log_exceptions=False)
        except psycopg2.errors.SerializationFailure:
            return  # Another transaction just wrote the row; the next call notes it.
        self.invalidate_recordset(['last_graph_call_date'])

    def _outlook_delete_graph_subscriptions(self):
        """ Delete every Graph subscription this app holds for the service account, tolerating 401/404.

        Graph lists exactly the subscriptions created by this app for the signed-in user, so none is
        missed, even one Odoo lost track of.

        :return: The number deleted, and a note for the chatter when some could not be.
        :rtype: tuple
        """
        if self.state != 'connected':
            return 0, self.env._("Graph subscriptions could not be deleted (the connection was not connected); "
                                 "Microsoft removes them when they expire, within 7 days.")

        def delete_all(client):
            count = 0
            subscription_ids = [item['id'] for page in client.iter_pages('subscriptions') for item in page.items]
            for subscription_id in subscription_ids:
                try:
                    client.delete('subscriptions/%s' % subscription_id)
                    count += 1
                except NotFound:
                    pass  # Already gone: expired or removed by Microsoft.
            return count

        # The tokens are deleted right after this, so a refresh needed here is used but not stored: storing it
        # (in a transaction of its own) would change the row this request is about to write, which PostgreSQL
        # then refuses to the request's older snapshot.
        token = {'access': None}
        client = self._outlook_graph_client(token_provider=lambda: token['access'])
        try:
            token['access'] = self._outlook_current_access_token() or self._outlook_refresh_with_retries().access_token
            try:
                return delete_all(client), ''
            except Unauthorized:
                token['access'] = self._outlook_refresh_with_retries().access_token
                return delete_all(client), ''
        except (OutlookError, UserError) as error:
            return 0, self.env._(
                "Graph subscriptions could not be deleted (%(error)s); Microsoft removes them when they expire, "
                "within 7 days.", error=explain(self.env, error))

    # === CRON METHODS === #

    @api.model
    def _outlook_connections_due_for_refresh(self):
        """ Connected connections whose access token expires soon or whose last refresh is a day old.
        Connections that need a reconnect are left alone: retrying them cannot succeed. """
        day_ago = fields.Datetime.now() - timedelta(days=1)
        soon = fields.Datetime.now() + timedelta(seconds=2 * const.TOKEN_REFRESH_MARGIN_S)
        return self.sudo().search([
            ('state', '=', 'connected'),
            '|', '|', ('last_refresh_date', '=', False), ('last_refresh_date', '<', day_ago),
            ('access_token_expiry', '<', soon),
        ])

    @api.model
    def _cron_outlook_refresh_tokens(self):
        """ Keep refresh tokens alive: refresh connected connections whose access token expires soon or
        whose last refresh is a day old (a refresh token unused for 90 days dies). """
        connections = self._outlook_connections_due_for_refresh()
        for done, connection in enumerate(connections, start=1):
            try:
                connection._outlook_refresh_tokens(force=True)
            except UserError:
                pass  # Recorded on the connection (last error, or needs reconnect); the others go on.
            if not self.env['ir.cron']._commit_progress(1, remaining=len(connections) - done):
                break
