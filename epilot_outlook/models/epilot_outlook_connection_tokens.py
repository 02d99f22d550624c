import hashlib
import logging
import time
from datetime import timedelta

import psycopg2.errors

from odoo import api, fields, models
from odoo.tools import SQL

from ..outlook_core import const
from ..outlook_core.errors import (
    ClientCredentialError, ConnectionUnusable, ConsentRequired, GrantRevoked, InteractionRequired, OutlookError,
    TenantNotFound, Throttled, TransientError,
)
from ..tools.explain import explain

_logger = logging.getLogger(__name__)

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
# Transient identity-platform failures are retried this often, with exponential backoff, before giving up.
REFRESH_TRANSIENT_RETRIES = 3



class EpilotOutlookConnection(models.Model):
    """ The tokens: the access token every Graph call asks for, the refresh (once across workers, in
    transactions of its own), the connection that needs a reconnect, and the cron that keeps refresh tokens
    alive. """
    _inherit = 'epilot.outlook.connection'

    # === BUSINESS METHODS - TOKENS === #

    def _outlook_get_access_token(self):
        """ Return a valid access token, refreshing it when it expires within 5 minutes.

        :rtype: str
        :raise ConnectionUnusable: When the connection is not connected (it needs an admin to connect it).
        """
        self.ensure_one()
        if self.sudo().state != 'connected':
            raise ConnectionUnusable("Not connected", reason='not_connected')
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
        :raise ConnectionUnusable: When the connection needs a reconnect (revoked, consent withdrawn, ...),
            the identity platform kept failing, or another worker's refresh held the lock too long.
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
                    raise ConnectionUnusable("Token refresh lock timeout", reason='refresh_busy') from None
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
                raise ConnectionUnusable("Needs a reconnect", reason='needs_reconnect')
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
                raise ConnectionUnusable(str(error), cause=error) from None
            except OutlookError as error:
                connection._outlook_record_error(error)
                cr.commit()
                raise ConnectionUnusable(str(error), cause=error) from None
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
            except ConnectionUnusable:
                pass  # Recorded on the connection (last error, or needs reconnect); the others go on.
            if not self.env['ir.cron']._commit_progress(1, remaining=len(connections) - done):
                break
