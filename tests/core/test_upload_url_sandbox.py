"""An upload session's ``uploadUrl`` carries its own credential (``authtoken``, contract §4): it must never reach
an exception's text or a log line, whichever way a byte range fails (connection refused, TLS refused, Graph's
error answer) or succeeds (urllib3 logs every request line at DEBUG)."""
import email.message
import logging
import socket
import traceback
from urllib.parse import parse_qs, urlsplit

import pytest

from m365_sandbox.seed import CONNECTOR_SCOPES
from outlook_core import errors
from outlook_core.graph import GraphClient, quote_segment
from outlook_core.sending import MailSender

SUPPORT = 'support@contoso.onmicrosoft.com'
SIZE = 10


def make_client(sandbox, demo, **options):
    access, _ = sandbox.state.issue_tokens(demo['client_id'], demo['service_account']['id'], set(CONNECTOR_SCOPES))
    options.setdefault('ca_bundle', sandbox.ca_path)
    options.setdefault('allowed_hosts', (urlsplit(sandbox.graph_base).netloc,))
    return GraphClient(sandbox.graph_base, lambda: access.token, sleep=lambda _s: None, max_wait=0, **options)


@pytest.fixture
def upload_url(sandbox, demo):
    """ The ``uploadUrl`` of a real upload session on a draft of support@, as the sandbox made it. """
    client = make_client(sandbox, demo)
    message = email.message.EmailMessage()
    message['From'], message['To'], message['Subject'] = SUPPORT, 'kunde@example.com', 'Anhang'
    message.set_content('Guten Tag')
    draft = MailSender(client, SUPPORT).create_draft(message)
    session = client.post('%s/messages/%s/attachments/createUploadSession' % (
        draft.mailbox, quote_segment(draft.graph_id)), json={'AttachmentItem': {
            'attachmentType': 'file', 'name': 'big.bin', 'size': SIZE, 'contentType': 'application/octet-stream'}})
    url = session['uploadUrl']
    assert parse_qs(urlsplit(url).query)['authtoken'][0]
    return url


def token_of(url):
    return parse_qs(urlsplit(url).query)['authtoken'][0]


def closed_port():
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def assert_nowhere(token, error, caplog):
    """ Neither the error (its text, its arguments, its traceback as a log would print it) nor any log record
    holds ``token``. """
    texts = [str(error), repr(error), ''.join(traceback.format_exception(error)), caplog.text]
    texts += [str(arg) for arg in error.args] + [record.getMessage() for record in caplog.records]
    for text in texts:
        assert token not in text


def test_a_refused_connection_names_neither_in_the_error_nor_in_the_log(sandbox, demo, upload_url, caplog):
    token = token_of(upload_url)
    parts = urlsplit(upload_url)
    elsewhere = parts._replace(netloc='127.0.0.1:%d' % closed_port()).geturl()
    # Any port of 127.0.0.1: the upload host of this test is a closed one.
    client = make_client(sandbox, demo, allowed_hosts=('127.0.0.1',), max_retries=1)
    with caplog.at_level(logging.DEBUG), pytest.raises(errors.TransientError) as caught:
        client.put_range(elsewhere, b'x' * SIZE, 0, SIZE)
    assert 'ConnectionError' in str(caught.value)
    assert any('Graph PUT' in record.getMessage() and 'failed' in record.getMessage() for record in caplog.records), \
        "the failure is still logged, with requests' reason"
    assert_nowhere(token, caught.value, caplog)


def test_a_refused_certificate_names_neither_in_the_error_nor_in_the_log(sandbox, demo, upload_url, caplog):
    token = token_of(upload_url)
    client = make_client(sandbox, demo, ca_bundle=None)   # the system's CAs: the sandbox's certificate is refused
    with caplog.at_level(logging.DEBUG), pytest.raises(errors.TransientError) as caught:
        client.put_range(upload_url, b'x' * SIZE, 0, SIZE)
    assert 'SSLError' in str(caught.value)
    assert 'CERTIFICATE_VERIFY_FAILED' in caplog.text, "the reason is still logged"
    assert_nowhere(token, caught.value, caplog)


def test_graphs_error_answers_and_successful_ranges_do_not_name_it(sandbox, demo, upload_url, http, caplog):
    token = token_of(upload_url)
    client = make_client(sandbox, demo)
    with caplog.at_level(logging.DEBUG):
        # A range Graph refuses (416: it expects byte 0), then the whole file (urllib3 logs each request line).
        with pytest.raises(errors.GraphError) as caught:
            client.put_range(upload_url, b'x' * 5, 5, SIZE)
        assert caught.value.status == 416
        assert_nowhere(token, caught.value, caplog)
        assert client.put_range(upload_url, b'x' * SIZE, 0, SIZE) is None
    assert 'AttachmentSessions' in caplog.text, "urllib3 logged the request line"
    assert token not in caplog.text
    # An error message quoting the URL, as a proxy or a gateway in front of Graph may word it.
    error = errors.graph_error_from_parts(400, {'error': {'code': 'BadRequest', 'message': 'Bad range for %s'
                                                          % upload_url}})
    assert token not in str(error) and token not in error.message
    assert 'AttachmentSessions' in str(error), "the rest of the message is kept"
