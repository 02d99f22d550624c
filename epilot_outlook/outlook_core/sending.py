"""Sending one e-mail as a shared mailbox through Graph, exactly once (docs/microsoft-graph.md §4).

Every e-mail goes **draft, then send**:

1. a draft is made in the mailbox that sends it:

   * a reply or forward of a message Graph holds (its immutable id is known): ``createReply``,
     ``createReplyAll`` or ``createForward`` on that message, with the body, recipients and ``from`` set in
     the request's ``message``. Exchange sets ``In-Reply-To``/``References`` and the conversation itself, and a
     forward carries the original's attachments;
   * anything else (a new e-mail, or a reply whose original Graph does not hold): the RFC 5322 message as MIME
     (``POST …/messages``, base64 text). Exchange keeps its ``Message-ID``, ``In-Reply-To`` and ``References``;

2. attachments that did not travel inside the draft request are added to it: up to 3 MB with one ``POST
   …/attachments``, above through an upload session (``createUploadSession``, then byte ranges PUT to its
   pre-authenticated URL, contract and Microsoft's "Attach large files to Outlook messages");
3. the caller persists the draft's id (**and commits**) through ``on_draft``, then ``on_send``, then
   ``POST …/send`` (202).

After a crash or an error, the caller passes the stored draft id back: :meth:`MailSender.deliver` first asks
Graph whether that draft was sent already (with immutable ids the sent item keeps the draft's id; ``isDraft``
is false once Exchange took it). A draft that was handed to ``send`` a moment ago and still shows as a draft
may be on its way: :class:`~.errors.SendPending` until ``SEND_GRACE`` has passed, then it is sent again. So a
worker dying after Graph accepted an e-mail never sends it twice, and one dying before never loses it.

Which mailbox holds the draft: the shared mailbox for Send As (the sent copy lands in its Sent Items, where
sync finds it); the service account's own mailbox (``/me``) for Send on Behalf, which needs no Full Access
(Microsoft: the copy then goes to the signed-in user's Sent Items). ``from`` is always the shared mailbox;
Graph fills in ``sender`` (the service account under Send on Behalf).
"""
import base64
import copy
import email
import email.policy
import email.utils
from dataclasses import dataclass

from . import errors
from .graph import quote_segment

# Above this, an attachment goes through an upload session (Microsoft: "If the file size is under 3 MB, do a
# single POST"); it is also the budget of attachments carried inside a MIME draft (a request stays under 4 MB).
SMALL_ATTACHMENT_MAX = 3 * 1024 * 1024
# Byte range per PUT: "up to 4 MB each time"; a multiple of 320 KiB, as Microsoft's upload sessions prefer.
UPLOAD_RANGE = 12 * 320 * 1024
# A draft handed to ``send`` less than this long ago that still shows as a draft may still be on its way.
SEND_GRACE_S = 600
IMMUTABLE = {'Prefer': 'IdType="ImmutableId"'}
SEND_AS = 'send_as'
SEND_ON_BEHALF = 'send_on_behalf'
MODES = ('reply', 'replyAll', 'forward')
# How Odoo tells the sender which of MODES an e-mail is (a header of the e-mail Odoo built, removed before Graph).
MODE_HEADER = 'X-Epilot-Outlook-Mode'
# Which of an e-mail's recipients the agent copied (Cc): Odoo puts every recipient contact in To (a header of the
# e-mail Odoo built, read and removed before Graph).
CC_HEADER = 'X-Epilot-Outlook-Cc'
_DRAFT_SELECT = 'id,isDraft,internetMessageId,conversationId'


@dataclass(frozen=True)
class Draft:
    """What Graph said of a draft (or of the sent item it became).

    :param str graph_id: Immutable id (the sent item keeps it).
    :param str internet_message_id: Its ``Message-ID``.
    :param str conversation_id: Outlook's conversation.
    :param bool is_draft: Not sent yet.
    :param str mailbox: The mailbox that holds it (``users/{address}`` or ``me``).
    """

    graph_id: str
    internet_message_id: str
    conversation_id: str
    is_draft: bool
    mailbox: str

    @classmethod
    def from_json(cls, body, mailbox):
        return cls(graph_id=str(body.get('id') or ''), internet_message_id=str(body.get('internetMessageId') or ''),
                   conversation_id=str(body.get('conversationId') or ''), is_draft=bool(body.get('isDraft')),
                   mailbox=mailbox)


@dataclass(frozen=True)
class SendResult:
    """:param Draft draft: The sent item. :param bool already_sent: Graph had it sent before this call."""

    draft: Draft
    already_sent: bool
    requests: int


class MailSender:
    """Sends e-mails as one shared mailbox.

    :param graph.GraphClient client: The connection's client.
    :param str mailbox: The shared mailbox's address (``from``).
    :param str send_mode: :data:`SEND_AS` or :data:`SEND_ON_BEHALF`.
    """

    def __init__(self, client, mailbox, send_mode=SEND_AS):
        self.client = client
        self.mailbox = mailbox.strip().lower()
        self.send_mode = send_mode
        self._shared = 'users/%s' % quote_segment(self.mailbox)
        self._drafts = self._shared if send_mode == SEND_AS else 'me'
        self.requests = 0

    # === BUSINESS METHODS === #

    def deliver(self, message, *, parent_id=None, mode='reply', draft=None, send_requested_age=None,
                on_draft=None, on_send=None):
        """Send ``message`` once, resuming from a stored draft.

        :param email.message.EmailMessage message: The e-mail as Odoo built it (From, To, Cc, Bcc, Subject,
            Message-ID, In-Reply-To, References, HTML body, attachments).
        :param str parent_id: Immutable id of the message it answers or forwards, in the shared mailbox.
        :param str mode: ``reply``, ``replyAll`` or ``forward`` (with ``parent_id``).
        :param Draft draft: The draft stored by an earlier attempt, or ``None``.
        :param float send_requested_age: Seconds since an earlier attempt handed ``draft`` to ``send``
            (``None``: never, or it was refused).
        :param on_draft: ``on_draft(Draft)``, called once the draft is complete and before it is sent: store it
            and commit.
        :param on_send: ``on_send(Draft)``, called right before ``send``: note the time and commit.
        :rtype: SendResult
        :raise SendPending: ``draft`` was handed to ``send`` less than ``SEND_GRACE_S`` ago and still is a draft.
        :raise GraphError: Graph's refusal (``SendAsDenied``, ``Throttled``, ``Unauthorized``...).
        """
        self.requests = 0
        if draft is not None:
            current = self.status(draft)
            if current is not None and not current.is_draft:
                return SendResult(current, already_sent=True, requests=self.requests)
            if current is not None and send_requested_age is not None and send_requested_age < SEND_GRACE_S:
                raise errors.SendPending(
                    "Draft %s was handed to send %.0f s ago and is still a draft" % (draft.graph_id,
                                                                                    send_requested_age),
                    reason='send_pending', params={'seconds': int(SEND_GRACE_S - send_requested_age)})
            draft = current
        if draft is None:
            draft = self.create_draft(message, parent_id=parent_id, mode=mode)
            if on_draft:
                on_draft(draft)
        if on_send:
            on_send(draft)
        self._call('POST', '%s/messages/%s/send' % (draft.mailbox, quote_segment(draft.graph_id)))
        return SendResult(draft, already_sent=False, requests=self.requests)

    def create_draft(self, message, *, parent_id=None, mode='reply'):
        """Make the complete draft of ``message`` (body, recipients, attachments); see the module docstring.

        :rtype: Draft
        """
        attachments = _attachments(message)
        if parent_id:
            if mode not in MODES:
                raise ValueError("Unknown send mode %r" % mode)
            action = {'reply': 'createReply', 'replyAll': 'createReplyAll', 'forward': 'createForward'}[mode]
            body = self._call('POST', '%s/messages/%s/%s' % (self._shared, quote_segment(parent_id), action),
                              json={'message': self._json_message(message)}, headers=IMMUTABLE)
            draft = Draft.from_json(body or {}, self._shared)
            later = attachments
        else:
            inside, later, budget = [], [], SMALL_ATTACHMENT_MAX
            for part in attachments:
                size = len(part.get_payload(decode=True) or b'')
                if size <= budget:
                    inside.append(part)
                    budget -= size
                else:
                    later.append(part)
            mime = _without(message, later)
            _from_the_mailbox(mime, self.mailbox)
            self.requests += 1
            body = self.client.post_mime('%s/messages' % self._drafts, mime.as_bytes(policy=email.policy.SMTP),
                                         headers=IMMUTABLE)
            draft = Draft.from_json(body or {}, self._drafts)
        if not draft.graph_id:
            raise errors.GraphError("Graph made a draft without an id", code='draftWithoutId')
        for part in later:
            self.attach(draft, part)
        return draft

    def attach(self, draft, part):
        """Add one attachment (a MIME part) to ``draft``: one POST up to 3 MB, an upload session above."""
        content = part.get_payload(decode=True) or b''
        name = part.get_filename() or 'attachment'
        content_id = (part.get('Content-ID') or '').strip('<> ') or None
        inline = part.get_content_disposition() == 'inline'
        path = '%s/messages/%s/attachments' % (draft.mailbox, quote_segment(draft.graph_id))
        if len(content) <= SMALL_ATTACHMENT_MAX:
            self._call('POST', path, json={
                '@odata.type': '#microsoft.graph.fileAttachment', 'name': name,
                'contentType': part.get_content_type(), 'contentBytes': base64.b64encode(content).decode(),
                'isInline': inline, 'contentId': content_id,
            })
            return
        session = self._call('POST', path + '/createUploadSession', json={'AttachmentItem': {
            'attachmentType': 'file', 'name': name, 'size': len(content), 'contentType': part.get_content_type(),
            'isInline': inline, 'contentId': content_id,
        }}) or {}
        upload_url = session.get('uploadUrl')
        if not upload_url:
            raise errors.GraphError("Graph made an upload session without an uploadUrl", code='uploadWithoutUrl')
        start = _next_start(session.get('nextExpectedRanges'))
        while start is not None and start < len(content):
            self.requests += 1
            answer = self.client.put_range(upload_url, content[start:start + UPLOAD_RANGE], start, len(content))
            start = _next_start((answer or {}).get('nextExpectedRanges')) if answer else None

    def status(self, draft):
        """The draft (or the sent item it became) as Graph has it now, or ``None`` if Graph has it no more.

        :rtype: Draft or None
        """
        try:
            body = self._call('GET', '%s/messages/%s' % (draft.mailbox, quote_segment(draft.graph_id)),
                              params={'$select': _DRAFT_SELECT}, headers=IMMUTABLE)
        except errors.NotFound:
            return None
        return Draft.from_json(body or {}, draft.mailbox)

    # === HELPERS === #

    def _json_message(self, message):
        """The writable properties of a reply/forward draft, from the MIME message. Without a ``Subject``
        header, the draft keeps the subject Exchange gives it: the original's, with ``RE:`` or ``FW:``."""
        def recipients(header):
            return [{'emailAddress': {'name': name or address, 'address': address}}
                    for name, address in email.utils.getaddresses(message.get_all(header, [])) if address]
        body = message.get_body(('html', 'plain'))
        content = body.get_content() if body is not None else ''
        result = {
            'body': {'contentType': 'html' if body is not None and body.get_content_subtype() == 'html' else 'text',
                     'content': content},
            'toRecipients': recipients('To'),
            'ccRecipients': recipients('Cc'),
            'bccRecipients': recipients('Bcc'),
            'from': {'emailAddress': {'address': self.mailbox}},
        }
        if message.get('Reply-To'):
            result['replyTo'] = recipients('Reply-To')
        if 'Subject' in message:
            result['subject'] = str(message['Subject'])
        return result

    def _call(self, method, path, **kwargs):
        self.requests += 1
        return self.client.post(path, **kwargs) if method == 'POST' else self.client.get(path, **kwargs)


def _attachments(message):
    return [part for part in message.iter_attachments() if part.get_content_maintype() != 'multipart'] \
        if message.is_multipart() else []


def _without(message, parts):
    """A copy of ``message`` without the attachment parts ``parts`` (uploaded on their own)."""
    if not parts:
        return message
    skipped = {id(part) for part in parts}
    result = copy.copy(message)
    result.set_payload([part for part in message.get_payload() if id(part) not in skipped])
    return result


def _from_the_mailbox(message, mailbox):
    """Make ``message`` come from ``mailbox`` (its display name kept when it names the mailbox already): Exchange
    keeps a MIME draft's ``From``, and a shared mailbox sends as itself only, whatever From the e-mail was given
    (issue 17: an e-mail must never leave as anyone else through the mailbox's way out)."""
    name, address = email.utils.parseaddr(str(message.get('From') or ''))
    del message['From']
    del message['Sender']
    message['From'] = email.utils.formataddr((name, mailbox)) if name and address.lower() == mailbox else mailbox


def _next_start(ranges):
    """``nextExpectedRanges`` -> the next byte to send: Outlook sends ``["{start}"]``, OneDrive ``["{a}-{b}"]``."""
    if not ranges:
        return None
    try:
        return int(str(ranges[0]).split('-')[0])
    except ValueError:
        return None
