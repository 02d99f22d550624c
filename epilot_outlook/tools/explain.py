""" The words a user reads for the plain layer's errors, in Odoo's translation.

The plain layer (``outlook_core``) raises errors with codes and parameters; this module words them. It is the
one place that does: models, controllers, the OAuth error page, chatter posts and ``last_error`` all show
:func:`explain` of an error, never ``str(error)``, which stays technical and goes to the logs.

An error is worded by the most precise thing it carries, in this order:

1. its ``reason``: a situation named by whoever raised it, more precise than any code (``missing_scopes``);
2. its AADSTS codes (:class:`TokenError`), the first one worded here;
3. the ``code`` of Graph's error envelope (:class:`GraphError`);
4. its class, or the nearest base class worded here;
5. a generic text.

The texts are lazy (``_lt``): they are translated in the language of the ``env`` given to :func:`explain`,
then the error's ``params`` are interpolated (``%(name)s``). A test checks that every code the plain layer
knows, every error class and every ``reason`` raised in the addon has its wording here.
"""
import logging

from odoo.exceptions import UserError
from odoo.tools.translate import LazyTranslate

from ..outlook_core import errors

_logger = logging.getLogger(__name__)
_lt = LazyTranslate(__name__)


# === WORDING BY REASON === #

# Situations the raiser names because neither the class nor a code tells them apart.
REASON_WORDING = {
    'send_pending': _lt(
        "Microsoft 365 accepted this e-mail a moment ago and is still sending it. Odoo checks again in "
        "%(seconds)s seconds and sends it only if Microsoft did not."
    ),
    'identity_throttled': _lt(
        "Microsoft sign-in is limiting requests from Odoo for a moment. Odoo retries automatically; no action is "
        "needed."
    ),
    'no_refresh_token': _lt("No refresh token is stored for this connection. Connect it again."),
    'not_connected': _lt("The Outlook connection is not connected; an admin must connect it."),
    'needs_reconnect': _lt("The Outlook connection needs to be reconnected."),
    'refresh_busy': _lt("Another Odoo worker has been refreshing the Outlook tokens for too long; try again."),
    'token_refused_after_refresh': _lt(
        "Microsoft refused an access token it had just issued: the service account was disabled or lost its "
        "licence, or the tenant revoked the app's access. Check the account in the Microsoft 365 admin center, "
        "then click Connect."
    ),
    # Unlike a refresh, nothing retries a sign-in: say so, not TransientError's "Odoo will retry".
    'sign_in_unanswered': _lt(
        "Microsoft 365 did not answer while Odoo finished the sign-in (it may be busy or unreachable); nothing "
        "was stored. Connect again in a few minutes."
    ),
    'tenant_mismatch': _lt(
        "The account that signed in belongs to another Microsoft 365 tenant than the one that granted consent. "
        "Sign in with the service account of your own tenant."
    ),
    'wrong_account': _lt(
        "Another account than the connection's service account signed in, so Odoo stored nothing. Only the "
        "service account %(expected)s may sign in (not the Microsoft 365 admin, nor a person): click Connect "
        "again and sign in as %(expected)s, signing out of any other account on Microsoft's page."
    ),
    'no_service_account': _lt(
        "The connection has no Service Account, so Odoo cannot tell whether the right account signed in; nothing "
        "was stored. Enter the service account's address on the connection, then click Connect."
    ),
    'missing_scopes': _lt(
        "Microsoft granted only part of the permissions the connection needs (missing: %(scopes)s). Ask your "
        "Microsoft 365 admin to grant admin consent again, then connect."
    ),
    'state_used': _lt("This sign-in link was already used, or has expired. Start again with the Connect button."),
}


# === WORDING BY AADSTS CODE === #

# Every key of ``errors.AADSTS_CLASSES``; the wording names the code, which admins quote to Microsoft.
AADSTS_WORDING = {
    65001: _lt(
        "Admin consent for the Odoo app is missing or was revoked (AADSTS65001). Ask a Microsoft 365 global or "
        "application admin to click 'Grant admin consent' in Odoo, then reconnect."
    ),
    65004: _lt(
        "The consent screen was declined (AADSTS65004). Ask a Microsoft 365 admin to grant admin consent again and "
        "accept all requested permissions."
    ),
    90094: _lt(
        "An administrator must consent to the Odoo app (AADSTS90094). Ask a Microsoft 365 global or application "
        "admin to click 'Grant admin consent' in Odoo."
    ),
    90095: _lt(
        "An administrator must consent to the Odoo app (AADSTS90095). Ask a Microsoft 365 global or application "
        "admin to click 'Grant admin consent' in Odoo."
    ),
    50076: _lt(
        "Multi-factor authentication is now required for the service account (AADSTS50076). Reconnect and complete "
        "MFA, or ask your Microsoft 365 admin to adjust the MFA policy for this account."
    ),
    50079: _lt(
        "The service account must register for multi-factor authentication (AADSTS50079). Sign in once as the "
        "service account at https://aka.ms/mfasetup, then reconnect."
    ),
    53003: _lt(
        "Conditional Access blocked the service account's sign-in (AADSTS53003). Ask your Microsoft 365 admin to "
        "exclude the service account from the blocking policy or allow sign-ins from the Odoo server's location, "
        "then reconnect."
    ),
    50173: _lt(
        "Microsoft ended Odoo's sign-in for the service account: its password was reset or changed, or its "
        "sessions were revoked (AADSTS50173). Reconnect the Microsoft 365 connection and sign in as the service "
        "account, with its new password if it changed."
    ),
    70008: _lt(
        "Odoo's sign-in for the service account expired or was revoked (AADSTS70008). Reconnect the Microsoft 365 "
        "connection."
    ),
    700082: _lt(
        "Odoo's sign-in expired because it was not used for 90 days (AADSTS700082). Reconnect the Microsoft 365 "
        "connection."
    ),
    50057: _lt(
        "The service account is disabled in Microsoft Entra ID (AADSTS50057). Ask your Microsoft 365 admin to "
        "enable it, then reconnect."
    ),
    70043: _lt(
        "A Conditional Access sign-in frequency policy requires a fresh sign-in (AADSTS70043). Reconnect, or ask "
        "your admin to exclude the service account from the sign-in frequency policy."
    ),
    7000215: _lt(
        "The client secret in the Odoo settings is wrong (AADSTS7000215). Copy the secret's Value (not its ID) "
        "from the Microsoft Entra admin center into the settings."
    ),
    7000222: _lt(
        "The client secret has expired (AADSTS7000222). Create a new client secret in the Microsoft Entra admin "
        "center and paste it in the Odoo settings."
    ),
    7000218: _lt("No client secret was sent (AADSTS7000218). Enter the client secret in the Odoo settings."),
    700016: _lt(
        "The application (client) ID is not known in this tenant (AADSTS700016). Check the client ID in the Odoo "
        "settings, and that the app registration is multi-tenant or lives in this tenant."
    ),
    90002: _lt("The tenant does not exist (AADSTS90002). Check the tenant ID or domain in the Odoo settings."),
    54005: _lt("The sign-in code was already used (AADSTS54005). Start the connection again from Odoo."),
    9002313: _lt(
        "Microsoft did not accept Odoo's sign-in code or refresh token (AADSTS9002313): it was issued to another "
        "tenant or app, or is malformed. Connect again, and sign in with the service account of the tenant that "
        "granted consent."
    ),
    501481: _lt(
        "The sign-in could not be verified (AADSTS501481, PKCE mismatch). Start the connection again from Odoo."
    ),
    50011: _lt(
        "The redirect URI does not match the app registration (AADSTS50011). Add Odoo's callback URL, exactly as "
        "shown in the settings, to the app registration's Web redirect URIs."
    ),
}


# === WORDING BY GRAPH CODE === #

# Every code of ``errors.GRAPH_CODES``.
GRAPH_CODE_WORDING = {
    'MailboxNotEnabledForRESTAPI': _lt(
        "This mailbox cannot be reached through Microsoft Graph: it is inactive, soft-deleted, or hosted "
        "on-premises. Check the mailbox in the Exchange admin center."
    ),
    'ErrorInvalidUser': _lt(
        "Microsoft 365 does not know this mailbox address. Check the spelling of the shared mailbox address."
    ),
    'ExtensionError': _lt(
        "Microsoft 365 refused the change-notification subscription. Odoo falls back to polling this mailbox; no "
        "action is needed."
    ),
}


# === WORDING BY CLASS === #

# Every error class of the plain layer, or a base class of it; ``OutlookError``'s is the generic text.
CLASS_WORDING = {
    errors.OutlookError: _lt(
        "Microsoft 365 returned an unexpected error. Try again later; if it persists, check the logs."
    ),
    errors.GraphError: _lt("Microsoft Graph refused the request. Check the logs for the error code and request id."),
    errors.Unauthorized: _lt(
        "Microsoft rejected the service account's access token. Odoo will refresh it automatically; if this keeps "
        "happening, reconnect the Microsoft 365 connection."
    ),
    errors.Forbidden: _lt(
        "The service account is not allowed to open this mailbox. Ask your Microsoft 365 admin to give the service "
        "account Full Access on the shared mailbox, and check that admin consent was granted for the "
        "Mail.Read.Shared and Mail.ReadWrite.Shared permissions."
    ),
    errors.SendAsDenied: _lt(
        "The service account may not send as this shared mailbox. Ask your Microsoft 365 admin to grant the "
        "service account 'Send As' (or 'Send on Behalf') on the shared mailbox, then send again."
    ),
    errors.NotFound: _lt(
        "Microsoft 365 could not find the mailbox or item. Check the address of the shared mailbox; an item may "
        "also have been moved or deleted in Outlook."
    ),
    errors.SyncReset: _lt(
        "Microsoft 365 asked for a full resynchronisation of this folder. Odoo starts one automatically; no action "
        "is needed."
    ),
    errors.TransientError: _lt(
        "Microsoft 365 is temporarily unavailable or could not be reached. Odoo will retry automatically; no "
        "action is needed unless this lasts for hours."
    ),
    errors.Throttled: _lt(
        "Microsoft 365 is limiting the number of requests for this mailbox. Odoo waits and retries automatically; "
        "no action is needed."
    ),
    errors.SendPending: _lt(
        "Microsoft 365 accepted this e-mail a moment ago and is still sending it. Odoo checks again before "
        "sending it a second time."
    ),
    errors.MailboxBusy: _lt(
        "Odoo already runs the most requests Microsoft 365 allows at once for this mailbox. Odoo retries "
        "automatically; no action is needed."
    ),
    errors.ConnectionUnusable: _lt(
        "The Outlook connection cannot reach Microsoft 365 now; open it to see why (it may need a reconnect)."
    ),
    errors.HostNotAllowed: _lt(
        "Odoo refused to call %(host)s: it is not a Microsoft Graph address. If you use a test environment, add "
        "its host to the allowed Graph hosts in the settings."
    ),
    errors.TokenError: _lt(
        "Microsoft sign-in failed. Reconnect the Microsoft 365 connection; if it fails again, check the logs for "
        "the AADSTS code."
    ),
    errors.ConsentRequired: _lt(
        "Admin consent for the Odoo app is missing or was revoked in Microsoft Entra ID. Ask a Microsoft 365 "
        "global or application admin to click 'Grant admin consent' in Odoo and accept the permissions, then "
        "reconnect."
    ),
    errors.InteractionRequired: _lt(
        "Microsoft requires the service account to sign in again interactively. Reconnect the Microsoft 365 "
        "connection and complete the sign-in."
    ),
    errors.GrantRevoked: _lt(
        "Microsoft revoked Odoo's access for the service account (its sessions were revoked, its password reset, "
        "or the account disabled or unused for 90 days). Reconnect the Microsoft 365 connection with the service "
        "account."
    ),
    errors.ClientCredentialError: _lt(
        "Microsoft rejected the app's client ID or secret. Check the Application (client) ID and create a new "
        "client secret in the Microsoft Entra admin center, then paste it in the Odoo settings."
    ),
    errors.TenantNotFound: _lt(
        "Microsoft does not know this tenant. Check the tenant ID or domain (for example contoso.onmicrosoft.com) "
        "in the Odoo settings."
    ),
    errors.SignInFailed: _lt(
        "The Microsoft sign-in could not be completed. Start the connection again from Odoo; do not reuse or "
        "refresh the sign-in page."
    ),
    errors.StateError: _lt("The sign-in link is not valid. Start the connection again from Odoo."),
    errors.StateExpired: _lt("The sign-in link has expired. Start the connection again from Odoo."),
    errors.StateMismatch: _lt(
        "The sign-in was started by another user, company or connection. Start the connection again from the "
        "connection you want to set up, as the same user."
    ),
    errors.MissingKeyError: _lt(
        "No encryption key is configured for Microsoft 365 tokens. Set `epilot_outlook_keys` in odoo.conf (or the "
        "EPILOT_OUTLOOK_KEYS environment variable) and restart Odoo. Generate a key with: python3 -c \"from "
        "cryptography.fernet import Fernet; print(Fernet.generate_key().decode())\""
    ),
    errors.VaultError: _lt(
        "Microsoft 365 tokens could not be encrypted or decrypted. Check the keys in `epilot_outlook_keys` / "
        "EPILOT_OUTLOOK_KEYS."
    ),
    errors.InvalidKeyError: _lt(
        "Microsoft 365 token encryption key #%(position)s of %(count)s in `epilot_outlook_keys` / "
        "EPILOT_OUTLOOK_KEYS is malformed. Each key must be 44 characters of URL-safe base64 as printed by "
        "Fernet.generate_key(); keys are separated by commas."
    ),
    errors.UndecryptableError: _lt(
        "Stored Microsoft 365 tokens were encrypted with a key that is no longer configured. Put the old key back "
        "in `epilot_outlook_keys` (after the new one), or reconnect the connection."
    ),
}


# === EXPLAIN === #

def explain(env, error):
    """ Return what ``error`` means for the user, and what to do next, in the language of ``env``.

    :param env: The environment whose language is used (``request.env``, ``self.env``).
    :param Exception error: A plain-layer :class:`OutlookError`; a ``UserError`` (already worded by Odoo)
        gives its own message, anything else the generic text.
    :return: The translated wording, with the error's ``params`` interpolated.
    :rtype: str
    """
    if isinstance(error, UserError):
        return error.args[0] if error.args else str(error)
    if not isinstance(error, errors.OutlookError):
        return env._(CLASS_WORDING[errors.OutlookError])
    if isinstance(error, errors.ConnectionUnusable) and error.cause is not None:
        return explain(env, error.cause)
    for wording in _wordings(error):
        if (text := _interpolate(env, wording, error.params)) is not None:
            return text
    return env._(CLASS_WORDING[errors.OutlookError])


def _wordings(error):
    """ The wordings that fit ``error``, most precise first (see the module's docstring). """
    if error.reason in REASON_WORDING:
        yield REASON_WORDING[error.reason]
    for code in getattr(error, 'aadsts', ()):
        if code in AADSTS_WORDING:
            yield AADSTS_WORDING[code]
            break
    if getattr(error, 'code', None) in GRAPH_CODE_WORDING:
        yield GRAPH_CODE_WORDING[error.code]
    for cls in type(error).__mro__:
        if cls in CLASS_WORDING:
            yield CLASS_WORDING[cls]


def _interpolate(env, wording, params):
    """ The translated ``wording`` with ``params`` interpolated, or ``None`` when the error lacks a parameter
    the wording needs (the caller then tries the next wording). A translation whose placeholders are broken
    falls back to the English text. """
    try:
        return env._(wording) % params
    except (KeyError, TypeError, ValueError):
        pass
    try:
        text = env(context=dict(env.context, lang='en_US'))._(wording) % params
    except (KeyError, TypeError, ValueError):
        return None
    _logger.warning("Microsoft Outlook: the %s translation of %r does not fit its parameters", env.lang, text)
    return text


# === BOUNCES === #

# Why Microsoft 365 reported an e-mail as not delivered (outlook_core.bounces.REASONS), for the chatter.
BOUNCE_WORDING = {
    'recipient_unknown': _lt("The recipient's mail server does not know this address."),
    'domain_unknown': _lt("The recipient's domain does not exist or does not receive e-mail."),
    'mailbox_full': _lt("The recipient's mailbox is full."),
    'mailbox_disabled': _lt("The recipient's mailbox is disabled and does not accept e-mail."),
    'too_large': _lt("The e-mail is larger than the recipient's mail server accepts."),
    'rejected': _lt("The recipient's mail server refused the e-mail (a policy or spam filter)."),
    'expired': _lt("The recipient's mail server could not be reached in time; Microsoft 365 gave up."),
    'other': _lt("Microsoft 365 could not deliver the e-mail."),
}


def explain_bounce(env, reason, status=None):
    """ Why an e-mail was not delivered, in the language of ``env``.

    :param str reason: An ``outlook_core.bounces.REASONS`` code.
    :param str status: The enhanced status code the report gave (``5.1.1``), added for whoever checks further.
    :rtype: str
    """
    text = env._(BOUNCE_WORDING.get(reason) or BOUNCE_WORDING['other'])
    return env._("%(reason)s (status %(status)s)", reason=text, status=status) if status else text
