"""sending.py's ``MailSender`` against the sandbox over HTTPS: draft then send, replies through Graph's reply
drafts, MIME for new mail, large attachments through an upload session, and exactly-once after a crash."""
import email.message
from urllib.parse import urlsplit

import pytest
import requests

from m365_sandbox.seed import CONNECTOR_SCOPES
from outlook_core import errors
from outlook_core.graph import GraphClient
from outlook_core.sending import SEND_GRACE_S, SEND_ON_BEHALF, MailSender

DOMAIN = 'contoso.onmicrosoft.com'
SUPPORT = 'support@' + DOMAIN          # Full Access + Send As
SALES = 'sales@' + DOMAIN              # Send on Behalf only
HR = 'hr@' + DOMAIN                    # no rights
SVC = 'svc-helpdesk@' + DOMAIN


class RecordingSession(requests.Session):
    def __init__(self):
        super().__init__()
        self.calls = []

    def request(self, method, url, *args, **kwargs):
        self.calls.append((method.upper(), urlsplit(url).path, dict(kwargs.get('headers') or {})))
        return super().request(method, url, *args, **kwargs)


@pytest.fixture
def session():
    with RecordingSession() as recording:
        yield recording


@pytest.fixture
def client(sandbox, demo, session):
    access, _ = sandbox.state.issue_tokens(demo['client_id'], demo['service_account']['id'], set(CONNECTOR_SCOPES))
    return GraphClient(sandbox.graph_base, lambda: access.token, ca_bundle=sandbox.ca_path,
                       allowed_hosts=(urlsplit(sandbox.graph_base).netloc,), session=session,
                       sleep=lambda _s: None, max_wait=0)


def mail(sender=SUPPORT, to='kunde@example.com', cc=None, subject='Ihre Anfrage', attachments=(), **headers):
    message = email.message.EmailMessage()
    message['From'], message['To'], message['Subject'] = '"Support" <%s>' % sender, to, subject
    if cc:
        message['Cc'] = cc
    message['Message-ID'] = headers.pop('message_id', '<odoo-1@example.com>')
    for name, value in headers.items():
        message[name.replace('_', '-')] = value
    message.add_alternative('Guten Tag', subtype='plain')
    message.add_alternative('<p>Guten Tag</p>', subtype='html')
    for name, content in attachments:
        message.add_attachment(content, 'application', 'octet-stream', filename=name)
    return message


def sent(http, sandbox):
    return http.get(sandbox.control_base + '/mail/sent').json()['value']


def deliver(http, sandbox, mailbox=SUPPORT, **extra):
    response = http.post(sandbox.control_base + '/mail/deliver', json={
        'mailbox': mailbox, 'from': 'kunde@example.com', 'subject': 'Frage', 'body_html': '<p>?</p>',
        'cc': ['kollege@example.com'], **extra})
    assert response.status_code == 201, response.text
    return response.json()


def test_new_mail_is_a_mime_draft_sent_as_the_shared_mailbox(sandbox, http, client):
    result = MailSender(client, SUPPORT).deliver(mail())
    assert result.already_sent is False and result.requests == 2       # draft, send
    [record] = sent(http, sandbox)
    assert record['from']['address'] == SUPPORT and record['sender']['address'] == SUPPORT
    assert record['internetMessageId'] == '<odoo-1@example.com>' == result.draft.internet_message_id
    assert record['sentCopy']['mailbox'] == SUPPORT and record['sentCopy']['immutableId'] == result.draft.graph_id
    assert record['body']['contentType'] == 'html' and 'Guten Tag' in record['body']['content']


@pytest.mark.parametrize('mode', ['reply', 'replyAll', 'forward'])
def test_reply_modes_use_graph_reply_drafts_and_keep_the_conversation(sandbox, http, client, session, mode):
    parent = deliver(http, sandbox)
    message = mail(to='kunde@example.com', cc='kollege@example.com' if mode == 'replyAll' else None,
                   subject=('Fw: ' if mode == 'forward' else 'Re: ') + 'Frage',
                   In_Reply_To=parent['internetMessageId'])
    result = MailSender(client, SUPPORT).deliver(message, parent_id=parent['immutable_id'], mode=mode)
    action = {'reply': 'createReply', 'replyAll': 'createReplyAll', 'forward': 'createForward'}[mode]
    assert [call[1].rsplit('/', 1)[-1] for call in session.calls] == [action, 'send']
    [record] = sent(http, sandbox)
    assert record['conversationId'] == parent['conversationId'] == result.draft.conversation_id
    assert record['inReplyTo'] == parent['internetMessageId']
    assert [a['address'] for a in record['to']] == ['kunde@example.com']
    assert [a['address'] for a in record['cc']] == (['kollege@example.com'] if mode == 'replyAll' else [])
    assert record['from']['address'] == SUPPORT


@pytest.mark.parametrize('mode', ['reply', 'forward'])
def test_a_reply_without_a_subject_gets_the_one_exchange_gives_it(sandbox, http, client, mode):
    parent = deliver(http, sandbox)
    message = mail(In_Reply_To=parent['internetMessageId'])
    del message['Subject']
    MailSender(client, SUPPORT).deliver(message, parent_id=parent['immutable_id'], mode=mode)
    [record] = sent(http, sandbox)
    assert record['subject'] == ('FW: ' if mode == 'forward' else 'RE: ') + 'Frage'
    # a subject given is the subject sent, even an empty one
    http.delete(sandbox.control_base + '/mail/sent')
    message = mail(subject='', In_Reply_To=parent['internetMessageId'])
    MailSender(client, SUPPORT).deliver(message, parent_id=parent['immutable_id'], mode=mode)
    assert sent(http, sandbox)[0]['subject'] == ''


def test_large_attachment_goes_through_an_upload_session_without_the_token(sandbox, http, client, session):
    big = bytes(range(256)) * (5 * 1024 * 1024 // 256)                   # 5 MB
    small = b'%PDF-1.4 small'
    result = MailSender(client, SUPPORT).deliver(mail(attachments=[('big.bin', big), ('small.pdf', small)]))
    puts = [call for call in session.calls if call[0] == 'PUT']
    assert len(puts) == 2 and all('Authorization' not in headers for _m, _p, headers in puts)
    assert all('Authorization' in headers for method, _p, headers in session.calls if method != 'PUT')
    item = sandbox.state.messages[result.draft.graph_id]
    assert sorted((a.name, a.content) for a in item.attachments) == [('big.bin', big), ('small.pdf', small)]
    assert sent(http, sandbox)[0]['attachments'] and not item.is_draft


def test_large_attachment_on_a_reply(sandbox, http, client):
    parent = deliver(http, sandbox)
    big = b'x' * (3 * 1024 * 1024 + 1)
    result = MailSender(client, SUPPORT).deliver(mail(attachments=[('scan.tif', big)]),
                                                 parent_id=parent['immutable_id'])
    assert [a.content for a in sandbox.state.messages[result.draft.graph_id].attachments] == [big]


def test_send_on_behalf_drafts_in_the_service_accounts_mailbox(sandbox, http, client):
    result = MailSender(client, SALES, SEND_ON_BEHALF).deliver(mail(sender=SALES))
    [record] = sent(http, sandbox)
    assert record['from']['address'] == SALES and record['sender']['address'] == SVC
    assert record['sentCopy']['mailbox'] == SVC and result.draft.mailbox == 'me'


def test_send_as_denied_keeps_the_draft_and_a_retry_sends_it_once(sandbox, http, client):
    stored = []
    sender = MailSender(client, HR)
    with pytest.raises(errors.Forbidden):         # no Full Access on hr@: not even a draft
        sender.deliver(mail(sender=HR))
    http.post(sandbox.control_base + '/permissions', json={'mailbox': HR, 'user': SVC, 'full_access': True})
    with pytest.raises(errors.SendAsDenied):
        sender.deliver(mail(sender=HR), on_draft=stored.append)
    assert sent(http, sandbox) == []
    http.post(sandbox.control_base + '/permissions', json={'mailbox': HR, 'user': SVC, 'full_access': True,
                                                           'send_as': True})
    result = sender.deliver(mail(sender=HR), draft=stored[0], on_draft=stored.append)
    assert len(stored) == 1 and result.draft.graph_id == stored[0].graph_id
    assert len(sent(http, sandbox)) == 1


def test_a_crash_after_graph_accepted_never_sends_twice(sandbox, http, client):
    stored = []
    sender = MailSender(client, SUPPORT)
    sender.deliver(mail(), on_draft=stored.append)           # sent; the worker "dies" before recording it
    # the retry finds the draft sent: nothing is sent again
    result = sender.deliver(mail(), draft=stored[0], send_requested_age=1)
    assert result.already_sent is True and result.requests == 1 and len(sent(http, sandbox)) == 1
    # a draft handed to send a moment ago that still is a draft: wait, then send it
    draft = sender.create_draft(mail(message_id='<odoo-2@example.com>'))
    with pytest.raises(errors.SendPending):
        sender.deliver(mail(), draft=draft, send_requested_age=5)
    assert len(sent(http, sandbox)) == 1
    result = sender.deliver(mail(), draft=draft, send_requested_age=SEND_GRACE_S + 1)
    assert result.already_sent is False and len(sent(http, sandbox)) == 2
    # a stored draft someone deleted for good in Outlook: a new one is made
    made = []
    gone = sender.create_draft(mail(message_id='<odoo-3@example.com>'))
    http.post(sandbox.control_base + '/mail/delete', json={'id': gone.graph_id, 'permanent': True})
    sender.deliver(mail(message_id='<odoo-3@example.com>'), draft=gone, on_draft=made.append)
    assert len(made) == 1 and made[0].graph_id != gone.graph_id and len(sent(http, sandbox)) == 3


def test_throttled_send_is_raised_with_its_retry_after(sandbox, http, client):
    sender = MailSender(client, SUPPORT)
    draft = sender.create_draft(mail())
    http.post(sandbox.control_base + '/faults', json={'graph': {'429': 2, 'retry_after': 7}})
    with pytest.raises(errors.Throttled) as caught:
        sender.deliver(mail(), draft=draft)
    assert caught.value.retry_after == 7 and sent(http, sandbox) == []


@pytest.mark.parametrize('sender', ['"Billing" <billing@contoso.onmicrosoft.com>', 'ceo@fabrikam.com',
                                    '"Support" <%s>' % SUPPORT.upper()])
def test_a_mime_draft_always_comes_from_the_shared_mailbox(sandbox, http, client, sender):
    """ Whatever From Odoo's e-mail carries (another mailbox's, anyone's), the MIME draft is the mailbox's own:
    Exchange keeps a MIME draft's From, and the mailbox's way out sends as itself only (issue 17). """
    message = mail()
    del message['From']
    message['From'] = sender
    message['Sender'] = 'ceo@fabrikam.com'
    MailSender(client, SUPPORT).deliver(message)
    [record] = sent(http, sandbox)
    assert record['from']['address'] == SUPPORT and record['sender']['address'] == SUPPORT
    assert 'billing' not in str(record['from']).lower() and 'fabrikam' not in str(record['from']).lower()
