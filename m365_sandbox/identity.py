"""Room: identity. Plays ``login.microsoftonline.com`` (identity platform v2.0), docs/microsoft-graph.md §1.

Endpoints (``{tenant}`` = tenant GUID, verified domain, ``organizations`` or ``common``):

* ``GET  /{tenant}/v2.0/.well-known/openid-configuration`` and ``GET /{tenant}/discovery/v2.0/keys``
* ``GET  /{tenant}/v2.0/adminconsent``: admin consent (sign-in page, then consent page)
* ``GET  /{tenant}/oauth2/v2.0/authorize``: authorization code (+PKCE) with a plain HTML sign-in form
* ``POST /{tenant}/login``: where every page of this room posts (hidden ``tx`` + the page's fields)
* ``POST /{tenant}/oauth2/v2.0/token``: ``authorization_code`` and ``refresh_token`` grants

The HTML pages need no JavaScript: the sign-in form posts ``tx``, ``login`` and ``passwd``; the MFA page posts
``tx`` and ``mfa=approve``; the consent page posts ``tx`` and ``consent=accept`` or ``consent=cancel``.

Settings read (``state.settings``): ``aad_scope_echo`` (``short``, the default, or ``as_requested``),
``aad_mfa_error`` (``invalid_grant``, the default, or ``interaction_required``), ``access_token_lifetime_s``
(3600) or, when ``access_token_lifetime_random`` is true, a random 3600-5400 s (docs/microsoft-graph.md §1.7),
``admin_consent_cancel_error`` (``access_denied``, the default, or ``consent_required`` as in the docs' example).
Faults read (``state.faults``): ``token_endpoint`` = ``{"status": 503, "times": N}`` (``times`` absent: always).
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import html
import json
import secrets
from functools import partial
from urllib.parse import parse_qsl, unquote, urlencode

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from .errors import aad_error
from .state import AuthorizationCode, Consent, SandboxState, User, new_opaque

GRAPH_RESOURCE = "https://graph.microsoft.com/"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
OIDC_SCOPES = ("openid", "profile", "email", "offline_access")
META_TENANTS = ("common", "organizations")
KNOWN_GRAPH_SCOPES = ("User.Read", "User.ReadBasic.All", "Mail.ReadBasic", "Mail.Read", "Mail.ReadWrite",
                      "Mail.Send", "Mail.Read.Shared", "Mail.ReadWrite.Shared", "Mail.Send.Shared")
CODE_LIFETIME = dt.timedelta(minutes=10)
RT_INACTIVITY = dt.timedelta(days=90)
ID_TOKEN_LIFETIME = dt.timedelta(hours=1)

# ----------------------------------------------------------------------------------------------------
# Signing key (one per process; JWKS publishes it)
# ----------------------------------------------------------------------------------------------------

_KEY: dict = {}


def signing_key() -> dict:
    """``{"private_pem", "kid", "jwk"}`` of the process's RSA key, created on first use."""
    if not _KEY:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public_der = key.public_key().public_bytes(serialization.Encoding.DER,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
        kid = base64.urlsafe_b64encode(hashlib.sha1(public_der).digest()).decode().rstrip("=")
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        jwk.update({"kid": kid, "use": "sig", "x5t": kid})
        _KEY.update(kid=kid, jwk=jwk, private_pem=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return _KEY


# ----------------------------------------------------------------------------------------------------
# Scopes
# ----------------------------------------------------------------------------------------------------

def short_scope(scope: str) -> str:
    """``https://graph.microsoft.com/Mail.Read`` → ``Mail.Read``; OIDC scopes lower-case; ``.default`` kept."""
    low = scope.lower()
    for prefix in (GRAPH_RESOURCE, GRAPH_APP_ID + "/", "https://graph.microsoft.com"):
        if low.startswith(prefix):
            scope = scope[len(prefix):].lstrip("/") or ".default"
            low = scope.lower()
            break
    if low in OIDC_SCOPES or low == ".default":
        return low
    for known in KNOWN_GRAPH_SCOPES:
        if known.lower() == low:
            return known
    return scope


def foreign_resource(scope: str) -> bool:
    """A scope for another resource than Graph (``https://outlook.office.com/...``)."""
    return "://" in scope and not scope.lower().startswith("https://graph.microsoft.com")


def split_scopes(raw: str | None) -> list[str]:
    return [s for s in (raw or "").split(" ") if s]


def graph_scopes(scopes: list[str], app) -> set[str]:
    """The Graph scopes of a request, short names; ``.default`` means the app's configured permissions."""
    result = set()
    for scope in scopes:
        short = short_scope(scope)
        if short == ".default":
            result.update(app.api_permissions)
        elif short not in OIDC_SCOPES:
            result.add(short)
    return result


def echo_scopes(state: SandboxState, requested: list[str], granted: set[str]) -> str:
    """The token response's ``scope``: requested Graph scopes (short by default), then the OIDC ones."""
    as_requested = state.settings.get("aad_scope_echo") == "as_requested"
    out: list[str] = []
    for scope in requested:
        short = short_scope(scope)
        if short == ".default":
            out.extend(sorted(granted))
        elif short not in OIDC_SCOPES:
            out.append(scope if as_requested else short)
    if not out:
        out.extend(sorted(granted))
    out.extend(s for s in ("openid", "profile", "email", "offline_access")
               if s in {short_scope(r) for r in requested})
    return " ".join(dict.fromkeys(out))


# ----------------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------------

async def form_of(request: Request) -> dict:
    """The ``application/x-www-form-urlencoded`` body as a dict (stdlib decoding; no python-multipart)."""
    return dict(parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True))


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def resolve_tenant(state: SandboxState, ref: str):
    """``(tenant_or_None, ok)``: ``ok`` is False for an unknown tenant; meta tenants give ``(None, True)``."""
    if ref.lower() in META_TENANTS:
        return None, True
    tenant = state.tenant_by_ref(ref)
    return tenant, tenant is not None


def tenant_not_found(ref: str) -> JSONResponse:
    return aad_error("invalid_request", 90002,
                     f"Tenant '{ref}' not found. Check to make sure you have the correct tenant ID and are "
                     "signing into the correct cloud. Check with your subscription administrator, this may "
                     "happen if there are no active subscriptions for the tenant.")


def app_for(state: SandboxState, client_id: str, tenant_id: str | None):
    """The app registration usable in ``tenant_id`` (multi-tenant apps everywhere), or None."""
    app = state.apps.get(client_id or "")
    if app and (tenant_id is None or app.multi_tenant or app.tenant_id == tenant_id):
        return app
    return None


def b64url_json(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def aad_text(aadsts: int, text: str) -> str:
    """An ``error_description`` for a redirect: ``AADSTSnnn: text`` plus the trace lines AAD appends."""
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    return (f"AADSTS{aadsts}: {text}\r\nTrace ID: {new_opaque('', 12)}\r\n"
            f"Correlation ID: {new_opaque('', 12)}\r\nTimestamp: {now}")


# ----------------------------------------------------------------------------------------------------
# HTML pages (no JavaScript needed; everything escaped)
# ----------------------------------------------------------------------------------------------------

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:32em;margin:3em auto}}input{{display:block;margin:.4em 0}}
.err{{color:#a00}}</style></head><body><h1>{title}</h1>{body}</body></html>"""


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(PAGE.format(title=html.escape(title), body=body), status_code=status)


def error_page(aadsts: int, text: str, status: int = 400) -> HTMLResponse:
    """AAD's own error page: shown when no redirect can be trusted (unknown app, reply URL mismatch...)."""
    return page("Sign in: error", f'<p class="err" id="error">AADSTS{aadsts}: {html.escape(text)}</p>', status)


def form_page(title: str, tenant_ref: str, tx: str, inner: str, note: str = "") -> HTMLResponse:
    action = html.escape(f"/{tenant_ref}/login")
    err = f'<p class="err" id="error">{html.escape(note)}</p>' if note else ""
    return page(title, f'{err}<form method="post" action="{action}">'
                       f'<input type="hidden" name="tx" value="{html.escape(tx)}">{inner}</form>')


def sign_in_page(tx: dict, note: str = "", app_name: str = "") -> HTMLResponse:
    hint = html.escape(tx["params"].get("login_hint", ""))
    inner = ((f"<p>to continue to {html.escape(app_name)}</p>" if app_name else "") +
             f'<label>Email<input type="email" name="login" value="{hint}" autofocus></label>'
             '<label>Password<input type="password" name="passwd"></label>'
             '<button type="submit">Sign in</button>')
    return form_page("Sign in to your account", tx["tenant_ref"], tx["id"], inner, note)


def mfa_page(tx: dict) -> HTMLResponse:
    inner = ('<p>Approve the sign-in request (sandbox: no second device needed).</p>'
             '<button type="submit" name="mfa" value="approve">Approve</button>')
    title = "More information required" if tx.get("mfa_enroll") else "Approve sign in request"
    return form_page(title, tx["tenant_ref"], tx["id"], inner)


def consent_page(state: SandboxState, tx: dict) -> HTMLResponse:
    app = state.apps[tx["params"]["client_id"]]
    items = "".join(f"<li>{html.escape(s)}</li>" for s in sorted(tx["scopes"]))
    inner = (f'<p>{html.escape(app.display_name)} ({html.escape(app.client_id)}) asks for these permissions, '
             f'for everyone in your organization:</p><ul id="scopes">{items}</ul>'
             '<button type="submit" name="consent" value="accept">Accept</button>'
             '<button type="submit" name="consent" value="cancel">Cancel</button>')
    return form_page("Permissions requested", tx["tenant_ref"], tx["id"], inner)


def redirect_to(redirect_uri: str, params: dict, mode: str = "query") -> Response:
    """Deliver an authorization response: 302 with a query or fragment, or an auto-posting form."""
    params = {k: v for k, v in params.items() if v is not None}
    if mode == "form_post":
        fields = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(str(v))}">'
                         for k, v in params.items())
        return HTMLResponse(
            f'<!doctype html><html><body onload="document.forms[0].submit()"><form method="post" '
            f'action="{html.escape(redirect_uri)}">{fields}<noscript><button type="submit">Continue</button>'
            f'</noscript></form></body></html>')
    sep = "#" if mode == "fragment" else ("&" if "?" in redirect_uri else "?")
    return RedirectResponse(redirect_uri + sep + urlencode(params), status_code=302)


# ----------------------------------------------------------------------------------------------------
# Discovery
# ----------------------------------------------------------------------------------------------------

def routes(state: SandboxState):
    async def discovery(request: Request):
        ref = request.path_params["tenant"]
        tenant, ok = resolve_tenant(state, ref)
        if not ok:
            return tenant_not_found(ref)
        base = base_url(request)
        seg = tenant.id if tenant else ref.lower()
        issuer_tid = tenant.id if tenant else "{tenantid}"
        graph = state.extra.get("urls", {}).get("graph_base_url", "https://graph.microsoft.com/v1.0")
        return JSONResponse({
            "token_endpoint": f"{base}/{seg}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                      "client_secret_basic"],
            "jwks_uri": f"{base}/{seg}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/{issuer_tid}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": graph.rsplit("/v1.0", 1)[0] + "/oidc/userinfo",
            "authorization_endpoint": f"{base}/{seg}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/{seg}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/{seg}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name",
                                 "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time",
                                 "acr", "nonce", "preferred_username", "name", "tid", "ver", "at_hash",
                                 "c_hash", "email"],
            "kerberos_endpoint": f"{base}/{seg}/kerberos",
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        })

    async def keys(request: Request):
        ref = request.path_params["tenant"]
        if not resolve_tenant(state, ref)[1]:
            return tenant_not_found(ref)
        return JSONResponse({"keys": [signing_key()["jwk"]]})

    return [
        Route("/{tenant}/v2.0/.well-known/openid-configuration", discovery, methods=["GET"]),
        Route("/{tenant}/discovery/v2.0/keys", keys, methods=["GET"]),
        Route("/{tenant}/v2.0/adminconsent", partial(admin_consent, state), methods=["GET"]),
        Route("/{tenant}/oauth2/v2.0/authorize", partial(authorize, state), methods=["GET"]),
        Route("/{tenant}/login", partial(login_post, state), methods=["POST"]),
        Route("/{tenant}/oauth2/v2.0/token", partial(token, state), methods=["POST"]),
    ]


# ----------------------------------------------------------------------------------------------------
# Interactive legs: admin consent and authorize share one "transaction" (state.extra["login_tx"])
# ----------------------------------------------------------------------------------------------------

def new_tx(state: SandboxState, kind: str, tenant_ref: str, tenant, params: dict, scopes: set[str]) -> dict:
    tx = {"id": new_opaque("tx.", 18), "kind": kind, "tenant_ref": tenant_ref,
          "tenant_id": tenant.id if tenant else None, "params": params, "scopes": scopes,
          "user_id": None, "mfa_done": False}
    with state.lock:
        state.extra.setdefault("login_tx", {})[tx["id"]] = tx
    return tx


def check_client_and_reply(state: SandboxState, ref: str, params: dict):
    """``(tenant, error_page)``: AAD's no-redirect errors are an unknown tenant (90002), an unknown app
    (700016) and a reply URL mismatch (50011); ``error_page`` is None when all is fine."""
    tenant, ok = resolve_tenant(state, ref)
    if not ok:
        return None, error_page(90002, f"Tenant '{ref}' not found.")
    client_id = params.get("client_id", "")
    app = app_for(state, client_id, tenant.id if tenant else None)
    if app is None:
        where = tenant.id if tenant else "the directory"
        return tenant, error_page(
            700016, f"Application with identifier '{client_id}' was not found in the directory '{where}'. This "
                    "can happen if the application has not been installed by the administrator of the tenant "
                    "or consented to by any user in the tenant.")
    redirect_uri = params.get("redirect_uri", "")
    if redirect_uri not in app.redirect_uris:
        return tenant, error_page(
            50011, f"The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs "
                   f"configured for the application '{client_id}'. Make sure the redirect URI sent in the "
                   "request matches one added to your application in the Azure portal.")
    return tenant, None


async def admin_consent(state: SandboxState, request: Request):
    ref = request.path_params["tenant"]
    params = dict(request.query_params)
    if ref.lower() == "common":
        return error_page(90130, "The 'common' endpoint cannot be used for admin consent. Use a tenant "
                                 "identifier, a verified domain or 'organizations'.")
    tenant, bad = check_client_and_reply(state, ref, params)
    if bad:
        return bad
    base = {"admin_consent": "True", "state": params.get("state")}
    scopes = split_scopes(params.get("scope"))
    if not scopes:
        return redirect_to(params["redirect_uri"], {**base, "error": "invalid_request", "error_description":
                           aad_text(900144, "The request body must contain the following parameter: 'scope'.")})
    if any(foreign_resource(s) for s in scopes):
        return redirect_to(params["redirect_uri"], {**base, "error": "invalid_request", "error_description":
                           aad_text(70011, "The provided value for the input parameter 'scope' is not valid.")})
    app = state.apps[params["client_id"]]
    return sign_in_page(new_tx(state, "adminconsent", ref, tenant, params, graph_scopes(scopes, app)),
                        app_name=app.display_name)


async def authorize(state: SandboxState, request: Request):
    ref = request.path_params["tenant"]
    params = dict(request.query_params)
    tenant, bad = check_client_and_reply(state, ref, params)
    if bad:
        return bad
    mode = params.get("response_mode", "query")

    def fail(error, aadsts, text):
        return redirect_to(params["redirect_uri"], {"error": error, "error_description": aad_text(aadsts, text),
                                                    "state": params.get("state")},
                           mode if mode in ("query", "fragment", "form_post") else "query")

    if mode not in ("query", "fragment", "form_post"):
        return fail("invalid_request", 900144, f"The provided value '{mode}' for 'response_mode' is not valid.")
    if params.get("response_type") != "code":
        return fail("unsupported_response_type", 70005,
                    "The provided value for the input parameter 'response_type' is not allowed for this "
                    "request. Expected value: 'code'.")
    scopes = split_scopes(params.get("scope"))
    if not scopes:
        return fail("invalid_request", 900144, "The request body must contain the following parameter: 'scope'.")
    if any(foreign_resource(s) for s in scopes):
        return fail("invalid_scope", 70011, "The provided value for the input parameter 'scope' is not valid.")
    method = params.get("code_challenge_method")
    if params.get("code_challenge") and (method or "plain") not in ("S256", "plain"):
        return fail("invalid_request", 501491, "Invalid code_challenge_method parameter.")
    if params.get("prompt") == "none":
        return fail("login_required", 50058, "A silent sign-in request was sent but no user is signed in.")
    app = state.apps[params["client_id"]]
    return sign_in_page(new_tx(state, "authorize", ref, tenant, params, graph_scopes(scopes, app)),
                        app_name=app.display_name)


async def login_post(state: SandboxState, request: Request):
    """Every page of this room posts here; ``tx`` says which transaction and therefore which step."""
    form = await form_of(request)
    with state.lock:
        tx = state.extra.get("login_tx", {}).get(form.get("tx", ""))
    if tx is None:
        return error_page(90014, "The sign-in session has expired or is unknown. Start again from the app.")
    if tx["user_id"] is None:
        user = find_user(state, tx, form.get("login", ""))
        if user is None:
            return sign_in_page(tx, "AADSTS50034: The user account does not exist in this directory.")
        if user.password is None or not secrets.compare_digest(user.password, form.get("passwd", "")):
            return sign_in_page(tx, "AADSTS50126: Error validating credentials due to invalid username or "
                                    "password.")
        if user.disabled:
            return error_page(50057, "The user account is disabled.", status=200)
        if user.ca_blocked:
            return error_page(53003, "Access has been blocked by Conditional Access policies. The access "
                                     "policy does not allow token issuance.", status=200)
        tx["user_id"] = user.id
        tx["tenant_id"] = user.tenant_id
        tx["mfa_enroll"] = user.mfa_enrollment_required
        if user.mfa_required or user.mfa_enrollment_required:
            return mfa_page(tx)
        return after_sign_in(state, tx, None)
    user = state.users[tx["user_id"]]
    if not tx["mfa_done"] and (user.mfa_required or user.mfa_enrollment_required):
        if form.get("mfa") != "approve":
            return mfa_page(tx)
        tx["mfa_done"] = True
        with state.lock:
            user.mfa_enrollment_required = False    # registering for MFA is what the enrolment page does
        return after_sign_in(state, tx, None)
    return after_sign_in(state, tx, form.get("consent"))


def find_user(state: SandboxState, tx: dict, login: str) -> User | None:
    user = state.user_by_ref(login.strip(), tenant_id=tx["tenant_id"])
    if user is None or user.kind != "user":
        return None
    return user


def after_sign_in(state: SandboxState, tx: dict, consent_answer: str | None) -> Response:
    """Signed in (and MFA done): consent if needed, then the redirect."""
    params, user = tx["params"], state.users[tx["user_id"]]
    client_id, redirect_uri = params["client_id"], params["redirect_uri"]
    if app_for(state, client_id, user.tenant_id) is None:
        return error_page(700016, f"Application with identifier '{client_id}' was not found in the directory "
                                  f"'{user.tenant_id}'.")
    admin_leg = tx["kind"] == "adminconsent"
    mode = "query" if admin_leg else params.get("response_mode", "query")
    base = {"admin_consent": "True"} if admin_leg else {}
    base["state"] = params.get("state")

    def done(extra: dict) -> Response:
        with state.lock:
            state.extra.get("login_tx", {}).pop(tx["id"], None)
        return redirect_to(redirect_uri, {**base, **extra}, mode)

    consent = state.consents.get((user.tenant_id, client_id))
    covered = consent is not None and tx["scopes"] <= consent.scopes
    wants_page = admin_leg or not covered or (params.get("prompt") == "consent" and user.is_tenant_admin)
    if wants_page:
        if not user.is_tenant_admin:
            if admin_leg:
                return done({"error": "consent_required", "error_description": aad_text(
                    90094, "The grant requires admin permission. An administrator of the tenant must sign "
                           "in to grant consent for this application.")})
            return done({"error": "consent_required", "error_description": aad_text(
                65001, f"The user or administrator has not consented to use the application with ID "
                       f"'{client_id}'. Send an interactive authorization request for this user and "
                       "resource.")})
        if consent_answer is None:
            return consent_page(state, tx)
        if consent_answer != "accept":
            # access_denied (RFC 6749); the admin-consent docs' only error example says consent_required
            error = state.settings.get("admin_consent_cancel_error", "access_denied") if admin_leg \
                else "access_denied"
            return done({"error": error, "error_description": aad_text(
                65004, "User declined to consent to access the app.")})
        with state.lock:
            if consent is None:
                consent = Consent(tenant_id=user.tenant_id, client_id=client_id, scopes=set(),
                                  granted_at=state.now())
                state.consents[(user.tenant_id, client_id)] = consent
            consent.scopes |= tx["scopes"]
            consent.granted_at = state.now()
    if admin_leg:
        return done({"tenant": user.tenant_id,
                     "scope": " ".join(GRAPH_RESOURCE + s for s in sorted(tx["scopes"]))})
    code = AuthorizationCode(
        code=new_opaque("1.SBX.code.", 48), client_id=client_id, tenant_id=user.tenant_id, user_id=user.id,
        redirect_uri=redirect_uri, scopes=split_scopes(params.get("scope")),
        code_challenge=params.get("code_challenge"),
        code_challenge_method=(params.get("code_challenge_method") or "plain") if params.get(
            "code_challenge") else None,
        nonce=params.get("nonce"), client_info_requested=params.get("client_info") == "1",
        expires_at=state.now() + CODE_LIFETIME, mfa=tx["mfa_done"])
    with state.lock:
        state.auth_codes[code.code] = code
    return done({"code": code.code, "session_state": new_opaque("", 12)})


# ----------------------------------------------------------------------------------------------------
# Token endpoint
# ----------------------------------------------------------------------------------------------------

class TokenError(Exception):
    def __init__(self, response: Response):
        super().__init__(response.status_code)
        self.response = response


def invalid_grant(aadsts: int, text: str, **kw) -> TokenError:
    return TokenError(aad_error("invalid_grant", aadsts, text, **kw))


def missing(param: str) -> TokenError:
    return TokenError(aad_error("invalid_request", 900144,
                                f"The request body must contain the following parameter: '{param}'."))


def fault_response(state: SandboxState) -> Response | None:
    """``state.faults["token_endpoint"]``: answer with that 5xx (MSAL raises on it)."""
    with state.lock:
        fault = state.faults.get("token_endpoint")
        if not fault:
            return None
        if fault.get("times") is not None:
            fault["times"] -= 1
            if fault["times"] <= 0:
                state.faults.pop("token_endpoint")
    status = int(fault.get("status", 503))
    resp = aad_error("temporarily_unavailable", 90033, "A transient error has occurred. Please try again.",
                     status=status)
    if fault.get("retry_after") is not None:
        resp.headers["Retry-After"] = str(fault["retry_after"])
    return resp


def authenticate_client(state: SandboxState, request: Request, form: dict, tenant):
    """The app, or :class:`TokenError` (700016, 7000218, 7000222, 7000215)."""
    client_id, secret = form.get("client_id"), form.get("client_secret")
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("basic "):
        try:
            user, _, pwd = base64.b64decode(auth[6:].strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            user = pwd = ""
        client_id, secret = client_id or unquote(user), secret or unquote(pwd)
    if not client_id:
        raise missing("client_id")
    app = app_for(state, client_id, tenant.id if tenant else None)
    if app is None:
        where = tenant.id if tenant else "the directory"
        raise TokenError(aad_error(
            "unauthorized_client", 700016,
            f"Application with identifier '{client_id}' was not found in the directory '{where}'. This can "
            "happen if the application has not been installed by the administrator of the tenant or consented "
            "to by any user in the tenant. You may have sent your authentication request to the wrong tenant."))
    if not secret:
        if form.get("client_assertion"):
            raise TokenError(aad_error("invalid_client", 700027, "Client assertion failed signature "
                                       "validation (the sandbox registers no certificates).", status=401))
        raise TokenError(aad_error("invalid_client", 7000218, "The request body must contain the following "
                                   "parameter: 'client_assertion' or 'client_secret'.", status=401))
    if secret in app.expired_secrets:
        raise TokenError(aad_error("invalid_client", 7000222,
                                   f"The provided client secret keys for app '{client_id}' are expired. Visit "
                                   "the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret,"
                                   " or consider using certificate credentials for added security: "
                                   "https://aka.ms/certCreds.", status=401))
    if not any(secrets.compare_digest(secret, s) for s in app.secrets):
        raise TokenError(aad_error("invalid_client", 7000215,
                                   "Invalid client secret provided. Ensure the secret being sent in the request "
                                   "is the client secret value, not the client secret ID, for a secret added to "
                                   f"app '{client_id}'.", status=401))
    return app


async def token(state: SandboxState, request: Request):
    form = await form_of(request)
    with state.lock:  # Every request counts, answered or not: tests prove "no retry storm" with it.
        counts = state.extra.setdefault("token_requests", {})
        grant_type = form.get("grant_type") or "?"
        counts[grant_type] = counts.get(grant_type, 0) + 1
    fault = fault_response(state)
    if fault is not None:
        return fault
    ref = request.path_params["tenant"]
    tenant, ok = resolve_tenant(state, ref)
    if not ok:
        return tenant_not_found(ref)
    try:
        app = authenticate_client(state, request, form, tenant)
        grant = form.get("grant_type")
        if grant == "authorization_code":
            return redeem_code(state, app, form, tenant, base_url(request))
        if grant == "refresh_token":
            return redeem_refresh_token(state, app, form, tenant, base_url(request))
        if not grant:
            raise missing("grant_type")
        raise TokenError(aad_error("unsupported_grant_type", 70003,
                                   f"The app requested an unsupported grant type '{grant}'."))
    except TokenError as exc:
        return exc.response


def check_user(state: SandboxState, user: User | None, rt=None) -> None:
    """Account-level reasons to refuse a token (50057, 53003, 50079, 50076)."""
    if user is None or user.disabled:
        raise invalid_grant(50057, "The user account is disabled. The user object in Active Directory backing "
                                   "this account has been disabled. An admin can re-enable this account through "
                                   "PowerShell")
    if user.ca_blocked:
        raise invalid_grant(53003, "Access has been blocked by Conditional Access policies. The access policy "
                                   "does not allow token issuance.")
    mfa_error = state.settings.get("aad_mfa_error", "invalid_grant")
    claims = json.dumps({"access_token": {"capolids": {"essential": True, "values": [
        "sbx-mfa-policy-00000000-0000-0000-0000-000000000001"]}}}, separators=(",", ":"))
    if user.mfa_enrollment_required:
        raise TokenError(aad_error(mfa_error, 50079, "Due to a configuration change made by your administrator, "
                                   "or because you moved to a new location, you must enroll in multi-factor "
                                   f"authentication to access '{GRAPH_APP_ID}'.",
                                   suberror="basic_action", claims=claims))
    if user.mfa_required and rt is not None and not rt.mfa:
        raise TokenError(aad_error(mfa_error, 50076, "Due to a configuration change made by your administrator, "
                                   "or because you moved to a new location, you must use multi-factor "
                                   f"authentication to access '{GRAPH_APP_ID}'.",
                                   suberror="basic_action", claims=claims))


def check_consent(state: SandboxState, app, tenant_id: str, wanted: set[str]) -> None:
    consent = state.consents.get((tenant_id, app.client_id))
    if consent is None or not wanted <= consent.scopes:
        raise invalid_grant(65001, f"The user or administrator has not consented to use the application with "
                                   f"ID '{app.client_id}' named '{app.display_name}'. Send an interactive "
                                   "authorization request for this user and resource.",
                            suberror="consent_required")


def lookup_grant(store: dict, form: dict, param: str, app, tenant):
    """The code or refresh token named by ``form[param]``, issued to ``app`` in the authority's tenant."""
    if not form.get(param):
        raise missing(param)
    grant = store.get(form[param])
    if grant is None or grant.client_id != app.client_id or (tenant is not None and tenant.id != grant.tenant_id):
        raise invalid_grant(9002313, "Invalid request. Request is malformed or invalid.")
    return grant


def redeem_code(state: SandboxState, app, form: dict, tenant, issuer_base: str):
    with state.lock:
        code = lookup_grant(state.auth_codes, form, "code", app, tenant)
        if code.redeemed:
            raise invalid_grant(54005, "OAuth2 Authorization code was already redeemed, please retry with a new "
                                       "valid code or use an existing refresh token.")
        code.redeemed = True
        if code.expires_at <= state.now():
            raise invalid_grant(70008, "The provided authorization code or refresh token has expired due to "
                                       "inactivity. Send a new interactive authorization request for this user "
                                       "and resource.")
        if form.get("redirect_uri") != code.redirect_uri:
            raise invalid_grant(500112, f"The reply address '{form.get('redirect_uri')}' does not match the "
                                        f"reply address '{code.redirect_uri}' provided when requesting "
                                        "Authorization code.")
        if code.code_challenge and not pkce_ok(code, form.get("code_verifier", "")):
            raise invalid_grant(501481, "The Code_Verifier does not match the code_challenge supplied in the "
                                        "authorization request.")
        user = state.users.get(code.user_id)
        check_user(state, user)
        granted = graph_scopes(code.scopes, app)
        check_consent(state, app, code.tenant_id, granted)
        requested = split_scopes(form.get("scope")) or code.scopes
        return token_response(state, app, user, requested, granted,
                              oidc=set(map(short_scope, code.scopes)), nonce=code.nonce,
                              client_info=code.client_info_requested or form.get("client_info") == "1",
                              mfa=code.mfa, issuer_base=issuer_base)


def pkce_ok(code: AuthorizationCode, verifier: str) -> bool:
    if code.code_challenge_method == "S256":
        digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
        expected = base64.urlsafe_b64encode(digest).decode().rstrip("=")
    else:
        expected = verifier
    return bool(verifier) and secrets.compare_digest(expected, code.code_challenge)


def redeem_refresh_token(state: SandboxState, app, form: dict, tenant, issuer_base: str):
    with state.lock:
        rt = lookup_grant(state.refresh_tokens, form, "refresh_token", app, tenant)
        now, user = state.now(), state.users.get(rt.user_id)
        stamp = "%Y-%m-%dT%H:%M:%S.0000000Z"
        if rt.revoked:
            raise invalid_grant(70008, "The refresh token has expired due to it being revoked. The token was "
                                       f"issued on {rt.issued_at.strftime(stamp)} and was revoked by the "
                                       "administrator (StsRefreshTokensValidFrom).")
        valid_from = user.sessions_valid_from if user else None
        if valid_from is not None and rt.issued_at < valid_from:
            reason = state.extra.get("sessions_revoked_reason", {}).get(rt.user_id, "password_reset")
            if reason == "revoke_sessions":
                raise invalid_grant(70008, "The refresh token has expired due to it being revoked. The token "
                                           f"was issued on {rt.issued_at.strftime(stamp)} and the "
                                           f"StsRefreshTokensValidFrom is {valid_from.strftime(stamp)}.")
            raise invalid_grant(50173, "The provided grant has expired due to it being revoked, a fresh auth "
                                       "token is needed. The user might have changed or reset their password. "
                                       f"The grant was issued on '{rt.issued_at.strftime(stamp)}' and the "
                                       "TokensValidFrom date (before which tokens are not valid) for this user "
                                       f"is '{valid_from.strftime(stamp)}'.")
        if now - rt.last_used_at > RT_INACTIVITY:
            raise invalid_grant(700082, "The refresh token has expired due to inactivity. The token was issued "
                                        f"on {rt.issued_at.strftime(stamp)} and was inactive for 90.00:00:00.",
                                suberror="bad_token")
        check_user(state, user, rt)
        requested = split_scopes(form.get("scope"))
        granted = graph_scopes(requested, app) if requested else {
            s for s in rt.scopes if s not in OIDC_SCOPES}
        check_consent(state, app, rt.tenant_id, granted)
        rt.last_used_at = now
        oidc = {short_scope(s) for s in requested} if requested else set(rt.scopes)
        return token_response(state, app, user, requested or sorted(rt.scopes), granted, oidc=oidc,
                              nonce=None, client_info=form.get("client_info") == "1", mfa=rt.mfa,
                              issuer_base=issuer_base)


def token_response(state: SandboxState, app, user: User, requested: list[str], granted: set[str], *,
                   oidc: set[str], nonce: str | None, client_info: bool, mfa: bool,
                   issuer_base: str) -> JSONResponse:
    """Mint tokens (``state.issue_tokens``) and shape AAD's success JSON (docs/microsoft-graph.md §1.4)."""
    lifetime = None
    if state.settings.get("access_token_lifetime_random"):      # §1.7: 60-90 min, 75 on average
        lifetime = secrets.SystemRandom().randint(3600, 5400)
    access, refresh = state.issue_tokens(app.client_id, user.id, granted | (oidc & set(OIDC_SCOPES)), lifetime)
    refresh.mfa = mfa
    lifetime = int((access.expires_at - state.now()).total_seconds())
    body = {"token_type": "Bearer", "scope": echo_scopes(state, requested, granted), "expires_in": lifetime,
            "ext_expires_in": lifetime, "access_token": access.token}
    if "offline_access" in oidc:
        body["refresh_token"] = refresh.token
    else:
        state.refresh_tokens.pop(refresh.token, None)
    if "openid" in oidc:
        body["id_token"] = id_token(state, app, user, nonce, "profile" in oidc, issuer_base)
    if client_info:
        body["client_info"] = b64url_json({"uid": user.id, "utid": user.tenant_id})
    return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


def id_token(state: SandboxState, app, user: User, nonce: str | None, with_profile: bool, base: str) -> str:
    """An RS256 id_token (v2.0 claims, docs/microsoft-graph.md §1.5), signed with the key the JWKS publishes."""
    now = state.now()
    claims = {
        "aud": app.client_id, "iss": f"{base}/{user.tenant_id}/v2.0",
        "iat": int(now.timestamp()), "nbf": int(now.timestamp()),
        "exp": int((now + ID_TOKEN_LIFETIME).timestamp()),
        "tid": user.tenant_id,
        "sub": base64.urlsafe_b64encode(hashlib.sha256(f"{user.id}|{app.client_id}".encode()).digest())
        .decode().rstrip("=")[:43],
        "ver": "2.0", "aio": new_opaque("", 24), "rh": "0.SBX." + new_opaque("", 16),
        "sid": new_opaque("", 12), "uti": new_opaque("", 16),
    }
    if with_profile:
        claims.update(oid=user.id, preferred_username=user.upn, name=user.display_name)
    if nonce is not None:
        claims["nonce"] = nonce
    key = signing_key()
    return jwt.encode(claims, key["private_pem"], algorithm="RS256", headers={"kid": key["kid"], "typ": "JWT"})
