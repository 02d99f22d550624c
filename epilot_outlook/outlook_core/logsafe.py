"""What may reach a log line: text from outside bounded and escaped, and the connection's identifiers masked.

No log line, at any level, may hold an authorization code, a state, a token, a secret, a tenant id or the
service account's address. The plain layer's own lines never name them; three kinds of text still could:

* text Microsoft (or whoever forged a redirect) wrote, such as an ``error_description``: :func:`loggable` gives
  a bounded form with control characters and markup escaped, and the identifiers masked;
* the text of an exception that quotes a URL: ``requests`` names the URL it failed to reach, query included, and
  an upload session's ``uploadUrl`` carries its credential there (``authtoken``). The plain layer's errors mask
  secret parameters in their own message (:func:`mask_secrets`), and its log lines use :func:`redact`;
* the lines of the libraries the plain layer calls: ``urllib3`` logs every request's URL at DEBUG (the token
  endpoint's path holds the tenant id; a redirect's query holds the code and state), MSAL logs its authority.
  :func:`install_log_filters` masks those in their records, whatever the level configured.
"""
import html
import logging
import threading
import time
import re

from .const import MASK, SENSITIVE_KEYS

# Longest text from outside a log line carries (an ``error_description`` is a line, not a page).
LOG_TEXT_LIMIT = 300

_GUID_RE = re.compile(r'(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b')
# An address, plain or URL-encoded (``%40``) as in a ``login_hint``.
_ADDRESS_RE = re.compile(r'(?i)[\w.+-]+(?:@|%40)[\w-]+(?:\.[\w-]+)+')
# Query or form parameters whose value is a secret, or says who signs in where.
_PARAM_NAMES = sorted(SENSITIVE_KEYS | {'session_state', 'client_info', 'tenant', 'login_hint', 'tid'})
# A name starts the query or follows a separator, plain or URL-encoded (a redirect's query inside another's);
# an encoded value runs on to the end (masking what follows it too).
_PARAM_RE = re.compile(r'(?i)(?:(?<=[?&;\s"\'])|(?<=%%3F)|(?<=%%26)|^)(%s)(=|%%3D)[^&\s"\']*'
                       % '|'.join(map(re.escape, _PARAM_NAMES)))
_CONTROL_RE = re.compile(r'[\x00-\x1f\x7f-\x9f\u2028\u2029]')

# The libraries' loggers whose records carry URLs of the identity platform or Graph.
LIBRARY_LOGGERS = (
    'urllib3.connectionpool',
    'urllib3.util.retry',
    'msal.application',
    'msal.authority',
    'msal.token_cache',
    'msal.telemetry',
    'msal.oauth2cli.oauth2',
    'msal.oauth2cli.oidc',
)


def mask_secrets(text):
    """Return ``text`` with the values of secret parameters masked (``authtoken=[REDACTED]``), the rest as is.

    :param str text: A message that may quote a URL or a form body.
    :rtype: str
    """
    return _PARAM_RE.sub(lambda match: match.group(1) + match.group(2) + MASK, text)


def redact(text):
    """Return ``text`` with secret parameters, tenant and object ids (GUIDs) and addresses masked.

    :param str text: A log message.
    :rtype: str
    """
    text = _GUID_RE.sub('[id]', mask_secrets(text))
    return _ADDRESS_RE.sub('[address]', text)


def loggable(text, limit=LOG_TEXT_LIMIT):
    """Return a form of outside ``text`` fit for one log line: identifiers masked (:func:`redact`), control
    characters written as ``\\xNN``, markup escaped, and at most ``limit`` characters (plus a note of how many
    were cut).

    :param text: Anything; ``str()`` of it is used.
    :rtype: str
    """
    text = redact(str(text))
    text = _CONTROL_RE.sub(lambda match: '\\x%02x' % ord(match.group()) if ord(match.group()) < 256
                           else '\\u%04x' % ord(match.group()), text)
    text = html.escape(text, quote=False)
    if len(text) > limit:
        text = '%s...[%d more characters]' % (text[:limit], len(text) - limit)
    return text


class RedactingFilter(logging.Filter):
    """Masks what :func:`redact` masks in every record of the logger it is added to."""

    def filter(self, record):
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is the logging module's business, not ours.
            return True
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


def install_log_filters(names=LIBRARY_LOGGERS):
    """Add a :class:`RedactingFilter` to each named logger, once (importing twice adds nothing)."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(type(existing).__name__ == 'RedactingFilter' for existing in logger.filters):
            logger.addFilter(RedactingFilter())


class LogLimit:
    """At most one log line per kind and sender within ``interval`` seconds: for input anyone can send (the
    webhook), whose log lines must not grow without bound. The events of the lines held back are counted, and
    the next line of that kind and sender says how many there were in all.

    :param float interval: Seconds between two lines of one kind and sender.
    :param int max_senders: Senders tracked at once; past it, new senders share one line per kind.
    """

    def __init__(self, interval=60, max_senders=1024):
        self.interval, self.max_senders = interval, max_senders
        self._entries = {}   # (kind, sender) -> [time of its last line, events held back since]
        self._lock = threading.Lock()

    def take(self, kind, sender, count=1):
        """Count ``count`` events of ``kind`` from ``sender``.

        :return: ``None`` when no line is due (the events are held back); else how many events the line logged
            now stands for: these and those held back since the previous line.
        :rtype: int or None
        """
        now = time.monotonic()
        with self._lock:
            key = (kind, sender)
            if key not in self._entries and len(self._entries) >= self.max_senders:
                # Forget the senders whose minute is over; if that is not enough, new ones share a line.
                self._entries = {known: entry for known, entry in self._entries.items()
                                 if now - entry[0] < self.interval}
                if len(self._entries) >= self.max_senders:
                    key = (kind, None)
            entry = self._entries.get(key)
            if entry is not None and now - entry[0] < self.interval:
                entry[1] += count
                return None
            self._entries[key] = [now, 0]
            return count + (entry[1] if entry is not None else 0)

    @staticmethod
    def also(events, now, what):
        """The end of a limited log line: what the lines held back since the previous one counted."""
        return '' if events <= now else ' (%d %s from there since the previous line)' % (events, what)
