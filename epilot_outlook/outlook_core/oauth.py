"""Sign-in and token refresh for the delegated service account, through MSAL (never hand-rolled).

Three moments, each one method of :class:`OAuthClient`:

1. **Admin consent** (:meth:`~OAuthClient.admin_consent_url`, :meth:`~OAuthClient.parse_admin_consent_callback`):
   a Microsoft 365 admin grants the app's delegated permissions for the whole tenant.
2. **Sign-in** (:meth:`~OAuthClient.start_sign_in`, :meth:`~OAuthClient.finish_sign_in`): the service account
   signs in with the authorization-code flow and PKCE; Odoo receives an access and a refresh token.
3. **Refresh** (:meth:`~OAuthClient.refresh`): every refresh returns a new refresh token, which the caller
   must store in place of the old one (the old one is not revoked, docs/microsoft-graph.md §1.4).

Facts about MSAL worth knowing here (docs/microsoft-graph.md §1.8):

* ``ConfidentialClientApplication(...)`` fetches OIDC discovery inside its constructor, so it is built lazily on
  first use, and ``instance_discovery=False`` keeps it from calling ``login.microsoftonline.com`` for a
  custom authority host (the sandbox).
* MSAL's ``ThrottledHttpClient`` remembers a token-endpoint answer of exactly HTTP 400 for 60 s and replays it
  locally for an identical request (same refresh token, same scopes). A refresh that just failed with
  ``invalid_grant`` therefore fails again for a minute without reaching Microsoft. The replay cache belongs
  to the MSAL app, hence to one :class:`OAuthClient`: build a new client per operation, and a retry after the
  admin fixed the cause reaches Microsoft again.
* A 5xx from the token endpoint makes MSAL raise (``MsalServiceError("HTTP Error: 503")`` in 1.39, a
  ``requests.HTTPError`` in older versions); it becomes :class:`TransientError` here. A 429 is caught before
  MSAL sees it and becomes :class:`Throttled` with its ``Retry-After``.
"""
import base64
import binascii
import datetime
import json
import logging
import re
import threading
import uuid
import warnings
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

import msal
import msal.exceptions
import requests

from . import errors
from .const import (
    DEFAULT_AUTHORITY_HOST, DEFAULT_CONSENT_TENANT, DELEGATED_SCOPES, GRAPH_RESOURCE, MSAL_RESERVED_SCOPES,
    MSAL_SCOPES, TOKEN_HTTP_TIMEOUT, TOKEN_REFRESH_MARGIN_S,
)
from .logsafe import install_log_filters, loggable

_logger = logging.getLogger(__name__)
# urllib3 logs the token endpoint's URL (tenant id in its path) and MSAL its authority: masked in their records.
install_log_filters()


# === TOKEN SET === #

@dataclass(frozen=True)
class Identity:
    """Who signed in, from the id_token claims. Key users on ``oid`` + ``tenant_id``, never on ``username``.

    :param str oid: Object id of the user (== Graph ``user.id``).
    :param str username: ``preferred_username`` (UPN-like, mutable; for display only).
    :param str name: Display name.
    :param str tenant_id: The user's tenant (``tid``).
    """

    oid: str = None
    username: str = None
    name: str = None
    tenant_id: str = None


@dataclass(frozen=True, repr=False)
class TokenSet:
    """The result of a sign-in or refresh. ``repr()`` never shows the tokens.

    :param str access_token: Bearer token for Graph (opaque).
    :param str refresh_token: The new refresh token; store it in place of the old one.
    :param datetime.datetime expires_at: When the access token expires (aware, UTC).
    :param tuple scopes: The granted scopes as Microsoft echoed them.
    :param str tenant_id: The tenant the tokens belong to.
    :param Identity identity: Who signed in.
    """

    access_token: str
    refresh_token: str
    expires_at: datetime.datetime
    scopes: tuple = ()
    tenant_id: str = None
    identity: Identity = field(default_factory=Identity)

    def needs_refresh(self, now=None, margin_s=TOKEN_REFRESH_MARGIN_S):
        """Tell whether the access token expires within ``margin_s`` seconds.

        :param datetime.datetime now: Aware current time (default: now, UTC).
        :rtype: bool
        """
        now = now or datetime.datetime.now(datetime.timezone.utc)
        return self.expires_at - now <= datetime.timedelta(seconds=margin_s)

    def missing_scopes(self):
        """Return the product's Graph scopes this token set was not granted (e.g. consent given before a
        scope was added to the app): a non-empty answer means admin consent must be granted again.

        :rtype: tuple
        """
        prefix = GRAPH_RESOURCE.lower() + '/'
        granted = {scope.lower()[len(prefix):] if scope.lower().startswith(prefix) else scope.lower()
                   for scope in self.scopes}
        return tuple(scope for scope in MSAL_SCOPES if scope.lower() not in granted)

    def __repr__(self):
        # Tenant id and identity are stored encrypted on the Odoo side, so they stay out of reprs too.
        return ('TokenSet(access_token=%s, refresh_token=%s, expires_at=%s, scopes=%r, tenant_id=%s, '
                'identity=%s)' % (_masked(self.access_token), _masked(self.refresh_token),
                                  self.expires_at.isoformat(), self.scopes, _masked(self.tenant_id),
                                  _masked(self.identity.oid)))

    __str__ = __repr__


def _masked(token):
    return "'[REDACTED %d chars]'" % len(token) if token else 'None'


# === HTTP SESSION FOR MSAL === #

class _TokenHttpSession(requests.Session):
    """The ``requests`` session MSAL uses: our CA bundle and timeout, and 429 turned into :class:`Throttled`.

    MSAL would parse a 429 body as an OAuth error (or fail on a non-JSON one) and hide the status; raising here
    keeps the ``Retry-After`` for the caller. A plain ``requests.Session`` also keeps Odoo's test guard, which
    patches ``requests.Session.send``, in the loop.
    """

    def __init__(self, verify, timeout):
        super().__init__()
        self.verify = verify
        self.timeout = timeout

    def request(self, method, url, **kwargs):
        kwargs.setdefault('timeout', self.timeout)
        # Per request, because requests lets REQUESTS_CA_BUNDLE override a session's ``verify``.
        kwargs.setdefault('verify', self.verify)
        response = super().request(method, url, **kwargs)
        if response.status_code == 429:
            raise errors.Throttled(
                "The identity platform is throttling token requests.", status=429,
                retry_after=errors.parse_retry_after(response.headers.get('Retry-After')),
                reason='identity_throttled',  # Microsoft sign-in, not Graph, is limiting: worded apart.
            )
        return response


class _DiscardingTokenCache(msal.TokenCache):
    """A token cache that keeps nothing.

    Tokens live in Odoo, encrypted by the vault; a second copy in MSAL's memory would only go stale. And
    ``TokenCache.add`` logs every token event at DEBUG with the authorization ``code`` and PKCE
    ``code_verifier`` in clear (MSAL masks only secrets and tokens), which must not reach Odoo's logs.
    """

    def add(self, event, now=None):
        return None


# === CLIENT === #

class OAuthClient:
    """MSAL wrapper for one app registration and one tenant.

    Build one per operation (a sign-in, a refresh round) rather than keeping one for the life of the process:
    MSAL's replay of a failed 400 lives in the instance, so a long-lived client would keep failing for 60 s
    after the admin fixed the cause (re-enabled the account, restored consent). Construction is cheap; the
    discovery request happens on first use.

    :param str client_id: Application (client) id.
    :param str client_secret: Client secret (kept only in the MSAL app; never logged).
    :param str authority_host: ``https://login.microsoftonline.com`` or the sandbox's address.
    :param str tenant: Tenant GUID or domain (``organizations`` before the tenant is known).
    :param ca_bundle: Path of a CA bundle to trust (the sandbox), or ``None`` for the system's.
    :param http_timeout: ``requests`` timeout for identity-platform calls.
    :param clock: Callable returning the aware current time (tests).
    """

    def __init__(self, client_id, client_secret, authority_host=DEFAULT_AUTHORITY_HOST, tenant='organizations',
                 *, ca_bundle=None, http_timeout=TOKEN_HTTP_TIMEOUT, clock=None):
        if not authority_host.startswith('https://'):
            # MSAL refuses anything else; say it clearly instead of MSAL's ValueError.
            raise ValueError("The authority host must be an https:// URL")
        self.client_id = client_id
        self._client_secret = client_secret
        self.authority_host = authority_host.rstrip('/')
        self.tenant = tenant
        self.ca_bundle = ca_bundle
        self.http_timeout = http_timeout
        self._clock = clock or (lambda: datetime.datetime.now(datetime.timezone.utc))
        self._app = None
        self._app_lock = threading.Lock()

    def __repr__(self):
        return '<OAuthClient client_id=%s authority_host=%s>' % (self.client_id, self.authority_host)

    @property
    def authority(self):
        return '%s/%s' % (self.authority_host, self.tenant)

    # === BUSINESS METHODS - ADMIN CONSENT === #

    def admin_consent_url(self, redirect_uri, state, tenant=DEFAULT_CONSENT_TENANT):
        """Return the v2.0 admin-consent URL for the product's Graph permissions (docs/microsoft-graph.md §1.2).

        :param str redirect_uri: Registered redirect URI (exact match).
        :param str state: A signed state from ``oauth_state.issue``.
        :param str tenant: Tenant GUID or domain, or ``organizations`` (never ``common``).
        :rtype: str
        """
        scopes = ' '.join(
            scope if scope in MSAL_RESERVED_SCOPES else '%s/%s' % (GRAPH_RESOURCE, scope)
            for scope in DELEGATED_SCOPES
        )
        query = urlencode({
            'client_id': self.client_id,
            'scope': scopes,
            'redirect_uri': redirect_uri,
            'state': state,
        }, quote_via=quote)
        return '%s/%s/v2.0/adminconsent?%s' % (self.authority_host, quote(tenant, safe=''), query)

    @staticmethod
    def parse_admin_consent_callback(params):
        """Return the consenting tenant's id from the admin-consent redirect, or raise the mapped error.

        Verify ``params['state']`` with ``oauth_state.verify`` **before** calling this. The ``tenant`` parameter
        can be forged (contract §1.2): record it to pin the authority, but never authenticate anyone with it;
        the sign-in that follows proves who the tenant is.

        :param dict params: The callback's query parameters.
        :rtype: str
        :raise ConsentRequired: When consent was declined or not given (``error``, no ``admin_consent=True``).
        :raise TokenError: For other identity errors, or a callback without a valid tenant id.
        """
        params = _single_values(params)
        if params.get('error'):
            raise errors.token_error_from_aad(params)
        if str(params.get('admin_consent', '')).lower() != 'true':
            raise errors.ConsentRequired("The admin-consent callback does not confirm consent.")
        tenant_id = params.get('tenant') or ''
        try:
            return str(uuid.UUID(tenant_id))
        except ValueError:
            raise errors.TokenError("The admin-consent callback carries no valid tenant id.") from None

    # === BUSINESS METHODS - SIGN-IN === #

    def start_sign_in(self, redirect_uri, state, login_hint=None, prompt=None, claims_challenge=None):
        """Start the authorization-code flow with PKCE.

        The returned flow holds the PKCE verifier and nonce: **store it server-side** (for instance encrypted,
        keyed by the state's nonce) and send the user to ``flow['auth_uri']``. Never put it in a URL or a
        cookie the browser can read.

        The response comes back in the query string, not as a ``form_post``: a cross-site POST from Microsoft
        would arrive without Odoo's ``SameSite=Lax`` session cookie, so an ``auth='user'`` callback could not
        tell who is signing in. The code in the URL is useless without the PKCE verifier and client secret.

        :param str redirect_uri: Registered redirect URI.
        :param str state: A signed state from ``oauth_state.issue`` (MSAL checks it comes back unchanged).
        :param str login_hint: The service account's UPN, to preselect it.
        :param str prompt: ``select_account``, ``login``, ``consent`` or ``None``.
        :param str claims_challenge: The ``claims`` of an :class:`Unauthorized` or :class:`InteractionRequired`
            (Conditional Access asking for more), decoded JSON text, to satisfy in this sign-in.
        :return: MSAL's flow dict (``auth_uri``, ``state``, ``code_verifier``, ``nonce``, ...).
        :rtype: dict
        """
        with self._msal_errors(), warnings.catch_warnings():
            # MSAL warns on every non-form_post flow; query is deliberate here (see above).
            warnings.filterwarnings('ignore', message=r"response_mode='form_post' is recommended")
            return self._application().initiate_auth_code_flow(
                list(MSAL_SCOPES), redirect_uri=redirect_uri, state=state, login_hint=login_hint, prompt=prompt,
                claims_challenge=claims_challenge, response_mode='query',
            )

    def finish_sign_in(self, flow, callback_params):
        """Redeem the callback's code (MSAL checks state, PKCE and the id_token nonce).

        :param dict flow: The flow stored by :meth:`start_sign_in`.
        :param dict callback_params: The callback's query (or form_post) parameters.
        :rtype: TokenSet
        :raise StateInvalid: When the callback does not belong to this flow (state or nonce mismatch).
        :raise TokenError: The mapped identity error (consent, MFA, Conditional Access, bad secret, ...).
        :raise TransientError: On 5xx, timeouts and connection errors; :class:`Throttled` on 429.
        """
        params = _single_values(callback_params)
        with self._msal_errors():
            try:
                result = self._application().acquire_token_by_auth_code_flow(dict(flow), params)
            except ValueError:
                # MSAL raises ValueError when the state differs from the flow's (CSRF, or a stale flow).
                raise errors.StateInvalid("The sign-in callback does not match the sign-in that was started.") \
                    from None
            except RuntimeError:
                # ...and RuntimeError when the id_token nonce differs (a replayed or injected code).
                raise errors.StateInvalid("The sign-in response failed its nonce check.") from None
        return self._token_set(result, 'sign-in')

    # === BUSINESS METHODS - REFRESH === #

    def refresh(self, refresh_token):
        """Redeem a refresh token for new tokens.

        :param str refresh_token: The current refresh token.
        :return: New tokens; ``refresh_token`` is the rotated one (the old one if Microsoft sent none).
        :rtype: TokenSet
        :raise GrantRevoked: When the connection needs a reconnect (revoked, expired, user disabled, ...).
        :raise ConsentRequired: When admin consent was revoked.
        :raise InteractionRequired: MFA or Conditional Access now requires an interactive sign-in.
        :raise ClientCredentialError: Bad or expired client secret.
        :raise TransientError: On 5xx, timeouts and connection errors; :class:`Throttled` on 429.
        """
        with self._msal_errors():
            result = self._application().acquire_token_by_refresh_token(refresh_token, list(MSAL_SCOPES))
        return self._token_set(result, 'refresh', fallback_refresh_token=refresh_token)

    # === HELPERS === #

    def _application(self):
        """The MSAL app, built on first use (its constructor fetches OIDC discovery)."""
        with self._app_lock:
            if self._app is None:
                self._app = msal.ConfidentialClientApplication(
                    self.client_id,
                    client_credential=self._client_secret,
                    authority=self.authority,
                    instance_discovery=False,   # never ask login.microsoftonline.com about a custom host
                    azure_region=None,
                    token_cache=_DiscardingTokenCache(),
                    http_client=_TokenHttpSession(self.ca_bundle or True, self.http_timeout),
                )
            return self._app

    def _msal_errors(self):
        return _MsalErrors(self)

    def _token_set(self, result, operation, fallback_refresh_token=None):
        """Turn MSAL's result dict into a :class:`TokenSet`, or raise the mapped error."""
        if not result or 'error' in result or not result.get('access_token'):
            exc = errors.token_error_from_aad(result or {'error': 'no_response'})
            # The tenant id and the user's identity are secrets too (stored encrypted): log neither.
            # The description is Microsoft's text, or a forger's (a redirect's error_description): bounded, escaped.
            _logger.warning("Microsoft 365: %s failed for client %s at %s: %s", operation, self.client_id,
                            self.authority_host, loggable(exc))
            raise exc
        claims = result.get('id_token_claims') or {}
        client_info = _decode_client_info(result.get('client_info'))
        tenant_id = claims.get('tid') or client_info.get('utid')
        identity = Identity(
            oid=claims.get('oid') or client_info.get('uid'),
            username=claims.get('preferred_username') or claims.get('upn'),
            name=claims.get('name'),
            tenant_id=tenant_id,
        )
        token_set = TokenSet(
            access_token=result['access_token'],
            refresh_token=result.get('refresh_token') or fallback_refresh_token,
            expires_at=self._clock() + datetime.timedelta(seconds=int(result.get('expires_in') or 0)),
            scopes=tuple((result.get('scope') or '').split()),
            tenant_id=tenant_id,
            identity=identity,
        )
        _logger.info("Microsoft 365: %s succeeded for client %s; access token expires at %s",
                     operation, self.client_id, token_set.expires_at.isoformat())
        return token_set


class _MsalErrors:
    """Context manager turning what MSAL and requests raise into the plain layer's errors."""

    def __init__(self, client):
        self._client = client

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, _tb):
        if exc is None or isinstance(exc, errors.OutlookError):
            return False
        if isinstance(exc, (requests.HTTPError, msal.exceptions.MsalServiceError)):
            # MSAL raises on a 5xx from the token endpoint: requests' HTTPError, or (1.3x, through its
            # NormalizedResponse) MsalServiceError("HTTP Error: 503").
            response = getattr(exc, 'response', None)
            status = response.status_code if response is not None else _http_status_in(str(exc))
            raise errors.TransientError("The identity platform answered HTTP %s." % status, status=status) \
                from None
        if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
            raise errors.TransientError("The identity platform could not be reached (%s)."
                                        % type(exc).__name__) from None
        if isinstance(exc, ValueError) and 'authority' in str(exc).lower():
            # MSAL: "Unable to get authority configuration for ..." on a 4xx from discovery.
            _logger.warning("Microsoft 365: tenant discovery failed at %s", self._client.authority_host)
            raise errors.TenantNotFound("No OpenID configuration for this tenant at %s."
                                        % self._client.authority_host) from None
        return False


def _http_status_in(text):
    match = re.search(r'\b([45]\d\d)\b', text)
    return int(match.group(1)) if match else None


def _single_values(params):
    """Callback parameters as ``{name: str}`` (frameworks may give lists for repeated keys)."""
    return {key: (value[0] if isinstance(value, (list, tuple)) and value else value)
            for key, value in dict(params or {}).items()}


def _decode_client_info(raw):
    """Decode MSAL's ``client_info`` (base64url JSON ``{"uid", "utid"}``); ``{}`` when absent or garbled."""
    if not raw:
        return {}
    try:
        decoded = json.loads(base64.urlsafe_b64decode(raw + '=' * (-len(raw) % 4)))
    except (ValueError, TypeError, binascii.Error):
        return {}
    return decoded if isinstance(decoded, dict) else {}
