"""The exceptions of the plain layer, and the two functions that turn Microsoft's errors into them.

The plain layer raises errors with codes and parameters; the Odoo layer words them. Every exception derives
from :class:`OutlookError` and carries:

* ``str(exc)`` / ``exc.message``: a short technical message, for logs (never a token, a secret or a key;
  Graph's and AAD's own messages are kept because they contain none). It is not shown to users as it is;
* stable codes the Odoo layer words the error by (``epilot_outlook/tools/explain.py``, translated there):
  its class, ``aadsts`` (:class:`TokenError`), the Graph envelope's ``code`` (:class:`GraphError`) and, for a
  situation more precise than any of those, ``reason``;
* ``params``: the values the wording needs (a host, the missing scopes, ...), interpolated as ``%(name)s``.

No English sentence for the user lives here: :data:`AADSTS_CLASSES` and :data:`GRAPH_CODES` list the codes
the plain layer knows, and the Odoo layer has a wording for each of them (a test there checks it).

Identity errors are chosen by AADSTS code first, then by ``suberror``, then by the OAuth ``error`` (contract
§1.6). Graph errors are chosen by the envelope's ``code`` first, then by HTTP status, never by ``message``
(docs/microsoft-graph.md §6).
"""
import base64
import random
import re

from .const import BACKOFF_MAX_S, TRANSIENT_BACKOFF_S
from .logsafe import mask_secrets


# === BASE === #

class OutlookError(Exception):
    """Base class of every error raised by the plain layer.

    :param str message: Technical message, for logs (no tokens, no secrets). Secret parameters in it are
        masked: a message Graph or a gateway wrote may quote a URL, such as an upload session's, with its
        ``authtoken``.
    :param str reason: A stable key for a situation the class and codes do not tell apart
        (``identity_throttled``, ...); the Odoo layer words it first.
    :param dict params: The values the wording interpolates (``{'host': ...}``); never a secret.
    """

    def __init__(self, message='', *, reason=None, params=None):
        message = mask_secrets(message) if isinstance(message, str) else message
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.params = dict(params or {})


# === GRAPH === #

class GraphError(OutlookError):
    """An error answer from Microsoft Graph (docs/microsoft-graph.md §6).

    :param int status: HTTP status, or ``None`` when no response was received.
    :param str code: The envelope's ``error.code`` (may be empty).
    :param str message: The envelope's ``error.message``.
    :param str request_id: Graph's ``request-id``, to quote to Microsoft support.
    """

    def __init__(self, message='', *, status=None, code='', request_id=None, reason=None, params=None):
        super().__init__(message, reason=reason, params=params)
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


class SendAsDenied(Forbidden):
    """403 ``ErrorSendAsDenied``: no Send As and no Send on Behalf right on the shared mailbox."""


class NotFound(GraphError):
    """404: the mailbox, folder, message or subscription does not exist (any more)."""


class SyncReset(GraphError):
    """The delta state is gone (410, ``syncStateNotFound`` or ``resyncRequired``): start a full resync.

    ``location`` is the ``Location`` header of a 410, when Graph sent one.
    """

    def __init__(self, message='', *, location=None, **kwargs):
        super().__init__(message, **kwargs)
        self.location = location


class TransientError(GraphError):
    """A failure worth retrying later: 5xx, a timeout or a connection error (``status`` is ``None`` then)."""


class Throttled(TransientError):
    """429, or 503 with ``Retry-After``: wait ``retry_after`` seconds (``None``: back off) and retry."""

    def __init__(self, message='', *, retry_after=None, **kwargs):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class SendPending(TransientError):
    """A draft was handed to ``send`` a moment ago and still shows as a draft: it may be on its way, so it is
    not sent again yet (``params['seconds']``: how long until it may be). Raised by the sender, not by Graph."""


class MailboxBusy(Throttled):
    """No slot of the mailbox's 4 concurrent requests freed up in time; nothing was sent to Graph.

    Raised by the client itself, never by Graph (``status`` is ``None``). It is a :class:`Throttled`, so a
    caller handles it like a 429: a cron reschedules.
    """


class ConnectionUnusable(OutlookError):
    """The connection cannot call Graph now: it is not connected, it needs a reconnect (Microsoft refused its
    tokens: the refusal was recorded on it), or another worker's token refresh held it too long. Work stops and
    resumes once it heals or an admin reconnects; a screen shows it in words. ``cause`` is Microsoft's refusal,
    when there is one (its words are the more precise)."""

    def __init__(self, message='', *, reason=None, params=None, cause=None):
        super().__init__(message, reason=reason, params=params)
        self.cause = cause


class HostNotAllowed(OutlookError):
    """A URL points outside the Graph host allow-list (a forged or misconfigured link: SSRF protection)."""


# === IDENTITY (AAD / ENTRA ID) === #

class TokenError(OutlookError):
    """An error answer from the identity platform (token, authorize or admin-consent endpoint).

    :param str error: The OAuth ``error`` (``invalid_grant``, ...).
    :param tuple aadsts: The ``AADSTS`` numbers (ints) from ``error_codes`` or the description.
    :param str suberror: Microsoft's ``suberror`` (``consent_required``, ``bad_token``, ...), if any.
    :param str claims: A Conditional Access claims challenge, if any.
    :param str correlation_id: To quote to Microsoft support.
    """

    def __init__(self, message='', *, error='', aadsts=(), suberror=None, claims=None, correlation_id=None,
                 reason=None, params=None):
        super().__init__(message, reason=reason, params=params)
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


class InteractionRequired(TokenError):
    """The service account must sign in interactively: MFA (50076), MFA enrolment (50079), CA block (53003)."""


class GrantRevoked(TokenError):
    """The refresh token is dead: revoked, expired, inactive, user disabled. The connection needs reconnect."""


class ClientCredentialError(TokenError):
    """The app registration's credentials are wrong: bad, expired or missing secret, unknown app."""


class TenantNotFound(TokenError):
    """The tenant (directory) in the authority does not exist (90002) or its metadata can't be fetched."""


class SignInFailed(TokenError):
    """The sign-in exchange itself failed (code reused, PKCE mismatch, reply URL mismatch): start again."""


# === OAUTH STATE === #

class StateError(OutlookError):
    """Base class of the OAuth ``state`` errors (see ``oauth_state``)."""


class StateInvalid(StateError):
    """The ``state`` is malformed, its signature is wrong, or it does not match the sign-in flow."""


class StateExpired(StateError):
    """The ``state`` is older than its maximum age."""


class StateMismatch(StateError):
    """A field bound into the ``state`` (database, company, connection, user) differs from the expected one."""


# === VAULT === #

class VaultError(OutlookError):
    """Base class of the token-encryption errors (see ``vault``)."""


class MissingKeyError(VaultError):
    """No encryption key is configured."""


class InvalidKeyError(VaultError):
    """A configured key is not a valid Fernet key: ``params`` ``position`` and ``count`` say which, never the key."""


class UndecryptableError(VaultError):
    """The data was encrypted with a key that is not in the keyring (or was altered)."""


# === MAPPING: IDENTITY === #

_AADSTS_RE = re.compile(r'AADSTS(\d+)')

# AADSTS code -> class. Codes from contract §1.6; the Odoo layer words each code (the comment says what it means).
AADSTS_CLASSES = {
    65001: ConsentRequired,         # admin consent missing or revoked
    65004: ConsentRequired,         # the consent screen was declined
    90094: ConsentRequired,         # an administrator must consent
    90095: ConsentRequired,         # an administrator must consent (admin consent workflow)
    50076: InteractionRequired,     # MFA now required
    50079: InteractionRequired,     # MFA registration required
    53003: InteractionRequired,     # blocked by Conditional Access
    50173: GrantRevoked,            # sessions revoked or password reset by an admin
    70008: GrantRevoked,            # refresh token expired or revoked
    700082: GrantRevoked,           # refresh token unused for 90 days
    50057: GrantRevoked,            # user account disabled
    70043: GrantRevoked,            # sign-in frequency policy requires a fresh sign-in
    7000215: ClientCredentialError,  # wrong client secret
    7000222: ClientCredentialError,  # client secret expired
    7000218: ClientCredentialError,  # no client secret sent
    700016: ClientCredentialError,  # application (client) id unknown in the tenant
    90002: TenantNotFound,          # tenant does not exist
    54005: SignInFailed,            # authorization code already redeemed
    9002313: GrantRevoked,          # code or refresh token of another tenant or app, or malformed
    501481: SignInFailed,           # PKCE code verifier mismatch
    50011: SignInFailed,            # redirect URI not registered on the app
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
    error_class = TokenError
    for code in codes:
        if code in AADSTS_CLASSES:
            error_class = AADSTS_CLASSES[code]
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
        correlation_id=error_dict.get('correlation_id'),
    )


# === MAPPING: GRAPH === #

_SYNC_RESET_CODES = {'syncstatenotfound', 'resyncrequired', 'syncstateinvalid'}
_THROTTLED_CODES = {'toomanyrequests', 'activitylimitreached'}
_CLAIMS_RE = re.compile(r'claims="([^"]*)"')

# Envelope codes that say more than the class they map to: the Odoo layer words each of them. (The codes that
# choose a class, below and in ``graph_error_from_parts``, are worded through that class.)
GRAPH_CODES = frozenset({
    'MailboxNotEnabledForRESTAPI',  # inactive, soft-deleted or on-premises mailbox
    'ErrorInvalidUser',             # unknown mailbox address
    'ExtensionError',               # subscription refused: the caller falls back to polling
})


def is_transient(error):
    """Whether ``error`` passes by itself, so the work is tried again later without anyone acting: Graph's
    throttling and transient failures, a send still on its way, and a connection that could not get a token for
    such a reason (the identity platform's 5xx or 429 after the refresh's own retries, or another worker's refresh
    holding the connection too long). A connection that needs a reconnect is not: a person must act.

    :param Exception error: What stopped the work.
    :rtype: bool
    """
    if isinstance(error, ConnectionUnusable):
        return error.reason == 'refresh_busy' or isinstance(error.cause, TransientError)
    return isinstance(error, TransientError)


def retry_delay(error, default):
    """The one backoff policy of every Outlook work item (sync steps, subscriptions, sending): how many seconds
    to wait before trying again after ``error``, without sleeping in a worker.

    - Graph's ``Retry-After`` when it gave one (429, 503; a mailbox whose 4 slots stayed taken), else the longest
      backoff (docs/microsoft-graph.md §5);
    - ``SendPending``: the rest of the grace time of a draft handed to ``send`` a moment ago;
    - any other transient failure (5xx after the client's own retries, a timeout): 5 to 60 s, jittered, so that
      workers that failed together do not come back together;
    - a connection that could not get a token for a transient reason (:func:`is_transient`): as its cause (the
      identity platform's ``Retry-After``), or 5 to 60 s;
    - anything else: ``default`` (the caller knows how soon its kind of work is worth trying again).

    :param Exception error: What stopped the work (``None``: a database conflict with another worker, 1 s).
    :param float default: Seconds, for errors that are not transient.
    :rtype: float
    """
    if error is None:
        return 1.0
    if isinstance(error, ConnectionUnusable) and is_transient(error):
        return retry_delay(error.cause, default) if error.cause is not None else random.uniform(*TRANSIENT_BACKOFF_S)
    if isinstance(error, SendPending):
        return float(error.params.get('seconds') or 60)
    if isinstance(error, Throttled):
        return float(error.retry_after or BACKOFF_MAX_S)
    if isinstance(error, TransientError):
        return random.uniform(*TRANSIENT_BACKOFF_S)
    return float(default)


def parse_retry_after(value):
    """Return ``Retry-After`` as whole seconds, or ``None`` when absent or not an integer.

    Graph sends integer seconds (docs/microsoft-graph.md §5); an HTTP date is not used by Graph and is ignored.

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
    kwargs = {'status': status, 'code': code, 'request_id': request_id}
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
