"""The exceptions of the plain layer, and the two functions that turn Microsoft's errors into them.

Every exception derives from :class:`OutlookError` and carries two texts:

* ``str(exc)`` / ``exc.message``: a short technical message, safe to log and show (never a token, a secret or
  a key; Graph's and AAD's own messages are kept because they contain none);
* ``exc.explanation``: what happened and what to do next, in plain words for the Odoo administrator. Odoo
  translates and shows it.

Identity errors are chosen by AADSTS code first, then by ``suberror``, then by the OAuth ``error`` (contract
§1.6). Graph errors are chosen by the envelope's ``code`` first, then by HTTP status, never by ``message``
(contract §6).
"""
import base64
import re


# === BASE === #

class OutlookError(Exception):
    """Base class of every error raised by the plain layer.

    :param str message: Technical message, safe to log and display (no tokens, no secrets).
    :param str explanation: Admin-facing explanation overriding the class default.
    """

    explanation = "Microsoft 365 returned an unexpected error. Try again later; if it persists, check the logs."

    def __init__(self, message='', *, explanation=None):
        super().__init__(message)
        self.message = message
        if explanation is not None:
            self.explanation = explanation


# === GRAPH === #

class GraphError(OutlookError):
    """An error answer from Microsoft Graph (contract §6).

    :param int status: HTTP status, or ``None`` when no response was received.
    :param str code: The envelope's ``error.code`` (may be empty).
    :param str message: The envelope's ``error.message``.
    :param str request_id: Graph's ``request-id``, to quote to Microsoft support.
    """

    explanation = "Microsoft Graph refused the request. Check the logs for the error code and request id."

    def __init__(self, message='', *, status=None, code='', request_id=None, explanation=None):
        super().__init__(message, explanation=explanation)
        self.status = status
        self.code = code or ''
        self.request_id = request_id

    def __str__(self):
        parts = [str(self.status) if self.status else None, self.code or None, self.message or None]
        text = ' '.join(part for part in parts if part)
        if self.request_id:
            text += ' (request-id %s)' % self.request_id
        return text or type(self).__name__


class Unauthorized(GraphError):
    """401: the access token is missing, expired, garbled or revoked. ``claims`` holds a claims challenge.

    The caller refreshes the token and retries once; a second 401 means the connection must be repaired.
    """

    explanation = ("Microsoft rejected the service account's access token. Odoo will refresh it automatically; "
                   "if this keeps happening, reconnect the Microsoft 365 connection.")

    def __init__(self, message='', *, claims=None, **kwargs):
        super().__init__(message, **kwargs)
        self.claims = claims

    @property
    def claims_json(self):
        """The claims challenge as JSON text (Graph sends it base64-encoded), for ``start_sign_in``; or None.

        :rtype: str or None
        """
        if not self.claims:
            return None
        if self.claims.lstrip().startswith('{'):
            return self.claims
        try:
            padded = self.claims + '=' * (-len(self.claims) % 4)
            return base64.urlsafe_b64decode(padded.replace('+', '-').replace('/', '_')).decode('utf-8')
        except (ValueError, UnicodeDecodeError):
            return self.claims


class Forbidden(GraphError):
    """403: the token is valid but lacks a scope or the Exchange right on the mailbox."""

    explanation = ("The service account is not allowed to open this mailbox. Ask your Microsoft 365 admin to "
                   "give the service account Full Access on the shared mailbox, and check that admin consent "
                   "was granted for the Mail.Read.Shared and Mail.ReadWrite.Shared permissions.")


class SendAsDenied(Forbidden):
    """403 ``ErrorSendAsDenied``: no Send As and no Send on Behalf right on the shared mailbox."""

    explanation = ("The service account may not send as this shared mailbox. Ask your Microsoft 365 admin to "
                   "grant the service account 'Send As' (or 'Send on Behalf') on the shared mailbox, then "
                   "send again.")


class NotFound(GraphError):
    """404: the mailbox, folder, message or subscription does not exist (any more)."""

    explanation = ("Microsoft 365 could not find the mailbox or item. Check the address of the shared mailbox; "
                   "an item may also have been moved or deleted in Outlook.")


class SyncReset(GraphError):
    """The delta state is gone (410, ``syncStateNotFound`` or ``resyncRequired``): start a full resync.

    ``location`` is the ``Location`` header of a 410, when Graph sent one.
    """

    explanation = ("Microsoft 365 asked for a full resynchronisation of this folder. Odoo starts one "
                   "automatically; no action is needed.")

    def __init__(self, message='', *, location=None, **kwargs):
        super().__init__(message, **kwargs)
        self.location = location


class TransientError(GraphError):
    """A failure worth retrying later: 5xx, a timeout or a connection error (``status`` is ``None`` then)."""

    explanation = ("Microsoft 365 is temporarily unavailable or could not be reached. Odoo will retry "
                   "automatically; no action is needed unless this lasts for hours.")


class Throttled(TransientError):
    """429, or 503 with ``Retry-After``: wait ``retry_after`` seconds (``None``: back off) and retry."""

    explanation = ("Microsoft 365 is limiting the number of requests for this mailbox. Odoo waits and retries "
                   "automatically; no action is needed.")

    def __init__(self, message='', *, retry_after=None, **kwargs):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class MailboxBusy(Throttled):
    """No slot of the mailbox's 4 concurrent requests freed up in time; nothing was sent to Graph.

    Raised by the client itself, never by Graph (``status`` is ``None``). It is a :class:`Throttled`, so a
    caller handles it like a 429: a cron reschedules.
    """

    explanation = ("Odoo already has the most requests Microsoft 365 allows running for this mailbox. Odoo "
                   "retries automatically; no action is needed.")


class HostNotAllowed(OutlookError):
    """A URL points outside the Graph host allow-list (a forged or misconfigured link: SSRF protection)."""

    explanation = ("Odoo refused to call a web address that is not a Microsoft Graph address. If you use a "
                   "test environment, add its host to the allowed Graph hosts in the settings.")


# === IDENTITY (AAD / ENTRA ID) === #

class TokenError(OutlookError):
    """An error answer from the identity platform (token, authorize or admin-consent endpoint).

    :param str error: The OAuth ``error`` (``invalid_grant``, ...).
    :param tuple aadsts: The ``AADSTS`` numbers (ints) from ``error_codes`` or the description.
    :param str suberror: Microsoft's ``suberror`` (``consent_required``, ``bad_token``, ...), if any.
    :param str claims: A Conditional Access claims challenge, if any.
    :param str correlation_id: To quote to Microsoft support.
    """

    explanation = ("Microsoft sign-in failed. Reconnect the Microsoft 365 connection; if it fails again, "
                   "check the logs for the AADSTS code.")

    def __init__(self, message='', *, error='', aadsts=(), suberror=None, claims=None, correlation_id=None,
                 explanation=None):
        super().__init__(message, explanation=explanation)
        self.error = error or ''
        self.aadsts = tuple(aadsts)
        self.suberror = suberror
        self.claims = claims
        self.correlation_id = correlation_id

    def __str__(self):
        codes = ','.join('AADSTS%s' % code for code in self.aadsts)
        parts = [self.error or None, codes or None, self.message or None]
        return ' '.join(part for part in parts if part) or type(self).__name__


class ConsentRequired(TokenError):
    """The app lacks admin consent for a scope, or consent was declined or revoked (65001, 65004, 90094/5)."""

    explanation = ("Admin consent for the Odoo app is missing or was revoked in Microsoft Entra ID. Ask a "
                   "Microsoft 365 global or application admin to click 'Grant admin consent' in Odoo and "
                   "accept the permissions, then reconnect.")


class InteractionRequired(TokenError):
    """The service account must sign in interactively: MFA (50076), MFA enrolment (50079), CA block (53003)."""

    explanation = ("Microsoft requires the service account to sign in again interactively. Reconnect the "
                   "Microsoft 365 connection and complete the sign-in.")


class GrantRevoked(TokenError):
    """The refresh token is dead: revoked, expired, inactive, user disabled. The connection needs reconnect."""

    explanation = ("Microsoft revoked Odoo's access for the service account (its sessions were revoked, its "
                   "password reset, or the account disabled or unused for 90 days). Reconnect the Microsoft "
                   "365 connection with the service account.")


class ClientCredentialError(TokenError):
    """The app registration's credentials are wrong: bad, expired or missing secret, unknown app."""

    explanation = ("Microsoft rejected the app's client ID or secret. Check the Application (client) ID and "
                   "create a new client secret in the Microsoft Entra admin center, then paste it in the "
                   "Odoo settings.")


class TenantNotFound(TokenError):
    """The tenant (directory) in the authority does not exist (90002) or its metadata can't be fetched."""

    explanation = ("Microsoft does not know this tenant. Check the tenant ID or domain (for example "
                   "contoso.onmicrosoft.com) in the Odoo settings.")


class SignInFailed(TokenError):
    """The sign-in exchange itself failed (code reused, PKCE mismatch, reply URL mismatch): start again."""

    explanation = ("The Microsoft sign-in could not be completed. Start the connection again from Odoo; do "
                   "not reuse or refresh the sign-in page.")


# === OAUTH STATE === #

class StateError(OutlookError):
    """Base class of the OAuth ``state`` errors (see ``oauth_state``)."""

    explanation = ("The sign-in link is not valid. Start the connection again from Odoo.")


class StateInvalid(StateError):
    """The ``state`` is malformed, its signature is wrong, or it does not match the sign-in flow."""


class StateExpired(StateError):
    """The ``state`` is older than its maximum age."""

    explanation = "The sign-in link has expired. Start the connection again from Odoo."


class StateMismatch(StateError):
    """A field bound into the ``state`` (database, company, connection, user) differs from the expected one."""

    explanation = ("The sign-in was started by another user, company or connection. Start the connection "
                   "again from the connection you want to set up, as the same user.")


# === VAULT === #

class VaultError(OutlookError):
    """Base class of the token-encryption errors (see ``vault``)."""


class MissingKeyError(VaultError):
    """No encryption key is configured."""

    explanation = ("No encryption key is configured for Microsoft 365 tokens. Set `epilot_outlook_keys` in "
                   "odoo.conf (or the EPILOT_OUTLOOK_KEYS environment variable) and restart Odoo. Generate "
                   "a key with: python3 -c \"from cryptography.fernet import Fernet; "
                   "print(Fernet.generate_key().decode())\"")


class InvalidKeyError(VaultError):
    """A configured key is not a valid Fernet key (the message names its position, never the key)."""

    explanation = ("A Microsoft 365 token encryption key in `epilot_outlook_keys` / EPILOT_OUTLOOK_KEYS is "
                   "malformed. Each key must be 44 characters of URL-safe base64 as printed by "
                   "Fernet.generate_key(); keys are separated by commas.")


class UndecryptableError(VaultError):
    """The data was encrypted with a key that is not in the keyring (or was altered)."""

    explanation = ("Stored Microsoft 365 tokens were encrypted with a key that is no longer configured. Put the "
                   "old key back in `epilot_outlook_keys` (after the new one), or reconnect the connection.")


# === MAPPING: IDENTITY === #

_AADSTS_RE = re.compile(r'AADSTS(\d+)')

# AADSTS code -> (class, admin-facing explanation). Codes from contract §1.6.
AADSTS_ERRORS = {
    65001: (ConsentRequired,
            "Admin consent for the Odoo app is missing or was revoked (AADSTS65001). Ask a Microsoft 365 "
            "global or application admin to click 'Grant admin consent' in Odoo, then reconnect."),
    65004: (ConsentRequired,
            "The consent screen was declined (AADSTS65004). Ask a Microsoft 365 admin to grant admin consent "
            "again and accept all requested permissions."),
    90094: (ConsentRequired,
            "An administrator must consent to the Odoo app (AADSTS90094). Ask a Microsoft 365 global or "
            "application admin to click 'Grant admin consent' in Odoo."),
    90095: (ConsentRequired,
            "An administrator must consent to the Odoo app (AADSTS90095). Ask a Microsoft 365 global or "
            "application admin to click 'Grant admin consent' in Odoo."),
    50076: (InteractionRequired,
            "Multi-factor authentication is now required for the service account (AADSTS50076). Reconnect "
            "and complete MFA, or ask your Microsoft 365 admin to adjust the MFA policy for this account."),
    50079: (InteractionRequired,
            "The service account must register for multi-factor authentication (AADSTS50079). Sign in once "
            "as the service account at https://aka.ms/mfasetup, then reconnect."),
    53003: (InteractionRequired,
            "Conditional Access blocked the service account's sign-in (AADSTS53003). Ask your Microsoft 365 "
            "admin to exclude the service account from the blocking policy or allow sign-ins from the Odoo "
            "server's location, then reconnect."),
    50173: (GrantRevoked,
            "The service account's sessions were revoked or its password was reset by an admin (AADSTS50173). "
            "Reconnect the Microsoft 365 connection."),
    70008: (GrantRevoked,
            "Odoo's sign-in for the service account expired or was revoked (AADSTS70008). Reconnect the "
            "Microsoft 365 connection."),
    700082: (GrantRevoked,
             "Odoo's sign-in expired because it was not used for 90 days (AADSTS700082). Reconnect the "
             "Microsoft 365 connection."),
    50057: (GrantRevoked,
            "The service account is disabled in Microsoft Entra ID (AADSTS50057). Ask your Microsoft 365 admin "
            "to enable it, then reconnect."),
    70043: (GrantRevoked,
            "A Conditional Access sign-in frequency policy requires a fresh sign-in (AADSTS70043). Reconnect, "
            "or ask your admin to exclude the service account from the sign-in frequency policy."),
    7000215: (ClientCredentialError,
              "The client secret in the Odoo settings is wrong (AADSTS7000215). Copy the secret's Value (not "
              "its ID) from the Microsoft Entra admin center into the settings."),
    7000222: (ClientCredentialError,
              "The client secret has expired (AADSTS7000222). Create a new client secret in the Microsoft "
              "Entra admin center and paste it in the Odoo settings."),
    7000218: (ClientCredentialError,
              "No client secret was sent (AADSTS7000218). Enter the client secret in the Odoo settings."),
    700016: (ClientCredentialError,
             "The application (client) ID is not known in this tenant (AADSTS700016). Check the client ID in "
             "the Odoo settings, and that the app registration is multi-tenant or lives in this tenant."),
    90002: (TenantNotFound,
            "The tenant does not exist (AADSTS90002). Check the tenant ID or domain in the Odoo settings."),
    54005: (SignInFailed,
            "The sign-in code was already used (AADSTS54005). Start the connection again from Odoo."),
    9002313: (GrantRevoked,
              "Microsoft did not accept Odoo's sign-in code or refresh token (AADSTS9002313): it was issued to "
              "another tenant or app, or is malformed. Connect again, and sign in with the service account of "
              "the tenant that granted consent."),
    501481: (SignInFailed,
             "The sign-in could not be verified (AADSTS501481, PKCE mismatch). Start the connection again "
             "from Odoo."),
    50011: (SignInFailed,
            "The redirect URI does not match the app registration (AADSTS50011). Add Odoo's callback URL, "
            "exactly as shown in the settings, to the app registration's Web redirect URIs."),
}

# ``suberror`` and OAuth ``error`` fallbacks, for codes not in the table above.
_SUBERROR_CLASSES = {
    'consent_required': ConsentRequired,
    'bad_token': GrantRevoked,
    'token_expired': GrantRevoked,
    'basic_action': InteractionRequired,
    'additional_action': InteractionRequired,
    'message_only': InteractionRequired,
}
_OAUTH_ERROR_CLASSES = {
    'consent_required': ConsentRequired,
    'access_denied': ConsentRequired,
    'interaction_required': InteractionRequired,
    'login_required': InteractionRequired,
    'invalid_grant': GrantRevoked,
    'invalid_client': ClientCredentialError,
    'unauthorized_client': ClientCredentialError,
}


def aadsts_codes(error_dict):
    """Return the AADSTS numbers of an identity-platform error, from ``error_codes`` or the description.

    :param dict error_dict: The error JSON (or MSAL's result dict).
    :return: The codes, in the order Microsoft gave them.
    :rtype: tuple
    """
    codes = []
    for code in error_dict.get('error_codes') or ():
        try:
            codes.append(int(code))
        except (TypeError, ValueError):
            continue
    if not codes:
        codes = [int(code) for code in _AADSTS_RE.findall(error_dict.get('error_description') or '')]
    return tuple(codes)


def _first_line(text):
    """The first line of an AAD description, without its trace/correlation ids and timestamp."""
    return (text or '').replace('\r', '').split('\n', 1)[0].strip()


def token_error_from_aad(error_dict):
    """Return the exception matching an identity-platform error, as MSAL returns it.

    :param dict error_dict: ``error``, ``error_description``, ``error_codes``, ``suberror``, ``claims``,
        ``correlation_id`` (all optional).
    :return: The exception to raise (not raised here).
    :rtype: TokenError
    """
    error = error_dict.get('error') or ''
    suberror = error_dict.get('suberror')
    codes = aadsts_codes(error_dict)
    error_class, explanation = TokenError, None
    for code in codes:
        if code in AADSTS_ERRORS:
            error_class, explanation = AADSTS_ERRORS[code]
            break
    else:
        if suberror in _SUBERROR_CLASSES:
            error_class = _SUBERROR_CLASSES[suberror]
        elif error in ('temporarily_unavailable', 'server_error'):
            return TransientError(_first_line(error_dict.get('error_description')) or error, code=error)
        else:
            error_class = _OAUTH_ERROR_CLASSES.get(error, TokenError)
    return error_class(
        _first_line(error_dict.get('error_description')),
        error=error, aadsts=codes, suberror=suberror, claims=error_dict.get('claims'),
        correlation_id=error_dict.get('correlation_id'), explanation=explanation,
    )


# === MAPPING: GRAPH === #

_SYNC_RESET_CODES = {'syncstatenotfound', 'resyncrequired', 'syncstateinvalid'}
_THROTTLED_CODES = {'toomanyrequests', 'activitylimitreached'}
_CLAIMS_RE = re.compile(r'claims="([^"]*)"')

# Envelope code -> admin-facing explanation, where the class default is not precise enough.
GRAPH_CODE_EXPLANATIONS = {
    'MailboxNotEnabledForRESTAPI': (
        "This mailbox cannot be reached through Microsoft Graph: it is inactive, soft-deleted, or hosted "
        "on-premises. Check the mailbox in the Exchange admin center."),
    'ErrorInvalidUser': (
        "Microsoft 365 does not know this mailbox address. Check the spelling of the shared mailbox address."),
    'ExtensionError': (
        "Microsoft 365 refused the change-notification subscription. Odoo falls back to polling this mailbox; "
        "no action is needed."),
}


def parse_retry_after(value):
    """Return ``Retry-After`` as whole seconds, or ``None`` when absent or not an integer.

    Graph sends integer seconds (contract §5); an HTTP date is not used by Graph and is ignored.

    :param str value: The header value.
    :rtype: int or None
    """
    try:
        seconds = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return max(seconds, 0)


def graph_error_from_parts(status, body, headers=None):
    """Return the exception matching a Graph error answer (a response, or one ``$batch`` item).

    :param int status: HTTP status.
    :param body: The decoded JSON body (the envelope ``{"error": {...}}``), or anything else.
    :param dict headers: Response headers (case-insensitive mapping or plain dict).
    :return: The exception to raise (not raised here).
    :rtype: GraphError
    """
    headers = {str(key).lower(): value for key, value in (headers or {}).items()}
    envelope = body.get('error') if isinstance(body, dict) else None
    envelope = envelope if isinstance(envelope, dict) else {}
    code = str(envelope.get('code') or '')
    message = str(envelope.get('message') or '')
    inner = envelope.get('innerError') or envelope.get('innererror') or {}
    request_id = headers.get('request-id') or (inner.get('request-id') if isinstance(inner, dict) else None)
    kwargs = {'status': status, 'code': code, 'request_id': request_id,
              'explanation': GRAPH_CODE_EXPLANATIONS.get(code)}
    code_l = code.lower()
    retry_after = parse_retry_after(headers.get('retry-after'))

    if code_l in _SYNC_RESET_CODES or status == 410:
        return SyncReset(message, location=headers.get('location'), **kwargs)
    if status == 401:
        claims_match = _CLAIMS_RE.search(headers.get('www-authenticate') or '')
        return Unauthorized(message, claims=claims_match.group(1) if claims_match else None, **kwargs)
    if code == 'ErrorSendAsDenied':
        return SendAsDenied(message, **kwargs)
    if status == 403:
        return Forbidden(message, **kwargs)
    if status == 404:
        return NotFound(message, **kwargs)
    if status == 429 or code_l in _THROTTLED_CODES or (status == 503 and retry_after is not None):
        return Throttled(message, retry_after=retry_after, **kwargs)
    if status is not None and status >= 500:
        return TransientError(message, **kwargs)
    return GraphError(message, **kwargs)


def graph_error_from_response(response):
    """Return the exception matching a ``requests.Response`` (or anything with ``status_code``, ``headers``
    and ``json()``).

    :rtype: GraphError
    """
    try:
        body = response.json()
    except ValueError:
        body = None
    return graph_error_from_parts(response.status_code, body, response.headers)
