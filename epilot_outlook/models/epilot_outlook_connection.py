import logging

from odoo import api, fields, models
from odoo.exceptions import MissingError
from odoo.tools import SQL, sql

_logger = logging.getLogger(__name__)

# Logical secret name -> ciphertext column on the connection table. These columns are deliberately NOT ORM
# fields: see the docstring of `EpilotOutlookConnection`.
OUTLOOK_SECRET_COLUMNS = {
    'refresh_token': 'outlook_refresh_token_ciphertext',
    'access_token': 'outlook_access_token_ciphertext',
    'tenant_id': 'outlook_tenant_id_ciphertext',
    'identity': 'outlook_identity_ciphertext',  # JSON blob: display name, UPN and object id of the consenting user.
}


class EpilotOutlookConnection(models.Model):
    """ The link between one company and its Microsoft 365 tenant.

    Only the non-secret facts of the connection are ORM fields: its state, the scopes granted, the token
    expiry and the dates of the last refresh, error and successful Graph call.

    The refresh token, the access token, the tenant id and the connecting identity are stored encrypted, in
    ``bytea`` columns of this model's table that are **not declared as fields** (:data:`OUTLOOK_SECRET_COLUMNS`,
    created by :meth:`init`). Everything the ORM exposes is derived from ``_fields``: ``read``,
    ``search_read``, ``web_read``, ``export_data``, ``fields_get``, domains, ``copy``, the views and
    ``ir.model.fields``. A column the ORM does not know about therefore cannot leak through any of them, for
    any user, administrators included, and cannot be copied by ``copy()``. The alternatives were weaker:

    - a field with ``groups='base.group_system'`` is still readable by every administrator, over RPC too;
    - overriding ``read``/``fields_get``/``export_data`` to hide a field misses the next path that reads
      ``_fields`` (``web_read``, ``_read_format``, domains, ``mail`` tracking, ...);
    - a separate ORM model for the secrets would either need access rules (and then be readable by
      someone) or have none (and log a warning on every install).

    The columns live on this table so that they are deleted with the row and dropped with the table on
    uninstall. The only way in or out is :meth:`_outlook_store_secrets` and :meth:`_outlook_load_secrets`,
    which move opaque bytes; encrypting them is the vault's job, not this model's.
    """
    _name = 'epilot.outlook.connection'
    _description = "Outlook Connection"
    _inherit = ['mail.thread']
    _order = 'company_id, id'

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

    _company_uniq = models.Constraint(
        'UNIQUE (company_id)',
        "A company can have only one Outlook connection.",
    )

    # === SCHEMA === #

    def init(self):
        """ Override of `base` to create the ciphertext columns, which are not ORM fields. """
        super().init()
        for column in OUTLOOK_SECRET_COLUMNS.values():
            if not sql.column_exists(self.env.cr, self._table, column):
                sql.create_column(
                    self.env.cr, self._table, column, 'bytea',
                    comment="Ciphertext; read and written only through _outlook_load/store_secrets",
                )

    # === COMPUTE METHODS === #

    def _compute_display_name(self):
        for connection in self:
            connection.display_name = self.env._("Outlook (%(company)s)", company=connection.company_id.name or "")

    def _compute_has_refresh_token(self):
        stored_ids = set()
        if self.ids:
            rows = self.env.execute_query(SQL(
                "SELECT id FROM %s WHERE id IN %s AND %s IS NOT NULL",
                SQL.identifier(self._table),
                tuple(self.ids),
                SQL.identifier(OUTLOOK_SECRET_COLUMNS['refresh_token']),
            ))
            stored_ids = {row[0] for row in rows}
        for connection in self:
            connection.has_refresh_token = connection.id in stored_ids

    # === BUSINESS METHODS - SECRET STORAGE === #

    @api.model
    def _outlook_check_secret_names(self, names):
        """ Check that every name is a known secret, so that only whitelisted columns reach the SQL.

        :param iterable names: The logical secret names, keys of :data:`OUTLOOK_SECRET_COLUMNS`.
        :return: None
        :raise ValueError: If a name is not a known secret.
        """
        if unknown := set(names) - set(OUTLOOK_SECRET_COLUMNS):
            raise ValueError(f"Unknown Outlook secrets: {', '.join(sorted(unknown))}")

    def _outlook_store_secrets(self, values):
        """ Write ciphertexts into the secret columns of this connection.

        The bytes are stored as given: the caller (the vault) encrypts before and decrypts after. A name
        mapped to ``None`` clears that secret. Names left out are not touched.

        Note: `self.ensure_one()`. The caller needs write access to the connection (or runs in sudo, after
        its own checks); take `lock_for_update()` first when the write must not race another worker.

        :param dict values: Logical secret name (``refresh_token``, ``access_token``, ``tenant_id``,
                            ``identity``) to ciphertext ``bytes``, or ``None``.
        :return: None
        :raise ValueError: If a name is not a known secret.
        :raise TypeError: If a value is neither ``bytes`` nor ``None`` (a ``str`` would be plaintext).
        :raise MissingError: If the connection no longer exists.
        """
        self.ensure_one()
        if not values:
            return
        self._outlook_check_secret_names(values)
        for name, value in values.items():
            if value is not None and not isinstance(value, bytes):
                raise TypeError(f"Outlook secret {name!r} must be bytes or None, not {type(value).__name__}")
        self.check_access('write')

        assignments = SQL(", ").join(
            SQL("%s = %s", SQL.identifier(OUTLOOK_SECRET_COLUMNS[name]), value)
            for name, value in values.items()
        )
        rows = self.env.execute_query(SQL(
            "UPDATE %s SET %s WHERE id = %s RETURNING id",
            SQL.identifier(self._table), assignments, self.id,
        ))
        if not rows:
            raise MissingError(self.env._("The Outlook connection %(id)s no longer exists.", id=self.id))
        self.invalidate_recordset(['has_refresh_token'])
        _logger.debug("Outlook connection %s: stored secrets %s", self.id, ', '.join(sorted(values)))

    def _outlook_load_secrets(self, *names):
        """ Read ciphertexts from the secret columns of this connection.

        Note: `self.ensure_one()`. The caller needs read access to the connection (or runs in sudo, after its
        own checks).

        :param str names: Logical secret names to read; all of them when none is given.
        :return: The ciphertext ``bytes`` of each requested secret, or ``None`` when it is not stored.
        :rtype: dict
        :raise ValueError: If a name is not a known secret.
        :raise MissingError: If the connection no longer exists.
        """
        self.ensure_one()
        names = names or tuple(OUTLOOK_SECRET_COLUMNS)
        self._outlook_check_secret_names(names)
        self.check_access('read')

        rows = self.env.execute_query(SQL(
            "SELECT %s FROM %s WHERE id = %s",
            SQL(", ").join(SQL.identifier(OUTLOOK_SECRET_COLUMNS[name]) for name in names),
            SQL.identifier(self._table),
            self.id,
        ))
        if not rows:
            raise MissingError(self.env._("The Outlook connection %(id)s no longer exists.", id=self.id))
        # psycopg2 returns bytea as memoryview; callers get plain bytes.
        return {name: None if value is None else bytes(value) for name, value in zip(names, rows[0], strict=True)}
