import logging
import os

from odoo import api, models
from odoo.exceptions import MissingError, UserError
from odoo.tools import SQL, config, sql

from ..outlook_core.errors import VaultError
from ..outlook_core.vault import Vault
from ..tools.explain import explain

_logger = logging.getLogger(__name__)

# Plaintexts this process decrypted, by ciphertext (:meth:`EpilotOutlookSecretMixin._outlook_decrypt_cached`).
_DECRYPTED = {}
_DECRYPTED_MAX = 4096


class EpilotOutlookSecretMixin(models.AbstractModel):
    """ Encrypted secrets stored in ``bytea`` columns of the inheriting model's table.

    A model holding secrets inherits this mixin and declares them in the class attribute
    :attr:`_outlook_secret_columns`, logical secret name -> ciphertext column of its own table::

        _inherit = ['epilot.outlook.secret.mixin']
        _outlook_secret_columns = {'client_state': 'outlook_client_state_ciphertext'}

    The columns are deliberately **not declared as fields**: :meth:`init` creates them. Everything the ORM
    exposes is derived from ``_fields``: ``read``, ``search_read``, ``web_read``, ``export_data``,
    ``fields_get``, domains, ``copy``, the views and ``ir.model.fields``. A column the ORM does not know about
    therefore cannot leak through any of them, for any user, administrators included, and cannot be copied by
    ``copy()``. The alternatives were weaker:

    - a field with ``groups='base.group_system'`` is still readable by every administrator, over RPC too;
    - overriding ``read``/``fields_get``/``export_data`` to hide a field misses the next path that reads
      ``_fields`` (``web_read``, ``_read_format``, domains, ``mail`` tracking, ...);
    - a separate ORM model for the secrets would either need access rules (and then be readable by
      someone) or have none (and log a warning on every install).

    The columns live on the inheriting model's table so that they are deleted with the row and dropped with
    the table on uninstall. The only way in or out is :meth:`_outlook_store_secrets` and
    :meth:`_outlook_load_secrets`, which move opaque bytes; encrypting them is the vault's job
    (:meth:`_outlook_encrypt_and_store`, :meth:`_outlook_decrypt_secrets`), not theirs. Each model reaches only
    the names it declared, in its own table: the secrets of two models never mix.
    """
    _name = 'epilot.outlook.secret.mixin'
    _description = "Outlook Secret Storage Mixin"

    # Logical secret name -> ciphertext column on the inheriting model's table; each model declares its own.
    _outlook_secret_columns = {}

    # === SCHEMA === #

    def init(self):
        """ Override of `base` to create the ciphertext columns, which are not ORM fields. """
        super().init()
        for column in self._outlook_secret_columns.values():
            if not sql.column_exists(self.env.cr, self._table, column):
                sql.create_column(
                    self.env.cr, self._table, column, 'bytea',
                    comment="Ciphertext; read and written only through _outlook_load/store_secrets",
                )

    # === BUSINESS METHODS - SECRET STORAGE === #

    def _outlook_ids_with_secret(self, name):
        """ Return the ids of the records in ``self`` that have secret ``name`` stored. """
        if not self.ids:
            return set()
        rows = self.env.execute_query(SQL(
            "SELECT id FROM %s WHERE id IN %s AND %s IS NOT NULL",
            SQL.identifier(self._table),
            tuple(self.ids),
            SQL.identifier(self._outlook_secret_columns[name]),
        ))
        return {row[0] for row in rows}

    @api.model
    def _outlook_check_secret_names(self, names):
        """ Check that every name is a secret of this model, so that only whitelisted columns reach the SQL.

        :param iterable names: The logical secret names, keys of :attr:`_outlook_secret_columns`.
        :return: None
        :raise ValueError: If a name is not a known secret.
        """
        if unknown := set(names) - set(self._outlook_secret_columns):
            raise ValueError(f"Unknown Outlook secrets: {', '.join(sorted(unknown))}")

    def _outlook_store_secrets(self, values):
        """ Write ciphertexts into the secret columns of this record.

        The bytes are stored as given: the caller (the vault) encrypts before and decrypts after. A name
        mapped to ``None`` clears that secret. Names left out are not touched.

        Note: `self.ensure_one()`. The caller needs write access to the record (or runs in sudo, after its
        own checks); take `lock_for_update()` first when the write must not race another worker.

        :param dict values: Logical secret name (a key of :attr:`_outlook_secret_columns`) to ciphertext
                            ``bytes``, or ``None``.
        :return: None
        :raise ValueError: If a name is not a known secret.
        :raise TypeError: If a value is neither ``bytes`` nor ``None`` (a ``str`` would be plaintext).
        :raise MissingError: If the record no longer exists.
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
            SQL("%s = %s", SQL.identifier(self._outlook_secret_columns[name]), value)
            for name, value in values.items()
        )
        rows = self.env.execute_query(SQL(
            "UPDATE %s SET %s WHERE id = %s RETURNING id",
            SQL.identifier(self._table), assignments, self.id,
        ))
        if not rows:
            raise MissingError(self.env._(
                "The %(model)s %(id)s no longer exists.", model=self._description, id=self.id))
        _logger.debug("%s %s: stored secrets %s", self._name, self.id, ', '.join(sorted(values)))

    def _outlook_load_secrets(self, *names):
        """ Read ciphertexts from the secret columns of this record.

        Note: `self.ensure_one()`. The caller needs read access to the record (or runs in sudo, after its
        own checks).

        :param str names: Logical secret names to read; all of them when none is given.
        :return: The ciphertext ``bytes`` of each requested secret, or ``None`` when it is not stored.
        :rtype: dict
        :raise ValueError: If a name is not a known secret.
        :raise MissingError: If the record no longer exists.
        """
        self.ensure_one()
        names = names or tuple(self._outlook_secret_columns)
        self._outlook_check_secret_names(names)
        self.check_access('read')

        rows = self.env.execute_query(SQL(
            "SELECT %s FROM %s WHERE id = %s",
            SQL(", ").join(SQL.identifier(self._outlook_secret_columns[name]) for name in names),
            SQL.identifier(self._table),
            self.id,
        ))
        if not rows:
            raise MissingError(self.env._(
                "The %(model)s %(id)s no longer exists.", model=self._description, id=self.id))
        # psycopg2 returns bytea as memoryview; callers get plain bytes.
        return {name: None if value is None else bytes(value) for name, value in zip(names, rows[0], strict=True)}

    # === BUSINESS METHODS - ENCRYPTION === #

    @api.model
    def _outlook_vault(self):
        """ Return the token vault, keyed from ``EPILOT_OUTLOOK_KEYS`` or the odoo.conf option
        ``epilot_outlook_keys``. Keys never enter the database.

        :rtype: outlook_core.vault.Vault
        :raise UserError: When no key, or a malformed key, is configured; the message says how to set one.
        """
        keys = os.environ.get('EPILOT_OUTLOOK_KEYS') or config.get('epilot_outlook_keys') or ''
        try:
            return Vault.from_config(keys)
        except VaultError as error:
            raise UserError(explain(self.env, error)) from None

    def _outlook_decrypt_secrets(self, *names):
        """ Decrypt the named secrets of this record.

        :return: Plaintext ``str``, or ``None`` when not stored, per name.
        :rtype: dict
        :raise UserError: When no key is configured, or a secret was encrypted with a key that is gone.
        """
        self.ensure_one()
        vault = self._outlook_vault()
        try:
            return {
                name: None if ciphertext is None else vault.decrypt(ciphertext).decode()
                for name, ciphertext in self._outlook_load_secrets(*names).items()
            }
        except VaultError as error:
            raise UserError(explain(self.env, error)) from None

    @api.model
    def _outlook_secret_column(self, name):
        """ The ciphertext column of the secret ``name``, for a query that reads many records' secrets at once
        (the webhook); decrypt what it reads with :meth:`_outlook_decrypt_cached`. """
        self._outlook_check_secret_names([name])
        return self._outlook_secret_columns[name]

    @api.model
    def _outlook_decrypt_cached(self, vault, ciphertext):
        """ The plaintext of ``ciphertext`` as read from a secret column, remembered by this process (bounded):
        one Fernet decryption per notification would cost more than the rest of a webhook request. A new
        ciphertext (a secret stored again) is a new key.

        :param vault: :meth:`_outlook_vault`.
        :return: The plaintext, or ``None`` for no ciphertext or one no configured key opens.
        :rtype: str or None
        """
        if ciphertext is None:
            return None
        ciphertext = bytes(ciphertext)
        plaintext = _DECRYPTED.get(ciphertext)
        if plaintext is None:
            try:
                plaintext = vault.decrypt(ciphertext).decode()
            except VaultError:
                return None
            if len(_DECRYPTED) >= _DECRYPTED_MAX:
                _DECRYPTED.clear()
            _DECRYPTED[ciphertext] = plaintext
        return plaintext

    def _outlook_encrypt_and_store(self, values):
        """ Encrypt plaintext secrets (``str``, or ``None`` to clear) and store them. """
        vault = self._outlook_vault()
        self._outlook_store_secrets({
            name: None if value is None else vault.encrypt(value) for name, value in values.items()
        })

    # === ACTION METHODS === #

    def action_outlook_reencrypt_secrets(self):
        """ Re-encrypt every stored secret of these records with the newest configured key. """
        self.check_access('write')
        vault = self._outlook_vault()
        for record in self:
            ciphertexts = {name: value for name, value in record._outlook_load_secrets().items() if value}
            try:
                rotated = {name: vault.rotate(value) for name, value in ciphertexts.items()}
            except VaultError as error:
                raise UserError(explain(self.env, error)) from None
            record._outlook_store_secrets(rotated)
        return True
