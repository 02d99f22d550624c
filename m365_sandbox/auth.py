"""Bearer-token and mailbox-right checks shared by every Graph room."""
from __future__ import annotations

from starlette.requests import Request

from .errors import GRAPH_WWW_AUTHENTICATE, graph_error
from .state import AccessToken, SandboxState, User


class GraphDenied(Exception):
    """Raised inside a Graph handler; ``response`` is the Graph error to send."""

    def __init__(self, response):
        super().__init__(response.status_code)
        self.response = response


READ_SCOPES_OWN = {"Mail.ReadBasic", "Mail.Read", "Mail.ReadWrite"}
READ_SCOPES_SHARED = {"Mail.Read.Shared", "Mail.ReadWrite.Shared"}
WRITE_SCOPES_OWN = {"Mail.ReadWrite"}
WRITE_SCOPES_SHARED = {"Mail.ReadWrite.Shared"}
SEND_SCOPES_OWN = {"Mail.Send"}
SEND_SCOPES_SHARED = {"Mail.Send.Shared"}


def require_token(state: SandboxState, request: Request) -> AccessToken:
    """The request's access token, or :class:`GraphDenied` with 401 ``InvalidAuthenticationToken``."""
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer "):
        raise GraphDenied(graph_error(401, "InvalidAuthenticationToken", "Access token is empty.",
                                      headers={"WWW-Authenticate": GRAPH_WWW_AUTHENTICATE}))
    token = state.access_tokens.get(header[7:].strip())
    if token is None:
        raise GraphDenied(graph_error(401, "InvalidAuthenticationToken",
                                      "CompactToken parsing failed with error code: 80049217",
                                      headers={"WWW-Authenticate": GRAPH_WWW_AUTHENTICATE}))
    user = state.users.get(token.user_id)
    if token.expires_at <= state.now():
        raise GraphDenied(graph_error(401, "InvalidAuthenticationToken",
                                      "Lifetime validation failed, the token is expired.",
                                      headers={"WWW-Authenticate": GRAPH_WWW_AUTHENTICATE}))
    if token.revoked or user is None or user.disabled:
        raise GraphDenied(graph_error(401, "InvalidAuthenticationToken",
                                      "Access token has expired or is not yet valid.",
                                      headers={"WWW-Authenticate": GRAPH_WWW_AUTHENTICATE}))
    return token


def resolve_mailbox(state: SandboxState, token: AccessToken, ref: str, need: str = "read") -> User:
    """The mailbox ``ref`` (``me``, object id or UPN) if ``token`` may use it for ``need``.

    ``need`` is ``read``, ``write`` or ``send``. Own mailbox: the plain ``Mail.*`` scopes. Another mailbox: a
    ``*.Shared`` scope **and** the Exchange right (Full Access to read/write; Send As or Send on Behalf to send).

    :raise GraphDenied: 404 for an unknown mailbox, 403 ``ErrorAccessDenied`` without scope or right.
    """
    if ref.lower() == "me":
        mailbox = state.users.get(token.user_id)
    else:
        mailbox = state.user_by_ref(ref, tenant_id=token.tenant_id)
    if mailbox is None:
        raise GraphDenied(graph_error(404, "ErrorInvalidUser",
                                      f"The requested user '{ref}' is invalid."))
    own = mailbox.id == token.user_id
    if own:
        wanted = {"read": READ_SCOPES_OWN | READ_SCOPES_SHARED, "write": WRITE_SCOPES_OWN | WRITE_SCOPES_SHARED,
                  "send": SEND_SCOPES_OWN | SEND_SCOPES_SHARED}[need]
        if not token.scopes & wanted:
            raise GraphDenied(graph_error(403, "ErrorAccessDenied",
                                          "Access is denied. Check credentials and try again."))
        return mailbox
    wanted = {"read": READ_SCOPES_SHARED, "write": WRITE_SCOPES_SHARED, "send": SEND_SCOPES_SHARED}[need]
    perm = state.permission(mailbox.id, token.user_id)
    has_right = bool(perm) and (perm.full_access if need in ("read", "write")
                                else (perm.send_as or perm.send_on_behalf))
    if not (token.scopes & wanted) or not has_right:
        if need == "send":
            raise GraphDenied(graph_error(
                403, "ErrorSendAsDenied",
                "The user account which was used to submit this request does not have the right to send mail "
                "on behalf of the specified sending account. Cannot submit message."))
        raise GraphDenied(graph_error(403, "ErrorAccessDenied",
                                      "Access is denied. Check credentials and try again."))
    return mailbox
