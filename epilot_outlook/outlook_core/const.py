"""The numbers and names of the plain layer in one place: scopes, endpoints, Graph limits, timeouts.

Source: ``docs/microsoft-graph.md``, cited by section (§n). Nothing here does anything.
"""

# === SCOPES === #

# The delegated permissions the product asks for (contract "Scope"). This is the list shown to admins and
# requested on the admin-consent page.
DELEGATED_SCOPES = (
    'User.Read',
    'offline_access',
    'Mail.Read.Shared',
    'Mail.ReadWrite.Shared',
    'Mail.Send.Shared',
)

# MSAL adds ``offline_access openid profile`` to every request by itself and raises ``ValueError`` when a
# caller passes one of them, so the list handed to MSAL leaves them out (docs/microsoft-graph.md §1.8).
MSAL_RESERVED_SCOPES = frozenset({'offline_access', 'openid', 'profile'})
MSAL_SCOPES = tuple(scope for scope in DELEGATED_SCOPES if scope not in MSAL_RESERVED_SCOPES)

# The resource the Graph scopes belong to; the admin-consent endpoint wants scopes in full form
# (``https://graph.microsoft.com/Mail.Read.Shared``), docs/microsoft-graph.md §1.2.
GRAPH_RESOURCE = 'https://graph.microsoft.com'


# === ENDPOINTS === #

DEFAULT_AUTHORITY_HOST = 'https://login.microsoftonline.com'
# Microsoft's own sign-in (authority) hosts: the global cloud, US Government (GCC High and DoD) and China
# (21Vianet). MSAL's ``AZURE_PUBLIC``/``AZURE_US_GOVERNMENT``/``AZURE_CHINA`` authority hosts. A connection may
# use another host (a sandbox) only when a system administrator allows it (Odoo layer).
MICROSOFT_AUTHORITY_HOSTS = (
    'login.microsoftonline.com',
    'login.microsoftonline.us',
    'login.partner.microsoftonline.cn',
)
# Microsoft Graph in the same clouds: global, US Government L4 (GCC High), US Government L5 (DoD), China.
MICROSOFT_GRAPH_HOSTS = (
    'graph.microsoft.com',
    'graph.microsoft.us',
    'dod-graph.microsoft.us',
    'microsoftgraph.chinacloudapi.cn',
)
# ``organizations`` lets any work account's admin consent; ``common`` is refused by the admin-consent
# endpoint (docs/microsoft-graph.md §1.2).
DEFAULT_CONSENT_TENANT = 'organizations'
GRAPH_BASE_URL = 'https://graph.microsoft.com/v1.0'
# Hosts the Graph client may call, including every ``@odata.nextLink``/``@odata.deltaLink`` it follows.
# Entries are ``host`` (default https port) or ``host:port``; the sandbox's address is added by config.
DEFAULT_GRAPH_HOSTS = MICROSOFT_GRAPH_HOSTS
# Where Outlook's attachment upload sessions point (``uploadUrl``, pre-authenticated: no token is sent there).
# Only PUT/DELETE of byte ranges go there, in addition to the Graph hosts.
MICROSOFT_UPLOAD_HOSTS = ('outlook.office.com', 'outlook.office365.com', 'outlook.office365.us',
                          'partner.outlook.cn')


# === ODOO ROUTES === #

# Where Microsoft sends the browser back after admin consent and sign-in (the one redirect URI to register).
OAUTH_CALLBACK_PATH = '/epilot_outlook/oauth/callback'
# Below this path Graph posts change notifications.
WEBHOOK_BASE_PATH = '/epilot_outlook/webhook'
# Change notifications and lifecycle notifications, under it.
WEBHOOK_NOTIFY_PATH = WEBHOOK_BASE_PATH + '/notify'
WEBHOOK_LIFECYCLE_PATH = WEBHOOK_BASE_PATH + '/lifecycle'
# The largest notification POST read; Graph's batches are far smaller (larger answers 413).
WEBHOOK_MAX_BODY_BYTES = 1024 * 1024

# === TIMEOUTS AND TOKEN LIFETIMES === #

# Seconds for every Graph call. A single number, not a (connect, read) pair: Odoo's test guard compares the
# timeout with 10 and fails on a tuple, so a pair would only break under Odoo's tests.
GRAPH_TIMEOUT = 30
# Seconds for MSAL's calls to the identity platform (a single number, for the same reason).
TOKEN_HTTP_TIMEOUT = 30
# Refresh an access token once it has less than this left; MSAL uses the same 5 minutes (docs/microsoft-graph.md §1.8).
TOKEN_REFRESH_MARGIN_S = 5 * 60
# An OAuth ``state`` is accepted for one hour after it was issued.
OAUTH_STATE_MAX_AGE_S = 3600
# Clock skew tolerated on a ``state`` issued "in the future" (another worker's clock).
OAUTH_STATE_CLOCK_SKEW_S = 60


# === GRAPH LIMITS === #

# Outlook allows 4 concurrent requests per app and mailbox; a 5th gets 429 (docs/microsoft-graph.md §5).
MAX_CONCURRENT_PER_MAILBOX = 4
# And 10,000 requests per 10 minutes per app and mailbox (docs/microsoft-graph.md §5): the connection shows its
# busiest mailbox against it.
GRAPH_REQUESTS_PER_MAILBOX_PER_10_MIN = 10000
# Seconds a request waits for one of its mailbox's slots before giving up with ``MailboxBusy`` (a cron then
# reschedules). A slot is held for one HTTP exchange, at most ``GRAPH_TIMEOUT``, so a slot that does not free
# up within that means the mailbox is saturated, and waiting longer only holds a worker.
GRAPH_SLOT_WAIT_S = 30
# A JSON ``$batch`` holds at most 20 requests (docs/microsoft-graph.md §5).
BATCH_MAX_REQUESTS = 20
# ``$batch`` requests one caller has in flight at once (GraphClient.batch_many), never two naming the same mailbox.
# Outlook runs 4 items of a batch at a time whatever their mailboxes (docs/microsoft-graph.md §5), so with Graph's
# latency (100 ms and more) one batch of 20 takes five round trips' time; a round of 1,000 mailboxes' idle folders
# is 100 batches. Parallel batches of different mailboxes stay within every per-mailbox limit. bench_scale, 1,000
# mailboxes, 150 ms per answer, one server: a round of all 2,000 folders took 39.8 s one batch at a time, 17.3 s
# with 4 at once, 6.6 s with 8.
BATCH_PARALLEL = 8
# A live tenant refuses 10,080 and accepts 10,070 minutes (docs/microsoft-graph.md §0); under 45 min is raised to 45.
SUBSCRIPTION_MAX_MINUTES = 10070
SUBSCRIPTION_MIN_MINUTES = 45
# A subscription covers new, changed and removed messages (docs/microsoft-graph.md §2.3).
SUBSCRIPTION_CHANGE_TYPES = 'created,updated,deleted'
# Random bytes of a subscription's ``clientState`` (≥ 32 asked; 48 bytes are 64 URL-safe characters, Graph
# allows 128).
CLIENT_STATE_BYTES = 48


# === RETRIES === #

# Attempts after the first one, for throttling (429/503), timeouts and connection errors.
GRAPH_MAX_RETRIES = 4
# Exponential backoff when Graph sends no ``Retry-After``: base * 2**attempt, capped, with full jitter.
BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 32.0
# A work item (a sync step, a subscription, a send) that failed transiently is tried again after a jittered wait in
# this range, outside the worker (errors.retry_delay).
TRANSIENT_BACKOFF_S = (5.0, 60.0)
# Total seconds one call (a request, or a whole ``$batch``) may sleep between its retries. When the next
# ``Retry-After`` or backoff would go past it, the error goes to the caller (a cron reschedules itself)
# instead of blocking a worker: Odoo's cron time limit defaults to 120 s.
GRAPH_MAX_WAIT_S = 60


# === LOGGING === #

# Keys whose values never reach a log line or an exception message (compared case-insensitively).
SENSITIVE_KEYS = frozenset({
    'access_token',
    'refresh_token',
    'id_token',
    'client_secret',
    'client_assertion',
    'code',
    'code_verifier',
    'authorization',
    'password',
    'clientstate',
    'client_state',
    'secret',
    'state',
    'nonce',
    'authtoken',   # an upload session's ``uploadUrl`` carries its credential in the query
})
MASK = '[REDACTED]'
