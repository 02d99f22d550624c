"""In-memory state of the Microsoft 365 sandbox.

One :class:`SandboxState` holds every tenant, app registration, user, mailbox, message, token and
subscription. The HTTP layers (identity, Graph mail, subscriptions, control, web page) read and write it
under :attr:`SandboxState.lock`. Nothing here speaks HTTP.

Time is ``state.now()``: real UTC time plus a control-plane offset, so tests can age refresh tokens by
"sandbox days" without sleeping.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import secrets
import threading
import uuid
from dataclasses import dataclass, field


def new_guid() -> str:
    return str(uuid.uuid4())


def new_opaque(prefix: str, nbytes: int = 32) -> str:
    """An opaque credential string, shaped like nothing a client could parse."""
    return f"{prefix}{secrets.token_urlsafe(nbytes)}"


def iso(ts: dt.datetime) -> str:
    """Graph's ISO 8601 UTC form: ``2024-05-01T10:00:00Z``."""
    return ts.astimezone(dt.timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------------------------------------------
# Directory: tenants, app registrations, users (a shared mailbox is a user object, as in Exchange Online)
# ------------------------------------------------------------------------------------------------------

# Room-private entries of ``SandboxState.extra`` that the state file keeps (see ``to_json``).
PERSISTED_EXTRA = ("mail_token_secret", "mail_delta_issued")


@dataclass
class Tenant:
    id: str
    domain: str                      # e.g. contoso.onmicrosoft.com
    display_name: str = "Contoso"


@dataclass
class AppRegistration:
    client_id: str
    tenant_id: str                   # home tenant; the app is multi-tenant when ``multi_tenant``
    display_name: str
    secrets: list[str]               # valid client secrets
    expired_secrets: list[str] = field(default_factory=list)   # AADSTS7000222
    redirect_uris: list[str] = field(default_factory=list)
    multi_tenant: bool = True
    api_permissions: list[str] = field(default_factory=list)  # configured Graph scopes (what ``.default`` means)


@dataclass
class User:
    id: str                          # object id (oid) == Graph user.id
    tenant_id: str
    upn: str                         # userPrincipalName == primary SMTP address here (lower-case)
    display_name: str
    kind: str = "user"               # "user" | "shared" (shared mailbox: no sign-in)
    password: str | None = None
    is_tenant_admin: bool = False
    disabled: bool = False           # AADSTS50057
    mfa_required: bool = False       # AADSTS50076
    mfa_enrollment_required: bool = False  # AADSTS50079
    ca_blocked: bool = False         # AADSTS53003
    sessions_valid_from: dt.datetime | None = None  # refresh tokens issued before this are revoked (50173)


@dataclass
class MailboxPermission:
    """Exchange mailbox rights granted to ``user_id`` on the mailbox of ``mailbox_id``."""
    mailbox_id: str
    user_id: str
    full_access: bool = False
    send_as: bool = False
    send_on_behalf: bool = False


# ------------------------------------------------------------------------------------------------------
# Consent and tokens
# ------------------------------------------------------------------------------------------------------

@dataclass
class Consent:
    """A tenant-wide (admin) consent of ``client_id`` for delegated ``scopes`` in ``tenant_id``."""
    tenant_id: str
    client_id: str
    scopes: set[str]
    granted_at: dt.datetime


@dataclass
class AuthorizationCode:
    code: str
    client_id: str
    tenant_id: str
    user_id: str
    redirect_uri: str
    scopes: list[str]
    code_challenge: str | None
    code_challenge_method: str | None
    nonce: str | None
    client_info_requested: bool
    expires_at: dt.datetime
    redeemed: bool = False
    mfa: bool = False                # the sign-in that produced the code passed MFA


@dataclass
class AccessToken:
    token: str
    client_id: str
    tenant_id: str
    user_id: str
    scopes: set[str]                 # short Graph names, e.g. {"User.Read", "Mail.Read.Shared"}
    expires_at: dt.datetime
    revoked: bool = False


@dataclass
class RefreshToken:
    token: str
    client_id: str
    tenant_id: str
    user_id: str
    scopes: set[str]
    issued_at: dt.datetime
    last_used_at: dt.datetime
    revoked: bool = False
    mfa: bool = False                # carries the MFA claim (AADSTS50076 when MFA becomes required otherwise)


# ------------------------------------------------------------------------------------------------------
# Mail
# ------------------------------------------------------------------------------------------------------

@dataclass
class Attachment:
    id: str
    name: str
    content_type: str
    content: bytes
    is_inline: bool = False
    content_id: str | None = None
    kind: str = "file"               # "file" | "item" | "reference"
    last_modified: dt.datetime | None = None


@dataclass
class Folder:
    id: str
    mailbox_id: str
    display_name: str
    well_known_name: str | None = None   # "inbox", "sentitems", "archive", ... (DEFAULT_FOLDERS)
    parent_id: str | None = None         # None: a child of the mailbox's root (msgfolderroot's parent)
    hidden: bool = False                 # isHidden: listed only with includeHiddenFolders=true


# Exchange's default folders, by the well-known names Graph takes in place of their ids (learn.microsoft.com
# "mailFolder resource type", Well-known folder names, the whole list): (name, display name, parent's well-known
# name, hidden). msgfolderroot ("Top of Information Store") holds the folders mail clients show, which
# ``GET …/mailFolders`` lists; Sync Issues holds Conflicts, Local Failures and Server Failures; the Finder
# (searchfolders, "also known as the Finder folder" in EWS's WellKnownFolderName) and Recoverable Items' Deletions
# sit outside it. Display names are those of an English mailbox; the well-known names work in any locale.
# Exchange creates Clutter and Scheduled when those features are first used; the sandbox's mailboxes have them all.
DEFAULT_FOLDERS = (
    ("msgfolderroot", "Top of Information Store", None, False),
    ("archive", "Archive", "msgfolderroot", False),
    ("clutter", "Clutter", "msgfolderroot", False),
    ("conversationhistory", "Conversation History", "msgfolderroot", False),
    ("deleteditems", "Deleted Items", "msgfolderroot", False),
    ("drafts", "Drafts", "msgfolderroot", False),
    ("inbox", "Inbox", "msgfolderroot", False),
    ("junkemail", "Junk Email", "msgfolderroot", False),
    ("outbox", "Outbox", "msgfolderroot", False),
    ("scheduled", "Scheduled", "msgfolderroot", False),
    ("sentitems", "Sent Items", "msgfolderroot", False),
    ("syncissues", "Sync Issues", "msgfolderroot", False),
    ("conflicts", "Conflicts", "syncissues", False),
    ("localfailures", "Local Failures", "syncissues", False),
    ("serverfailures", "Server Failures", "syncissues", False),
    ("searchfolders", "Finder", None, True),
    ("recoverableitemsdeletions", "Deletions", None, True),
)
WELL_KNOWN_NAMES = frozenset(name for name, *_rest in DEFAULT_FOLDERS)


@dataclass
class Message:
    id: str                          # the (mutable) REST id; changes when the message moves folder
    immutable_id: str                # stable while the message stays in its mailbox
    mailbox_id: str
    folder_id: str
    internet_message_id: str
    conversation_id: str
    subject: str
    body_content_type: str           # "html" | "text"
    body: str
    from_addr: dict                  # {"name": ..., "address": ...}
    sender_addr: dict
    to: list[dict]
    cc: list[dict] = field(default_factory=list)
    bcc: list[dict] = field(default_factory=list)
    reply_to: list[dict] = field(default_factory=list)
    received: dt.datetime | None = None
    sent: dt.datetime | None = None
    created: dt.datetime | None = None
    modified: dt.datetime | None = None
    is_read: bool = False
    is_draft: bool = False
    importance: str = "normal"
    in_reply_to: str | None = None   # internet message id of the parent
    references: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    change_key: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    categories: list[str] = field(default_factory=list)
    flag: dict | None = None         # {"flagStatus": "notFlagged" | "flagged" | "complete", ...}
    internet_headers: list[dict] = field(default_factory=list)   # [{"name", "value"}], only via $select
    conversation_index: str | None = None   # base64, Outlook's thread index


@dataclass
class Subscription:
    id: str
    client_id: str
    tenant_id: str
    creator_id: str                  # signed-in user's id (delegated)
    resource: str
    change_type: str
    notification_url: str
    lifecycle_notification_url: str | None
    expiration: dt.datetime
    client_state: str | None
    immutable_ids: bool = False
    latest_supported_tls_version: str = "v1_2"
    mailbox_id: str | None = None    # resolved target mailbox
    folder_id: str | None = None     # resolved target folder, None for the whole mailbox
    removed: bool = False
    last_reauthorized_at: dt.datetime | None = None
    last_patched_at: dt.datetime | None = None
    paused: bool = False             # delivery paused until the client reauthorizes


# ------------------------------------------------------------------------------------------------------
# The state
# ------------------------------------------------------------------------------------------------------

class SandboxState:
    """Everything the sandbox knows. Callers hold :attr:`lock` while they read-modify-write."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.clock_offset = dt.timedelta(0)
        self.reset()

    # --- lifecycle ------------------------------------------------------------------------------------

    def reset(self) -> None:
        with self.lock:
            self.clock_offset = dt.timedelta(0)
            self.tenants: dict[str, Tenant] = {}
            self.apps: dict[str, AppRegistration] = {}
            self.users: dict[str, User] = {}
            self.permissions: list[MailboxPermission] = []
            self.consents: dict[tuple[str, str], Consent] = {}
            self.auth_codes: dict[str, AuthorizationCode] = {}
            self.access_tokens: dict[str, AccessToken] = {}
            self.refresh_tokens: dict[str, RefreshToken] = {}
            self.folders: dict[str, Folder] = {}
            self._well_known: dict[tuple[str, str], str] = {}      # (mailbox id, well-known name) -> folder id
            self._mailbox_folders: dict[str, list[str]] = {}      # mailbox id -> its folder ids
            self.messages: dict[str, Message] = {}          # keyed by immutable_id
            self.subscriptions: dict[str, Subscription] = {}
            # Behaviour switches and injected faults; each room documents the keys it reads.
            self.settings: dict = {
                "shared_mailbox_subscriptions": "documented",   # "documented" (403) | "lenient"
                "allow_http_loopback_notification_urls": False,
                "access_token_lifetime_s": 3600,
            }
            self.faults: dict = {}
            self.extra: dict = {}            # room-private state (delta logs, delivery queues, counters)
            # Look-up indexes of user_by_ref and permission: (the container indexed, its size, the index).
            self._upn_index: tuple = (None, 0, {})
            self._permission_index: tuple = (None, 0, {})

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc) + self.clock_offset

    def advance_clock(self, seconds: float) -> None:
        with self.lock:
            self.clock_offset += dt.timedelta(seconds=seconds)

    # --- directory look-ups ---------------------------------------------------------------------------

    def tenant_by_ref(self, ref: str) -> Tenant | None:
        """A tenant by GUID or verified domain (case-insensitive)."""
        ref_l = ref.lower()
        for tenant in self.tenants.values():
            if tenant.id == ref_l or tenant.domain.lower() == ref_l:
                return tenant
        return None

    def user_by_ref(self, ref: str, tenant_id: str | None = None) -> User | None:
        """A user or shared mailbox by object id or UPN (case-insensitive). Every Graph request looks its mailbox
        up here (twice): through an index, not a scan of every user (1,000 mailboxes made it the sandbox's
        largest cost per request)."""
        ref_l = ref.lower()
        user = self.users.get(ref_l)
        if user is not None and (not tenant_id or user.tenant_id == tenant_id):
            return user
        return next((user for user in self._users_by_upn().get(ref_l, ())
                     if not tenant_id or user.tenant_id == tenant_id), None)

    def _users_by_upn(self) -> dict[str, list[User]]:
        """Lower-case UPN -> its users, in the order they were added; rebuilt when ``users`` was replaced or
        changed size behind :meth:`add_user`'s back (a state file, a test)."""
        users, size, index = self._upn_index
        if users is not self.users or size != len(self.users):
            index = {}
            for user in self.users.values():
                index.setdefault(user.upn.lower(), []).append(user)
            self._upn_index = (self.users, len(self.users), index)
        return index

    def permission(self, mailbox_id: str, user_id: str) -> MailboxPermission | None:
        perms, size, index = self._permission_index
        if perms is not self.permissions or size != len(self.permissions):
            index = {}
            for perm in self.permissions:
                index.setdefault((perm.mailbox_id, perm.user_id), perm)
            self._permission_index = (self.permissions, len(self.permissions), index)
        return index.get((mailbox_id, user_id))

    def folder_by_ref(self, mailbox_id: str, ref: str) -> Folder | None:
        """A folder by id or well-known name (``inbox``, ``archive``, ...; case-insensitive)."""
        folder = self.folders.get(ref)
        if folder is None:
            folder_id = self._well_known.get((mailbox_id, ref.lower()))
            folder = self.folders.get(folder_id) if folder_id else None
        return folder if folder is not None and folder.mailbox_id == mailbox_id else None

    def mailbox_folders(self, mailbox_id: str) -> list[Folder]:
        """Every folder of the mailbox, in the order they were added."""
        return [self.folders[fid] for fid in self._mailbox_folders.get(mailbox_id, ())]

    def add_folder(self, folder: Folder) -> Folder:
        """Add a folder (the one way to: it keeps the look-ups of ``folder_by_ref`` and ``mailbox_folders``)."""
        with self.lock:
            self.folders[folder.id] = folder
            self._mailbox_folders.setdefault(folder.mailbox_id, []).append(folder.id)
            if folder.well_known_name:
                self._well_known[(folder.mailbox_id, folder.well_known_name)] = folder.id
            return folder

    def add_default_folders(self, mailbox_id: str) -> None:
        """Give a mailbox the default folders (DEFAULT_FOLDERS) it lacks: a new mailbox, or one from a state file
        saved when mailboxes had only Inbox, Sent Items, Drafts and Deleted Items."""
        with self.lock:
            for name, display_name, parent_name, hidden in DEFAULT_FOLDERS:
                parent = self.folder_by_ref(mailbox_id, parent_name) if parent_name else None
                folder = self.folder_by_ref(mailbox_id, name)
                if folder is None:
                    self.add_folder(Folder(id=new_opaque("AAMkF", 30), mailbox_id=mailbox_id,
                                           display_name=display_name, well_known_name=name,
                                           parent_id=parent.id if parent else None, hidden=hidden))
                elif folder.parent_id is None and parent is not None:
                    folder.parent_id = parent.id

    # --- seeding helpers used by the control plane and tests -----------------------------------------

    def add_tenant(self, domain: str, display_name: str = "Contoso", tenant_id: str | None = None) -> Tenant:
        with self.lock:
            tenant = Tenant(id=tenant_id or new_guid(), domain=domain.lower(), display_name=display_name)
            self.tenants[tenant.id] = tenant
            return tenant

    def add_app(self, tenant_id: str, display_name: str, redirect_uris: list[str],
                client_id: str | None = None, secret: str | None = None) -> AppRegistration:
        with self.lock:
            app = AppRegistration(
                client_id=client_id or new_guid(), tenant_id=tenant_id, display_name=display_name,
                secrets=[secret or new_opaque("sbx~", 24)], redirect_uris=list(redirect_uris),
            )
            self.apps[app.client_id] = app
            return app

    def add_user(self, tenant_id: str, upn: str, display_name: str, *, kind: str = "user",
                 password: str | None = None, is_tenant_admin: bool = False) -> User:
        """Add a user or shared mailbox, with Exchange's default folders (DEFAULT_FOLDERS)."""
        with self.lock:
            user = User(id=new_guid(), tenant_id=tenant_id, upn=upn.lower(), display_name=display_name,
                        kind=kind, password=password, is_tenant_admin=is_tenant_admin)
            self._users_by_upn()    # up to date before this user, so that it is just added to it
            self.users[user.id] = user
            self._upn_index[2].setdefault(user.upn, []).append(user)
            self._upn_index = (self.users, len(self.users), self._upn_index[2])
            self.add_default_folders(user.id)
            return user

    def grant(self, mailbox_id: str, user_id: str, *, full_access: bool = False, send_as: bool = False,
              send_on_behalf: bool = False) -> MailboxPermission:
        with self.lock:
            perm = self.permission(mailbox_id, user_id)
            if perm is None:
                perm = MailboxPermission(mailbox_id=mailbox_id, user_id=user_id)
                self.permissions.append(perm)
                self._permission_index[2][(mailbox_id, user_id)] = perm
                self._permission_index = (self.permissions, len(self.permissions), self._permission_index[2])
            perm.full_access, perm.send_as, perm.send_on_behalf = full_access, send_as, send_on_behalf
            return perm

    def issue_tokens(self, client_id: str, user_id: str, scopes: set[str],
                     lifetime_s: int | None = None) -> tuple[AccessToken, RefreshToken]:
        """Mint an access token and a refresh token for ``user_id`` (the token endpoint's one way to do it).

        ``scopes`` are short Graph names (``Mail.Read.Shared``); OIDC scopes are not stored on the tokens.
        """
        with self.lock:
            user = self.users[user_id]
            now = self.now()
            lifetime = lifetime_s if lifetime_s is not None else self.settings["access_token_lifetime_s"]
            graph_scopes = {s for s in scopes if s not in ("openid", "profile", "email", "offline_access")}
            access = AccessToken(token=new_opaque("eySBX.at.", 48), client_id=client_id, tenant_id=user.tenant_id,
                                 user_id=user_id, scopes=graph_scopes,
                                 expires_at=now + dt.timedelta(seconds=lifetime))
            refresh = RefreshToken(token=new_opaque("0.SBX.rt.", 64), client_id=client_id,
                                   tenant_id=user.tenant_id, user_id=user_id, scopes=set(scopes),
                                   issued_at=now, last_used_at=now)
            self.access_tokens[access.token] = access
            self.refresh_tokens[refresh.token] = refresh
            return access, refresh

    # --- persistence (demo) ---------------------------------------------------------------------------

    def to_json(self) -> str:
        """Serialise directory, consents, refresh tokens, mail and subscriptions (not the lock)."""
        def encode(obj):
            if isinstance(obj, dt.datetime):
                return {"__dt__": obj.isoformat()}
            if isinstance(obj, bytes):
                import base64
                return {"__b64__": base64.b64encode(obj).decode()}
            if isinstance(obj, set):
                return {"__set__": sorted(obj)}
            if dataclasses.is_dataclass(obj):
                return {"__dc__": type(obj).__name__, **{f.name: getattr(obj, f.name)
                                                         for f in dataclasses.fields(obj)}}
            raise TypeError(type(obj))
        with self.lock:
            data = {
                "clock_offset": self.clock_offset.total_seconds(),
                "tenants": list(self.tenants.values()), "apps": list(self.apps.values()),
                "users": list(self.users.values()), "permissions": self.permissions,
                "consents": list(self.consents.values()),
                "refresh_tokens": list(self.refresh_tokens.values()),
                "folders": list(self.folders.values()), "messages": list(self.messages.values()),
                "subscriptions": list(self.subscriptions.values()),
                "settings": self.settings,
                # The key that signs skip and delta tokens, and how many delta tokens were issued: the links a
                # client stored stay links of this service after a restart (Microsoft does not forget them).
                "tokens": {key: self.extra[key] for key in PERSISTED_EXTRA if key in self.extra},
            }
            return json.dumps(data, default=encode)

    def load_json(self, text: str) -> None:
        import base64
        classes = {cls.__name__: cls for cls in (Tenant, AppRegistration, User, MailboxPermission, Consent,
                                                  RefreshToken, Folder, Message, Attachment, Subscription)}

        def decode(obj):
            if "__dt__" in obj:
                return dt.datetime.fromisoformat(obj["__dt__"])
            if "__b64__" in obj:
                return base64.b64decode(obj["__b64__"])
            if "__set__" in obj:
                return set(obj["__set__"])
            if "__dc__" in obj:
                cls = classes[obj.pop("__dc__")]
                return cls(**obj)
            return obj
        data = json.loads(text, object_hook=decode)
        with self.lock:
            self.reset()
            self.clock_offset = dt.timedelta(seconds=data["clock_offset"])
            self.tenants = {t.id: t for t in data["tenants"]}
            self.apps = {a.client_id: a for a in data["apps"]}
            self.users = {u.id: u for u in data["users"]}
            self.permissions = data["permissions"]
            self.consents = {(c.tenant_id, c.client_id): c for c in data["consents"]}
            self.refresh_tokens = {r.token: r for r in data["refresh_tokens"]}
            for folder in data["folders"]:
                self.add_folder(folder)
            for user in self.users.values():
                self.add_default_folders(user.id)
            self.messages = {m.immutable_id: m for m in data["messages"]}
            self.subscriptions = {s.id: s for s in data["subscriptions"]}
            self.settings.update(data["settings"])
            self.extra.update(data.get("tokens", {}))
            # The change logs that delta tokens point into are not saved: a delta link issued before the restart
            # answers as Exchange does when it lost a sync state (400 syncStateNotFound: start a full sync),
            # not as a forged link would. Skip tokens of lists need no log: they keep working.
            if self.extra.get("mail_delta_issued"):
                self.extra.setdefault("mail_delta_expired", {})["*"] = (
                    self.extra["mail_delta_issued"], "syncStateNotFound")
