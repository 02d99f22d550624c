"""Mail no person wrote: non-delivery reports (NDRs) and automatic replies (docs/microsoft-graph.md §3.3.1).

Pure functions over what Graph gives for a message: its ``internetMessageHeaders`` (``$select`` only), sender,
subject and body. They set the item's ``kind`` and, for an NDR, which e-mail bounced, for whom and why, as codes
(:data:`REASONS`); the Odoo layer words them. Nothing here raises on content.

What is relied on (§3.3.1):

* an Exchange Online NDR carries the header ``X-MS-Exchange-Message-Is-Ndr`` (empty value), comes from
  ``MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@<tenant domain>`` ("Microsoft Outlook"), and names the
  e-mail it reports in ``In-Reply-To``/``References``; its body says ``Status code: 550 5.1.1`` and, under
  "Original Message Headers", the original's ``Message-ID``;
* other servers' reports (RFC 3464) are ``multipart/report; report-type=delivery-status``, from
  ``mailer-daemon``/``postmaster``, with ``Status:`` and ``Final-Recipient:`` fields; only those senders' are
  taken as reports (anyone may send that content type, naming a reply they received);
* an automatic reply carries ``Auto-Submitted`` with any value but ``no`` (RFC 3834), or one of the older
  ``X-Autoreply``/``X-Autorespond``/``Precedence: auto_reply``. ``X-Auto-Response-Suppress`` asks others not to
  answer automatically and says nothing about the message itself; ``X-MS-Exchange-Inbox-Rules-Loop`` is set on
  inbox-rule forwards too, so it counts only with Outlook's ``Automatic reply:`` subject.
"""
import html
import re

# Why an e-mail was not delivered, from the enhanced status code (RFC 3463: class.subject.detail).
REASONS = ('recipient_unknown', 'domain_unknown', 'mailbox_full', 'mailbox_disabled', 'too_large', 'rejected',
           'expired', 'other')
# (subject, detail) or subject alone -> reason; the first match wins.
_REASON_BY_CODE = (
    (('1', '2'), 'domain_unknown'), (('4', '310'), 'domain_unknown'), (('4', '4'), 'domain_unknown'),
    (('1', None), 'recipient_unknown'),
    (('2', '2'), 'mailbox_full'), (('2', '1'), 'mailbox_disabled'), (('2', '3'), 'too_large'),
    (('3', '4'), 'too_large'),
    (('4', '7'), 'expired'),
    (('7', None), 'rejected'),
)
# Exchange Online's system sender of NDRs, in every tenant (§3.3.1).
EXCHANGE_NDR_SENDER = 'microsoftexchange329e71ec88ae4615bbc36ab6ce41109e'
# The system mailers other servers send their reports (RFC 3464) as; a report from anyone else is mail.
_SYSTEM_MAILERS = ('mailer-daemon', 'postmaster')
_AUTO_REPLY_SUBJECT_RE = re.compile(r'^\s*(automatic reply|automatische antwort|réponse automatique)\s*:',
                                    re.IGNORECASE)
_TAG_RE = re.compile(r'<(script|style)\b.*?</\1\s*>|<[^>]*>', re.IGNORECASE | re.DOTALL)
_MESSAGE_ID_RE = re.compile(r'<[^<>\s]+@[^<>\s]+>')
_ADDRESS = r'<?([^\s<>"\'():;,]+@[^\s<>"\'():;,]+?)>?[.,;]?(?=\s|$|\))'
# Where an Exchange NDR's text names the recipient, the status and the original's headers (English, as the
# parts an administrator reads are; the rest of the text is in the sender's language).
_RECIPIENT_RES = (
    re.compile(r'Your message to\s+' + _ADDRESS, re.IGNORECASE),
    re.compile(r'Recipient Address:\s*' + _ADDRESS, re.IGNORECASE),
    re.compile(r'Final-Recipient:\s*rfc822\s*;\s*' + _ADDRESS, re.IGNORECASE),
)
_STATUS_RES = (
    re.compile(r'Status code:\s*\d{3}\s+(\d\.\d{1,3}\.\d{1,3})\b', re.IGNORECASE),
    re.compile(r'Remote server returned\s*\'?\s*\d{3}[\s-]+(\d\.\d{1,3}\.\d{1,3})\b', re.IGNORECASE),
    re.compile(r'(?:^|\s)Status:\s*(\d\.\d{1,3}\.\d{1,3})\b', re.IGNORECASE),
    re.compile(r'(?:^|[\s\'\[(])[245]\d{2}[\s-]+([245]\.\d{1,3}\.\d{1,3})\b'),
)
_ORIGINAL_HEADERS_RE = re.compile(r'Original Message Headers|Original message headers|Text-Rfc822-Headers',
                                  re.IGNORECASE)
_ORIGINAL_MESSAGE_ID_RE = re.compile(r'Message-ID:\s*(<[^<>\s]+>)', re.IGNORECASE)
MAX_BODY = 200_000   # an NDR's text is small; a huge body is not searched further than this


def classify(message, headers):
    """Set ``message.kind`` and, for an NDR, its bounce facts; return ``message``.

    :param message: The :class:`~.mapping.OutlookItem` just mapped (changed in place).
    :param dict headers: Its ``internetMessageHeaders`` as ``{lower name: value}``.
    :rtype: mapping.OutlookItem
    """
    if message.folder != 'inbox':
        return message   # the team's own mail (Sent Items) is neither
    if is_ndr(message, headers):
        text = body_text(message.body_html)
        report, _sep, original = _split_original(text)
        message.kind = 'ndr'
        message.bounced_message_id = (_first_id(headers.get('in-reply-to')) or _original_message_id(original)
                                      or _first_id(headers.get('references')))
        message.bounce_status = _status(report)
        message.bounce_reason = reason_of(message.bounce_status)
        message.bounce_recipients = _recipients(report)
    elif is_auto_reply(message, headers):
        message.kind = 'auto_reply'
    return message


def is_ndr(message, headers):
    """Whether the item is a non-delivery report (see the module's docstring)."""
    if 'x-ms-exchange-message-is-ndr' in headers:
        return True
    sender = (message.from_ or message.sender)
    local = sender.address.partition('@')[0].lower() if sender and sender.address else ''
    if local == EXCHANGE_NDR_SENDER:
        return True
    if local not in _SYSTEM_MAILERS:
        # Anyone can write a report's Content-Type and an In-Reply-To naming a reply they received: taken as a
        # report, such a mail would be hidden and the reply shown as bounced.
        return False
    return ('report-type=delivery-status' in (headers.get('content-type') or '').replace(' ', '').lower()
            or bool(_first_id(headers.get('in-reply-to'))))


def is_auto_reply(message, headers):
    """Whether the item is an automatic reply (see the module's docstring)."""
    submitted = (headers.get('auto-submitted') or '').strip().lower()
    if submitted and submitted.split(';')[0].strip() != 'no':
        return True
    if 'x-autoreply' in headers or 'x-autorespond' in headers:
        return True
    if (headers.get('precedence') or '').strip().lower() == 'auto_reply':
        return True
    return 'x-ms-exchange-inbox-rules-loop' in headers and bool(_AUTO_REPLY_SUBJECT_RE.match(message.subject))


def reason_of(status):
    """The :data:`REASONS` code of an enhanced status code (``'5.1.1'`` → ``'recipient_unknown'``)."""
    parts = (status or '').split('.')
    if len(parts) != 3:
        return 'other'
    _class, subject, detail = parts
    for (code_subject, code_detail), reason in _REASON_BY_CODE:
        if subject == code_subject and code_detail in (None, detail):
            return reason
    return 'other'


def body_text(body_html):
    """The text of an HTML body, one space between words (entities decoded after the tags are gone, so an
    escaped ``&lt;id@host&gt;`` stays text)."""
    text = _TAG_RE.sub(' ', (body_html or '')[:MAX_BODY])
    return ' '.join(html.unescape(text).split())


def _split_original(text):
    """(the report's own text, separator, the original's headers quoted under it)."""
    match = _ORIGINAL_HEADERS_RE.search(text)
    return (text[:match.start()], match.group(0), text[match.end():]) if match else (text, '', '')


def _original_message_id(original):
    match = _ORIGINAL_MESSAGE_ID_RE.search(original)
    return match.group(1) if match else ''


def _first_id(value):
    match = _MESSAGE_ID_RE.search(value or '')
    return match.group(0) if match else ''


def _status(report):
    for pattern in _STATUS_RES:
        if match := pattern.search(report):
            return match.group(1)
    return ''


def _recipients(report):
    found = []
    for pattern in _RECIPIENT_RES:
        for match in pattern.finditer(report):
            address = match.group(1).strip().lower()
            if '@' in address and address not in found:
                found.append(address)
    return tuple(found[:50])
