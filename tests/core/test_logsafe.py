"""What may reach a log line: secrets, ids and addresses masked; outside text bounded and escaped."""
import logging

from outlook_core import logsafe
from outlook_core.logsafe import loggable, redact

TENANT = '0d6a8a4e-9a55-4f1c-8c3c-2a1f7a2b3c4d'


def test_redact_masks_codes_states_ids_and_addresses_plain_and_encoded():
    line = ('"GET /web/login?redirect=%2Fepilot_outlook%2Foauth%2Fcallback%3Fcode%3Dthe-code%26state%3Dthe-state'
            ' HTTP/1.1" /' + TENANT + '/oauth2/v2.0/token?login_hint=svc%40contoso.com svc@contoso.com')
    masked = redact(line)
    for secret in ('the-code', 'the-state', TENANT, 'svc%40contoso.com', 'svc@contoso.com'):
        assert secret not in masked
    assert redact('GET /v1.0/me?$select=id') == 'GET /v1.0/me?$select=id'


def test_loggable_is_bounded_and_escaped():
    text = loggable('AADSTS65004: \x1b[31m\x07\t<script>alert(1)</script>' + 'x' * 5000, limit=100)
    assert len(text) < 140
    assert '<script>' not in text and '\x1b' not in text and '\t' not in text
    assert text.startswith('AADSTS65004: \\x1b[31m\\x07\\x09&lt;script&gt;')


def test_library_loggers_are_redacted(caplog):
    logsafe.install_log_filters()
    logsafe.install_log_filters()  # Once is enough: no second filter.
    logger = logging.getLogger('urllib3.connectionpool')
    assert len([f for f in logger.filters if isinstance(f, logsafe.RedactingFilter)]) == 1
    with caplog.at_level(logging.DEBUG, logger='urllib3.connectionpool'):
        logger.debug('%s://%s:%s "%s %s %s" %s %s', 'https', 'login.microsoftonline.com', 443, 'POST',
                     '/%s/oauth2/v2.0/token' % TENANT, 'HTTP/1.1', 200, 10)
    assert TENANT not in caplog.text
    assert '/[id]/oauth2/v2.0/token' in caplog.text
