import json
from urllib.parse import urlsplit

from odoo import api, fields, models
from odoo.exceptions import UserError, ValidationError

from ..outlook_core import const
from ..outlook_core.errors import OutlookError, VaultError
from ..tools.explain import explain

# Logical secret name -> ciphertext column on the connection table. These columns are deliberately NOT ORM
# fields: see the docstring of the secret mixin (`epilot.outlook.secret.mixin`).
OUTLOOK_SECRET_COLUMNS = {
    'refresh_token': 'outlook_refresh_token_ciphertext',
    'access_token': 'outlook_access_token_ciphertext',
    'tenant_id': 'outlook_tenant_id_ciphertext',
    'identity': 'outlook_identity_ciphertext',  # JSON blob: display name, UPN and object id of the consenting user.
    'client_secret': 'outlook_client_secret_ciphertext',  # The Entra app's secret; write-only in the UI.
}

# The secrets were issued by, and are sent to, these: changing one unbinds them (see ``write``).
ENDPOINT_FIELDS = ('authority_host', 'graph_endpoint', 'ca_bundle')


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

    # === BUSINESS METHODS - SECRET STORAGE === #

    def _outlook_store_secrets(self, values):
        """ Override of `epilot_outlook` (secret mixin) to recompute the flags shown from the stored secrets. """
        super()._outlook_store_secrets(values)
        self.invalidate_recordset(['has_refresh_token'])

    # === ACTION METHODS === #

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
        except (OutlookError, UserError) as error:
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

    # === BUSINESS METHODS - NOTICES === #

    def _outlook_tell_editors(self, body):
        """ Post ``body`` in the connection's chatter, notifying the email settings editors of its company. """
        self.ensure_one()
        editors = self.env.ref('epilot_outlook.group_email_setting_edit').all_user_ids.filtered(
            lambda user: user.active and not user.share and self.company_id in user.company_ids)
        self.message_post(body=body, partner_ids=editors.partner_id.ids, subtype_xmlid='mail.mt_comment')
