"""Graph message JSON → the plain values Odoo stores (docs/microsoft-graph.md §3.3, §3.4). Pure functions, no I/O.

Graph's JSON is treated as untrusted input: any property may be missing, ``null`` or of the wrong type (a
docs sample sends ``"isRead": "true"``), addresses may be malformed, bodies huge or hostile. Mapping never
raises on content; only a message without an ``id`` is refused (:class:`MappingError`), because without its id
Odoo could not keep it exactly once.
"""
import base64
import binascii
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

from . import bounces
from .errors import OutlookError

# The well-known folders a shared mailbox is synced from (contract §3.1): mail the team received, and mail the
# team sent from Outlook, which belongs to the same conversations.
FOLDERS = ('inbox', 'sentitems')

# Reply and forward prefixes in the languages Outlook users write in, stripped to group by subject.
_SUBJECT_PREFIX_RE = re.compile(
    r'^\s*((re|fw|fwd|aw|wg|sv|vs|antw|rif|tr|r|enc|odp|ynt|ha)\s*(\[\d+\])?\s*[:：]\s*)+', re.IGNORECASE)
_MESSAGE_ID_RE = re.compile(r'<[^<>\s]+>')
_CONTROL_CHARS_RE = re.compile(r'[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]')
_UNSTORABLE_RE = re.compile('[\x00\ud800-\udfff]')
# Line breaks and tabs, in values that must stay on one line (subjects, names, addresses, file names).
_LINE_BREAKS_RE = re.compile('[\t\n\r\x85\u2028\u2029]+')
# Bounds on what one message may put into a header-like field (a hostile message with 50,000 recipients).
MAX_ADDRESSES = 1000
MAX_SUBJECT = 998      # RFC 5322's line limit


class MappingError(OutlookError):
    """A Graph item that cannot be stored at all (no id)."""


# === VALUES === #

@dataclass(frozen=True)
class Address:
    """One ``{emailAddress: {name, address}}``; ``address`` lower-cased, either part may be empty."""

    name: str = ''
    address: str = ''

    def formatted(self):
        """``"Name" <address>``, or whichever part exists."""
        if self.name and self.address and self.name.lower() != self.address:
            return '"%s" <%s>' % (self.name.replace('\\', '').replace('"', "'"), self.address)
        return self.address or self.name


@dataclass(frozen=True)
class Attachment:
    """A file attachment with its bytes (``$expand=attachments`` returns ``contentBytes``)."""

    graph_id: str
    name: str
    content_type: str
    content: bytes
    is_inline: bool = False
    content_id: str = ''


@dataclass
class OutlookItem:
    """What Odoo keeps of one Outlook message as Graph describes it (not the sync record ``epilot.outlook.message``,
    nor the e-mail ``mail.message``). Datetimes are naive UTC (Odoo's convention)."""

    graph_id: str
    folder: str
    internet_message_id: str = ''
    conversation_id: str = ''
    subject: str = ''
    from_: Address = None
    sender: Address = None
    to: tuple = ()
    cc: tuple = ()
    reply_to: tuple = ()
    sent_at: datetime = None
    received_at: datetime = None
    last_modified: datetime = None
    change_key: str = ''
    is_read: bool = False
    is_draft: bool = False
    body_html: str = ''
    in_reply_to: str = ''
    references: tuple = ()
    attachments: list = field(default_factory=list)
    skipped_attachments: int = 0   # item and reference attachments: no bytes to store
    # What kind of mail it is (:func:`bounces.classify`): '' for mail a person wrote, 'ndr' for a non-delivery
    # report, 'auto_reply' for an automatic reply (out of office...).
    kind: str = ''
    bounced_message_id: str = ''   # an NDR: the Message-Id of the e-mail it reports as not delivered
    bounce_reason: str = ''        # an NDR: bounces.REASONS code
    bounce_status: str = ''        # an NDR: the enhanced status code (RFC 3463), e.g. '5.1.1'
    bounce_recipients: tuple = ()  # an NDR: the addresses the e-mail did not reach

    @property
    def date(self):
        """The date shown for the message: when it arrived (received), else when it was sent."""
        return self.received_at or self.sent_at

    def correspondent(self, mailbox):
        """The party the shared mailbox talks with: the sender of received mail, the first outside recipient
        of mail the team sent.

        :param str mailbox: The shared mailbox's address (lower case).
        :rtype: Address or None
        """
        if self.folder == 'sentitems' or (self.from_ and self.from_.address == mailbox):
            outside = [addr for addr in (*self.to, *self.cc) if addr.address and addr.address != mailbox]
            return outside[0] if outside else None
        return self.from_ if self.from_ and (self.from_.address or self.from_.name) else None

    def thread_key(self, mailbox):
        """The fallback conversation key when Graph gives no ``conversationId``: the subject without its
        reply prefixes and the correspondent's address."""
        correspondent = self.correspondent(mailbox)
        return '%s|%s' % (normalize_subject(self.subject), correspondent.address if correspondent else '')


@dataclass(frozen=True)
class DeltaChange:
    """One item of a delta page: ``removed`` (moved out of the folder or deleted), or the changed facts."""

    graph_id: str
    removed: bool = False
    is_read: bool = None
    change_key: str = None
    subject: str = None
    last_modified: datetime = None
    received_at: datetime = None


# === MAPPING === #

def map_message(item, folder):
    """Map one Graph message (with ``$expand=attachments``) to an :class:`OutlookItem`.

    :param dict item: The message JSON.
    :param str folder: ``inbox`` or ``sentitems``: where it was read from.
    :rtype: OutlookItem
    :raise MappingError: When the item has no id.
    """
    if not isinstance(item, dict) or not _text(item.get('id')):
        raise MappingError("A Graph message without an id cannot be stored.")
    headers = _headers(item.get('internetMessageHeaders'))
    body = item.get('body') if isinstance(item.get('body'), dict) else {}
    body_html = _text(body.get('content'))
    if body_html and _text(body.get('contentType')).lower() == 'text':
        body_html = text_to_html(body_html)
    attachments, skipped = _attachments(item.get('attachments'))
    message = OutlookItem(
        graph_id=_text(item['id']),
        folder=folder,
        internet_message_id=_text(item.get('internetMessageId'))[:998],
        conversation_id=_text(item.get('conversationId')),
        subject=_line(item.get('subject'))[:MAX_SUBJECT],
        from_=_address(item.get('from')),
        sender=_address(item.get('sender')),
        to=_addresses(item.get('toRecipients')),
        cc=_addresses(item.get('ccRecipients')),
        reply_to=_addresses(item.get('replyTo')),
        sent_at=parse_datetime(item.get('sentDateTime')),
        received_at=parse_datetime(item.get('receivedDateTime')),
        last_modified=parse_datetime(item.get('lastModifiedDateTime')),
        change_key=_text(item.get('changeKey')),
        is_read=parse_bool(item.get('isRead')),
        is_draft=parse_bool(item.get('isDraft')),
        body_html=body_html,
        in_reply_to=first_message_id(headers.get('in-reply-to')),
        references=tuple(_MESSAGE_ID_RE.findall(headers.get('references') or ''))[-50:],
        attachments=attachments,
        skipped_attachments=skipped,
    )
    return bounces.classify(message, headers)


def map_messages(items, folder):
    """Map a page of Graph messages; items without an id are left out and counted.

    :return: The mapped messages and how many items were left out.
    :rtype: tuple(list, int)
    """
    messages, skipped = [], 0
    for item in items:
        try:
            messages.append(map_message(item, folder))
        except MappingError:
            skipped += 1
    return messages, skipped


def map_delta_item(item):
    """Map one delta item: ``@removed`` or the (partial) changed properties (docs/microsoft-graph.md §3.2).

    :rtype: DeltaChange
    :raise MappingError: When the item has no id.
    """
    if not isinstance(item, dict) or not _text(item.get('id')):
        raise MappingError("A delta item without an id cannot be applied.")
    if '@removed' in item:
        return DeltaChange(graph_id=_text(item['id']), removed=True)
    return DeltaChange(
        graph_id=_text(item['id']),
        is_read=parse_bool(item['isRead']) if 'isRead' in item else None,
        change_key=_text(item['changeKey']) if 'changeKey' in item else None,
        subject=_line(item['subject'])[:MAX_SUBJECT] if 'subject' in item else None,
        last_modified=parse_datetime(item.get('lastModifiedDateTime')),
        received_at=parse_datetime(item.get('receivedDateTime')),
    )


# === HELPERS === #

def normalize_subject(subject):
    """The subject without ``Re:``/``Fwd:``/``AW:``… prefixes and extra spaces, lower case."""
    return ' '.join(_SUBJECT_PREFIX_RE.sub('', subject or '').split()).lower()


def parse_datetime(value):
    """ISO 8601 (``2024-01-01T10:00:00Z``, with or without fraction or offset) → naive UTC, or None."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace('Z', '+00:00').replace('z', '+00:00')
    # Python 3.11 reads up to 6 fractional digits; Graph sends up to 7.
    text = re.sub(r'(\.\d{6})\d+', r'\1', text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is not None:
        try:
            moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
        except OverflowError:   # 0001-01-01T00:00:00+01:00 is before datetime.min in UTC
            return None
    return moment


def format_datetime(moment):
    """Naive UTC datetime → Graph's ``2024-01-01T10:00:00Z`` (for ``$filter``)."""
    return moment.replace(microsecond=0).isoformat() + 'Z'


def parse_bool(value):
    """Graph's booleans, tolerating the string form of a docs sample."""
    if isinstance(value, str):
        return value.strip().lower() == 'true'
    return bool(value)


def first_message_id(value):
    """The first ``<id>`` in a header value, or ''."""
    found = _MESSAGE_ID_RE.search(value or '')
    return found.group(0) if found else ''


def format_addresses(addresses):
    """A list of :class:`Address` as one header-like string."""
    return ', '.join(filter(None, (addr.formatted() for addr in addresses)))


def text_to_html(text):
    """A plain-text body as HTML (escaped, line breaks kept)."""
    escaped = text.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')
    return '<div style="white-space: pre-wrap">%s</div>' % escaped


def _text(value):
    """Any JSON value as text Odoo can store: no NUL (PostgreSQL refuses it), lone surrogates (JSON may escape
    them; UTF-8 cannot encode them) replaced by U+FFFD."""
    text = value if isinstance(value, str) else ('' if value is None or isinstance(value, (dict, list))
                                                 else str(value))
    return _UNSTORABLE_RE.sub(_storable, text) if _UNSTORABLE_RE.search(text) else text


def _storable(match):
    return '' if match.group() == '\x00' else '\ufffd'


def _line(value):
    """``value`` as one line of text: line breaks and tabs become a space, other control characters go."""
    return _CONTROL_CHARS_RE.sub('', _LINE_BREAKS_RE.sub(' ', _text(value)))


def _address(value):
    email = value.get('emailAddress') if isinstance(value, dict) else None
    if not isinstance(email, dict):
        return None
    name = _line(email.get('name')).strip()[:256]
    address = _line(email.get('address')).strip().lower()[:320]
    if address and ('@' not in address or ' ' in address or '<' in address or '>' in address):
        # A malformed address is kept as a name, never as something Odoo would send mail to.
        name, address = name or address, ''
    return Address(name=name, address=address) if name or address else None


def _addresses(values):
    if not isinstance(values, list):
        return ()
    return tuple(filter(None, (_address(value) for value in values[:MAX_ADDRESSES])))


def _headers(values):
    """``internetMessageHeaders`` → {lower name: value} (the last one wins; only a few are used)."""
    headers = {}
    for header in values if isinstance(values, list) else ():
        if isinstance(header, dict) and isinstance(header.get('name'), str):
            headers[header['name'].lower()] = _text(header.get('value'))
    return headers


def _attachments(values):
    attachments, skipped = [], 0
    for value in values if isinstance(values, list) else ():
        if not isinstance(value, dict):
            continue
        kind = _text(value.get('@odata.type'))
        if kind and kind != '#microsoft.graph.fileAttachment' or not isinstance(value.get('contentBytes'), str):
            skipped += 1   # item/reference attachments, or a file without its bytes
            continue
        try:
            # Line breaks are allowed (MIME wraps base64); any other foreign character makes the file invalid,
            # instead of being dropped into an empty or corrupted file.
            content = base64.b64decode(''.join(value['contentBytes'].split()), validate=True)
        except (binascii.Error, ValueError):
            skipped += 1
            continue
        attachments.append(Attachment(
            graph_id=_text(value.get('id')),
            name=_line(value.get('name')).strip()[:255] or 'attachment',
            content_type=_text(value.get('contentType')) or 'application/octet-stream',
            content=content,
            is_inline=parse_bool(value.get('isInline')),
            content_id=_text(value.get('contentId')).strip('<>'),
        ))
    return attachments, skipped
