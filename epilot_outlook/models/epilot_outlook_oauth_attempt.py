import logging
from datetime import timedelta

from odoo import api, fields, models

from ..outlook_core.const import OAUTH_STATE_MAX_AGE_S

_logger = logging.getLogger(__name__)


class EpilotOutlookOauthAttempt(models.Model):
    """ One leg of the connect flow that is waiting for Microsoft to redirect back.

    It makes the signed OAuth ``state`` single-use: the callback consumes the attempt of the state's nonce
    under a row lock, and a second callback with the same state finds it consumed. For the sign-in leg it
    also keeps MSAL's auth-code flow (PKCE verifier, nonce) server-side, encrypted by the vault, because
    the flow must never travel through the browser.

    Nobody reads this model through the ORM as themselves: its only access rule grants nothing, and the
    connection uses it in sudo after checking the caller's own rights.
    """
    _name = 'epilot.outlook.oauth.attempt'
    _description = "Outlook OAuth Attempt"
    _order = 'id desc'

    nonce = fields.Char(required=True, readonly=True)
    connection_id = fields.Many2one(
        comodel_name='epilot.outlook.connection', required=True, ondelete='cascade', readonly=True,
    )
    user_id = fields.Many2one(comodel_name='res.users', required=True, ondelete='cascade', readonly=True)
    purpose = fields.Selection(
        selection=[('consent', "Admin consent"), ('sign_in', "Service account sign-in")],
        required=True,
        readonly=True,
    )
    flow_ciphertext = fields.Binary(attachment=False, readonly=True, help="MSAL's auth-code flow, encrypted.")
    expires_at = fields.Datetime(required=True, readonly=True)
    consumed = fields.Boolean(readonly=True)

    _nonce_uniq = models.UniqueIndex('(nonce)', "An OAuth state can only be issued once.")

    # === CRUD METHODS === #

    @api.model
    def _outlook_new(self, connection, purpose, nonce, flow_ciphertext=None):
        """ Record the attempt for a freshly issued state.

        :param connection: The `epilot.outlook.connection` being connected.
        :param str purpose: ``consent`` or ``sign_in``.
        :param str nonce: The nonce of the signed state.
        :param bytes flow_ciphertext: The encrypted MSAL flow, for the sign-in leg.
        :return: The attempt, in sudo.
        """
        return self.sudo().create({
            'nonce': nonce,
            'connection_id': connection.id,
            'user_id': self.env.uid,
            'purpose': purpose,
            'flow_ciphertext': flow_ciphertext,
            'expires_at': fields.Datetime.now() + timedelta(seconds=OAUTH_STATE_MAX_AGE_S),
        })

    @api.model
    def _outlook_consume(self, nonce):
        """ Consume the attempt of ``nonce`` and return it, or an empty recordset when there is none to use.

        The row lock makes two callbacks racing with the same state consume it once.

        :param str nonce: The nonce of a state whose signature was verified.
        :return: The attempt, in sudo, or an empty recordset if it is unknown, consumed or expired.
        """
        # A concurrent callback holding the lock is consuming it: this one loses.
        attempt_sudo = self.sudo().search([('nonce', '=', nonce)], limit=1).try_lock_for_update()
        if not attempt_sudo:
            return attempt_sudo
        attempt_sudo.invalidate_recordset(['consumed'])
        if attempt_sudo.consumed or attempt_sudo.expires_at < fields.Datetime.now():
            return self.sudo().browse()
        attempt_sudo.consumed = True
        return attempt_sudo

    @api.autovacuum
    def _gc_outlook_attempts(self):
        """ Forget attempts a day after they expired; the state is useless by then. """
        self.sudo().search([('expires_at', '<', fields.Datetime.now() - timedelta(days=1))]).unlink()
