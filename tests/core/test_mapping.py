"""mapping.py: Graph message JSON → plain values, fed realistic and hostile JSON (docs/microsoft-graph.md §3.2-§3.4).

Graph's JSON is untrusted input: every property may be missing, null or of another type, and mapping must
never raise on content; only an item without ``id`` is refused (``MappingError``).
"""
import base64
import copy
from datetime import datetime

import pytest

from outlook_core.mapping import (
    MAX_ADDRESSES, MAX_SUBJECT, Address, MappingError, format_addresses, map_delta_item, map_message,
    map_messages, normalize_subject, parse_datetime,
)

SUPPORT = 'support@contoso.onmicrosoft.com'
PNG = b'\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01'


def recipient(address, name=None):
    return {'emailAddress': {'name': address if name is None else name, 'address': address}}


def graph_message(**overrides):
    """A message as Graph returns it with ``$select`` (incl. ``internetMessageHeaders``) and ``$expand``."""
    item = {
        '@odata.etag': 'W/"CQAAABYAAAB4WqsFf0+3QaS8qn+Y6rhkAAAAAAAx"',
        'id': 'AAkALgAAAAAAHYQDEapmEc2byACqAC-EWg0AeFqrBX9Pt0GkvKp-mOq4ZAAAAAABDAAA',
        'conversationId': 'AAQkAGI2TG93AAA=',
        'internetMessageId': '<CAF=abc123@mail.gmail.com>',
        'subject': 'RE: Rechnung Nr. 4711 – Zahlungserinnerung',
        'from': recipient('Juergen.Mueller@Example.DE', 'Jürgen Müller'),
        'sender': recipient('juergen.mueller@example.de', 'Jürgen Müller'),
        'toRecipients': [recipient(SUPPORT, 'Contoso Support')],
        'ccRecipients': [recipient('amelie.dubois@exemple.fr', 'Amélie Dubois')],
        'replyTo': [],
        'sentDateTime': '2024-05-02T08:14:51Z',
        'receivedDateTime': '2024-05-02T08:15:02Z',
        'lastModifiedDateTime': '2024-05-02T08:16:40.1234567Z',
        'changeKey': 'CQAAABYAAAB4WqsFf0+3QaS8qn+Y6rhkAAAAAAAx',
        'isRead': False,
        'isDraft': False,
        'parentFolderId': 'AQMkADYAAAIBDAAAAA==',
        'hasAttachments': True,
        'body': {'contentType': 'html', 'content': '<html><body><p>Hallo zusammen</p></body></html>'},
        'internetMessageHeaders': [
            {'name': 'Message-ID', 'value': '<CAF=abc123@mail.gmail.com>'},
            {'name': 'In-Reply-To', 'value': '<parent-2@contoso.com>'},
            {'name': 'References', 'value': '<root-1@contoso.com>\r\n <parent-2@contoso.com>'},
        ],
        'attachments': [],
    }
    item.update(overrides)
    return item


def file_attachment(content=PNG, **overrides):
    value = {
        '@odata.type': '#microsoft.graph.fileAttachment',
        '@odata.mediaContentType': 'image/png',
        'id': 'AAMkADA1M-att1',
        'lastModifiedDateTime': '2024-05-02T08:15:02Z',
        'name': 'photo.png',
        'contentType': 'image/png',
        'size': len(content) + 180,
        'isInline': False,
        'contentId': None,
        'contentLocation': None,
        'contentBytes': base64.b64encode(content).decode(),
    }
    value.update(overrides)
    return value


# === A REALISTIC MESSAGE === #

def test_a_received_message_maps_every_property():
    message = map_message(graph_message(), 'inbox')
    assert message.graph_id == 'AAkALgAAAAAAHYQDEapmEc2byACqAC-EWg0AeFqrBX9Pt0GkvKp-mOq4ZAAAAAABDAAA'
    assert message.folder == 'inbox'
    assert message.internet_message_id == '<CAF=abc123@mail.gmail.com>'
    assert message.conversation_id == 'AAQkAGI2TG93AAA='
    assert message.subject == 'RE: Rechnung Nr. 4711 – Zahlungserinnerung'
    assert message.from_ == Address('Jürgen Müller', 'juergen.mueller@example.de')   # address lower-cased
    assert message.sender == Address('Jürgen Müller', 'juergen.mueller@example.de')
    assert message.to == (Address('Contoso Support', SUPPORT),)
    assert message.cc == (Address('Amélie Dubois', 'amelie.dubois@exemple.fr'),)
    assert message.reply_to == ()
    assert message.sent_at == datetime(2024, 5, 2, 8, 14, 51)
    assert message.received_at == datetime(2024, 5, 2, 8, 15, 2)
    assert message.date == message.received_at
    assert message.last_modified == datetime(2024, 5, 2, 8, 16, 40, 123456)
    assert message.change_key == 'CQAAABYAAAB4WqsFf0+3QaS8qn+Y6rhkAAAAAAAx'
    assert message.is_read is False and message.is_draft is False
    assert message.body_html == '<html><body><p>Hallo zusammen</p></body></html>'
    assert message.in_reply_to == '<parent-2@contoso.com>'
    assert message.references == ('<root-1@contoso.com>', '<parent-2@contoso.com>')
    assert message.attachments == [] and message.skipped_attachments == 0


def test_mapping_does_not_modify_its_input():
    item = graph_message(attachments=[file_attachment()])
    before = copy.deepcopy(item)
    map_message(item, 'inbox')
    map_delta_item(item)
    assert item == before


def test_date_falls_back_to_sent_when_not_received():
    message = map_message(graph_message(receivedDateTime=None), 'sentitems')
    assert message.received_at is None and message.date == datetime(2024, 5, 2, 8, 14, 51)


# === MISSING, NULL AND WRONG-TYPED PROPERTIES === #

def test_an_item_with_only_an_id_maps_to_empty_values():
    message = map_message({'id': 'AAMk1'}, 'inbox')
    assert (message.graph_id, message.subject, message.internet_message_id, message.body_html) == ('AAMk1', '', '', '')
    assert message.from_ is None and message.sender is None
    assert message.to == message.cc == message.reply_to == message.references == ()
    assert message.sent_at is message.received_at is message.last_modified is message.date is None
    assert message.is_read is False and message.attachments == []
    assert message.in_reply_to == ''


@pytest.mark.parametrize('value', [None, 42, 'a string', ['a', 'list'], {'no': 'emailAddress'}, True])
def test_every_property_null_or_wrong_typed_never_raises(value):
    item = {key: value for key in graph_message() if key != 'id'}
    item['id'] = 'AAMk2'
    message = map_message(item, 'inbox')
    assert message.graph_id == 'AAMk2'
    assert message.from_ is None and message.to == () and message.attachments == []
    assert message.received_at is None and message.references == ()
    assert isinstance(message.subject, str) and isinstance(message.body_html, str)


def test_null_subject_and_body_give_empty_strings_not_none():
    message = map_message(graph_message(subject=None, body=None), 'inbox')
    assert message.subject == '' and message.body_html == ''
    message = map_message(graph_message(body={'contentType': 'html', 'content': None}), 'inbox')
    assert message.body_html == ''


def test_a_numeric_subject_is_kept_as_text():
    assert map_message(graph_message(subject=4711), 'inbox').subject == '4711'


@pytest.mark.parametrize('raw, expected', [
    (True, True), (False, False), ('true', True), ('True', True), (' TRUE ', True), ('false', False),
    ('False', False), ('', False), (None, False), (1, True), (0, False),
])
def test_is_read_tolerates_the_string_form(raw, expected):
    """A docs sample sends ``"isRead": "true"`` (docs/microsoft-graph.md §3.2); ``bool("false")`` would be True."""
    assert map_message(graph_message(isRead=raw), 'inbox').is_read is expected
    assert map_message(graph_message(isDraft=raw), 'inbox').is_draft is expected


@pytest.mark.parametrize('bad_id', [None, '', [], {}, {'id': 'nested'}])
def test_an_item_without_a_usable_id_raises_mapping_error(bad_id):
    with pytest.raises(MappingError):
        map_message(graph_message(id=bad_id), 'inbox')


def test_an_item_with_no_id_key_or_not_a_dict_raises_mapping_error():
    item = graph_message()
    del item['id']
    for value in (item, None, 'AAMk', ['AAMk']):
        with pytest.raises(MappingError):
            map_message(value, 'inbox')


def test_map_messages_leaves_out_and_counts_items_without_id():
    items = [graph_message(id='A1'), graph_message(id=None), {'subject': 'no id'}, None, graph_message(id='A2')]
    messages, skipped = map_messages(items, 'sentitems')
    assert [message.graph_id for message in messages] == ['A1', 'A2']
    assert skipped == 3 and all(message.folder == 'sentitems' for message in messages)
    assert map_messages([], 'inbox') == ([], 0)


# === DATES === #

@pytest.mark.parametrize('raw, expected', [
    ('2024-01-01T10:00:00Z', datetime(2024, 1, 1, 10, 0, 0)),
    ('2024-01-01T10:00:00z', datetime(2024, 1, 1, 10, 0, 0)),
    ('2024-01-01T10:00:00.1234567Z', datetime(2024, 1, 1, 10, 0, 0, 123456)),   # 7 digits: Graph's precision
    ('2024-01-01T10:00:00.9999999Z', datetime(2024, 1, 1, 10, 0, 0, 999999)),   # truncated, never rounded up
    ('2024-01-01T10:00:00.5Z', datetime(2024, 1, 1, 10, 0, 0, 500000)),
    ('2024-01-01T10:00:00+02:00', datetime(2024, 1, 1, 8, 0, 0)),
    ('2024-01-01T01:00:00.1234567+02:00', datetime(2023, 12, 31, 23, 0, 0, 123456)),   # across a year
    ('2024-01-01T10:00:00-05:30', datetime(2024, 1, 1, 15, 30, 0)),
    ('2024-01-01T10:00:00', datetime(2024, 1, 1, 10, 0, 0)),        # no offset: already UTC
    (' 2024-01-01T10:00:00Z ', datetime(2024, 1, 1, 10, 0, 0)),
    ('0001-01-01T00:00:00Z', datetime(1, 1, 1)),                    # Graph's "no date"
])
def test_parse_datetime_gives_naive_utc(raw, expected):
    parsed = parse_datetime(raw)
    assert parsed == expected and parsed.tzinfo is None


@pytest.mark.parametrize('raw', [None, '', '   ', 'yesterday', '2024-13-01T10:00:00Z', '2024-01-01T25:00:00Z',
                                 '2024-01-01T10:00:00ZZ', 1704103200, 1704103200.0, ['2024-01-01'], {}])
def test_parse_datetime_returns_none_for_garbage(raw):
    assert parse_datetime(raw) is None


@pytest.mark.parametrize('raw', ['0001-01-01T00:00:00+01:00', '9999-12-31T23:59:59-01:00'])
def test_parse_datetime_out_of_range_after_conversion_to_utc_is_none(raw):
    """A valid ISO date whose UTC moment falls outside datetime's range: mapping must not raise."""
    assert parse_datetime(raw) is None
    assert map_message(graph_message(receivedDateTime=raw), 'inbox').received_at is None


def test_message_dates_with_7_digit_fractions_and_offsets():
    message = map_message(graph_message(sentDateTime='2024-05-02T10:14:51.0000001+02:00',
                                        receivedDateTime='2024-05-02T08:15:02.1234567Z',
                                        lastModifiedDateTime='not a date'), 'inbox')
    assert message.sent_at == datetime(2024, 5, 2, 8, 14, 51, 0)
    assert message.received_at == datetime(2024, 5, 2, 8, 15, 2, 123456)
    assert message.last_modified is None


# === ADDRESSES === #

@pytest.mark.parametrize('from_value, expected', [
    ({'emailAddress': {'name': 'Ann', 'address': 'ann@example.com'}}, Address('Ann', 'ann@example.com')),
    ({'emailAddress': {'address': 'ANN@Example.COM'}}, Address('', 'ann@example.com')),
    ({'emailAddress': {'name': 'Ann', 'address': None}}, Address('Ann', '')),
    ({'emailAddress': {'name': '  Ann  ', 'address': '  ann@example.com '}}, Address('Ann', 'ann@example.com')),
    # malformed addresses are kept as a name, never as something to send mail to
    ({'emailAddress': {'name': 'Postmaster', 'address': 'postmaster'}}, Address('Postmaster', '')),
    ({'emailAddress': {'name': '', 'address': 'MAILER-DAEMON'}}, Address('mailer-daemon', '')),
    ({'emailAddress': {'name': '', 'address': 'Ann <ann@example.com>'}}, Address('ann <ann@example.com>', '')),
    ({'emailAddress': {'name': 'Ann', 'address': '<ann@example.com>'}}, Address('Ann', '')),
    ({'emailAddress': {'name': 'Ann', 'address': 'ann @example.com'}}, Address('Ann', '')),
    # nothing usable
    ({'emailAddress': {'name': '', 'address': ''}}, None),
    ({'emailAddress': {'name': None, 'address': None}}, None),
    ({'emailAddress': {}}, None),
    ({'emailAddress': None}, None),
    ({'emailAddress': 'ann@example.com'}, None),
    ({}, None),
    ('ann@example.com', None),
    (None, None),
])
def test_from_malformed_or_missing(from_value, expected):
    assert map_message(graph_message(**{'from': from_value}), 'inbox').from_ == expected


def test_recipients_skip_unusable_entries_and_keep_order():
    to = [recipient('b@example.com', 'B'), None, 'c@example.com', {'emailAddress': {}},
          recipient('A@EXAMPLE.COM', 'A'), recipient('undisclosed-recipients', '')]
    message = map_message(graph_message(toRecipients=to, ccRecipients={'not': 'a list'}), 'inbox')
    assert message.to == (Address('B', 'b@example.com'), Address('A', 'a@example.com'),
                          Address('undisclosed-recipients', ''))
    assert message.cc == ()


def test_500_recipients_are_kept_and_a_hostile_count_is_bounded():
    many = [recipient('user%d@example.com' % index, 'User %d' % index) for index in range(600)]
    message = map_message(graph_message(toRecipients=many), 'inbox')
    assert len(message.to) == 600 and message.to[599] == Address('User 599', 'user599@example.com')

    hostile = [recipient('user%d@example.com' % index) for index in range(MAX_ADDRESSES * 5)]
    message = map_message(graph_message(toRecipients=hostile, ccRecipients=hostile, replyTo=hostile), 'inbox')
    assert len(message.to) == len(message.cc) == len(message.reply_to) == MAX_ADDRESSES
    assert message.to[0].address == 'user0@example.com'


def test_a_huge_name_is_truncated():
    message = map_message(graph_message(**{'from': recipient('ann@example.com', 'N' * 10000)}), 'inbox')
    assert message.from_ == Address('N' * 256, 'ann@example.com')


def test_formatted_addresses():
    assert Address('Ann', 'ann@example.com').formatted() == '"Ann" <ann@example.com>'
    assert Address('ann@example.com', 'ann@example.com').formatted() == 'ann@example.com'
    assert Address('', 'ann@example.com').formatted() == 'ann@example.com'
    assert Address('Ann', '').formatted() == 'Ann'
    # quotes and backslashes in a name cannot break out of the quoted string
    assert Address('Ann "The Boss" \\', 'ann@example.com').formatted() == '"Ann \'The Boss\' " <ann@example.com>'
    assert format_addresses([Address('Ann', 'ann@example.com'), Address('', ''), Address('', 'b@example.com')]) \
        == '"Ann" <ann@example.com>, b@example.com'


# === SUBJECTS AND NAMES === #

def test_control_characters_are_removed_from_subject_and_names():
    message = map_message(graph_message(
        subject='Invoice\x00 4711\x07\x1b[31m overdue\x7f',
        **{'from': recipient('ann@example.com', '\x00Ann\x08 Smith\x1f')}), 'inbox')
    assert message.subject == 'Invoice 4711[31m overdue'
    assert message.from_ == Address('Ann Smith', 'ann@example.com')


def test_line_breaks_in_subject_names_and_addresses_become_spaces():
    """Subjects, names and addresses are single-line values that end up in header-like strings
    (``Address.formatted``): a CR/LF in them would start a new header."""
    message = map_message(graph_message(
        subject='Invoice\r\nBcc: victim@example.com', attachments=[file_attachment(name='a\r\nb.pdf')],
        toRecipients=[recipient('ann@example.com', 'Ann\r\nBcc: victim@example.com'),
                      recipient('bob\n@example.com', 'Bob'), recipient('carl@example.com\r\n', 'Carl\t')]),
        'inbox')
    assert message.subject == 'Invoice Bcc: victim@example.com'
    assert message.to == (Address('Ann Bcc: victim@example.com', 'ann@example.com'),
                          Address('Bob', ''),                  # an address broken by a line break is no address
                          Address('Carl', 'carl@example.com'))
    assert '\n' not in format_addresses(message.to) and '\r' not in format_addresses(message.to)
    assert message.attachments[0].name == 'a b.pdf'


def test_a_name_of_control_characters_only_with_no_address_is_no_address():
    assert map_message(graph_message(**{'from': recipient('', '\x00\x01\x02')}), 'inbox').from_ is None


def test_a_huge_subject_is_cut_at_the_rfc_line_limit():
    message = map_message(graph_message(subject='x' * 100000), 'inbox')
    assert len(message.subject) == MAX_SUBJECT


def test_no_subject():
    item = graph_message()
    del item['subject']
    assert map_message(item, 'inbox').subject == ''
    assert normalize_subject(None) == normalize_subject('') == ''


@pytest.mark.parametrize('subject, expected', [
    ('Hello', 'hello'),
    ('Re: Hello', 'hello'),
    ('RE: Re: re:Hello', 'hello'),
    ('Fwd: Hello', 'hello'),
    ('FW: Re: Hello', 'hello'),
    ('AW: WG: Angebot für Wärmepumpe', 'angebot für wärmepumpe'),
    ('WG: AW: AW: Zählerstand', 'zählerstand'),
    ('Re[2]: Hello', 'hello'),
    ('RE [3] : Hello', 'hello'),
    ('SV: VS: Hej', 'hej'),
    ('Antw: Rif: TR: Objet', 'objet'),
    ('RE： 見積書のご送付', '見積書のご送付'),       # full-width colon
    ('  Re:   Hello    World  ', 'hello world'),
    ('Re: Re:', ''),
    # not prefixes: the word must be followed by a colon, and only leading ones count
    ('Report: Q1', 'report: q1'),
    ('Réunion de projet', 'réunion de projet'),
    ('Regarding: Re: contract', 'regarding: re: contract'),
    ('Ticket re: login', 'ticket re: login'),
])
def test_normalize_subject(subject, expected):
    assert normalize_subject(subject) == expected


# === BODIES AND HEADERS === #

def test_a_text_body_is_escaped_to_html():
    text = 'Hi <b>team</b> & co,\n<script>alert(1)</script>\n\n-- \nAnn'
    message = map_message(graph_message(body={'contentType': 'Text', 'content': text}), 'inbox')
    assert message.body_html == ('<div style="white-space: pre-wrap">Hi &lt;b&gt;team&lt;/b&gt; &amp; co,\n'
                                 '&lt;script&gt;alert(1)&lt;/script&gt;\n\n-- \nAnn</div>')
    assert '<script>' not in message.body_html and '<b>' not in message.body_html


def test_an_html_body_is_kept_as_is():
    html = '<p>Hi &amp; <b>bold</b></p>'
    assert map_message(graph_message(body={'contentType': 'html', 'content': html}), 'inbox').body_html == html
    # no contentType: Graph's default is HTML
    assert map_message(graph_message(body={'content': html}), 'inbox').body_html == html


def test_reply_headers_are_read_case_insensitively():
    headers = [{'name': 'in-reply-to', 'value': 'garbage <parent@x.com> <other@x.com>'},
               {'name': 'REFERENCES', 'value': '<a@x.com> not-an-id <b@x.com>\t<c@x.com>'},
               {'name': None, 'value': '<ignored@x.com>'}, 'not a header', {'value': 'no name'}]
    message = map_message(graph_message(internetMessageHeaders=headers), 'inbox')
    assert message.in_reply_to == '<parent@x.com>'
    assert message.references == ('<a@x.com>', '<b@x.com>', '<c@x.com>')


def test_references_keep_only_the_last_50():
    references = ' '.join('<id%d@x.com>' % index for index in range(200))
    message = map_message(graph_message(internetMessageHeaders=[{'name': 'References', 'value': references}]),
                          'inbox')
    assert len(message.references) == 50
    assert message.references[0] == '<id150@x.com>' and message.references[-1] == '<id199@x.com>'


def test_no_headers_or_malformed_ones():
    for headers in (None, [], 'In-Reply-To: <x@y>', [{'name': 'In-Reply-To', 'value': None}],
                    [{'name': 'In-Reply-To', 'value': 'no brackets@x.com'}]):
        message = map_message(graph_message(internetMessageHeaders=headers), 'inbox')
        assert message.in_reply_to == '' and message.references == ()


# === ATTACHMENTS === #

def test_file_attachments_are_decoded():
    pdf = b'%PDF-1.4\n' + bytes(range(256)) * 4
    message = map_message(graph_message(attachments=[
        file_attachment(pdf, id='att-pdf', name='Rechnung_Übersicht.pdf', contentType='application/pdf'),
        file_attachment(PNG, id='att-logo', name='logo.png', isInline=True, contentId='<image001.png@01DA>'),
        file_attachment(b'', id='att-empty', name='empty.txt', contentType='text/plain'),
    ]), 'inbox')
    pdf_att, logo, empty = message.attachments
    assert (pdf_att.graph_id, pdf_att.name, pdf_att.content_type, pdf_att.content, pdf_att.is_inline) == (
        'att-pdf', 'Rechnung_Übersicht.pdf', 'application/pdf', pdf, False)
    assert logo.is_inline is True and logo.content_id == 'image001.png@01DA' and logo.content == PNG
    assert empty.content == b'' and empty.name == 'empty.txt'
    assert message.skipped_attachments == 0


def test_inline_flag_as_a_string_and_missing_optional_properties():
    value = {'@odata.type': '#microsoft.graph.fileAttachment', 'contentBytes': base64.b64encode(PNG).decode(),
             'isInline': 'true', 'name': None, 'contentType': None, 'contentId': None}
    (attachment,) = map_message(graph_message(attachments=[value]), 'inbox').attachments
    assert attachment.is_inline is True and attachment.content == PNG
    assert attachment.name == 'attachment' and attachment.content_type == 'application/octet-stream'
    assert attachment.content_id == '' and attachment.graph_id == ''


def test_item_and_reference_attachments_are_skipped_and_counted():
    item_attachment = {'@odata.type': '#microsoft.graph.itemAttachment', 'id': 'att-item', 'name': 'Fwd: Hello',
                       'contentType': None, 'isInline': False, 'size': 4000}
    reference = {'@odata.type': '#microsoft.graph.referenceAttachment', 'id': 'att-ref', 'name': 'Plan.docx',
                 'sourceUrl': 'https://contoso.sharepoint.com/plan.docx', 'providerType': 'oneDriveBusiness',
                 'isInline': False}
    # an item attachment that somehow carries bytes is still not a file
    item_with_bytes = dict(item_attachment, contentBytes=base64.b64encode(b'MIME').decode())
    message = map_message(graph_message(attachments=[item_attachment, file_attachment(), reference,
                                                     item_with_bytes]), 'inbox')
    assert [attachment.graph_id for attachment in message.attachments] == ['AAMkADA1M-att1']
    assert message.skipped_attachments == 3


def test_a_file_without_bytes_is_skipped_and_counted():
    no_bytes = file_attachment()
    del no_bytes['contentBytes']
    message = map_message(graph_message(attachments=[no_bytes, file_attachment(contentBytes=None),
                                                     file_attachment(contentBytes=123)]), 'inbox')
    assert message.attachments == [] and message.skipped_attachments == 3


def test_attachments_not_a_list_or_not_dicts():
    assert map_message(graph_message(attachments={'value': []}), 'inbox').attachments == []
    message = map_message(graph_message(attachments=[None, 'x', 42, file_attachment()]), 'inbox')
    assert len(message.attachments) == 1


def test_invalid_base64_with_bad_padding_is_skipped_and_counted():
    message = map_message(graph_message(attachments=[file_attachment(contentBytes='abc'),
                                                     file_attachment(contentBytes='not base64 at all')]), 'inbox')
    assert message.attachments == [] and message.skipped_attachments == 2


@pytest.mark.parametrize('content_bytes', ['****', '!!!!', 'SGVs*bG8=', 'SGVsbG8gd29ybGQ=!', 'ab\x00cd'])
def test_invalid_base64_characters_are_skipped_and_counted_not_dropped(content_bytes):
    """Decoding that silently drops foreign characters would store an empty or corrupted file."""
    message = map_message(graph_message(attachments=[file_attachment(contentBytes=content_bytes)]), 'inbox')
    assert message.attachments == [] and message.skipped_attachments == 1


def test_base64_wrapped_over_lines_is_accepted():
    wrapped = base64.encodebytes(PNG * 20).decode()          # MIME style: a line break every 76 characters
    assert '\n' in wrapped
    (attachment,) = map_message(graph_message(attachments=[file_attachment(contentBytes=wrapped)]),
                                'inbox').attachments
    assert attachment.content == PNG * 20


def test_control_characters_are_removed_from_attachment_names():
    message = map_message(graph_message(attachments=[
        file_attachment(name='\x00in\x1bvoice.pdf'), file_attachment(name='\x00\x01'),
        file_attachment(name='n' * 1000)]), 'inbox')
    assert [attachment.name for attachment in message.attachments] == ['invoice.pdf', 'attachment', 'n' * 255]


def test_non_ascii_and_mojibake_names_are_kept():
    names = ['見積書.pdf', 'Zählerstände.csv', 'ZÃ¤hlerstÃ¤nde.csv', 'emoji 😀.png', 'Ω≈ç√∫.txt']
    message = map_message(graph_message(attachments=[file_attachment(name=name) for name in names]), 'inbox')
    assert [attachment.name for attachment in message.attachments] == names


def test_text_that_postgresql_cannot_store_is_cleaned_everywhere():
    """JSON may escape a lone surrogate (``"\\ud800"``), which no UTF-8 encoder accepts, and NUL, which a
    PostgreSQL text column refuses; every string mapping returns is stored by Odoo."""
    import json
    raw = json.dumps(graph_message(
        subject='Bad \ud800 subject', body={'contentType': 'html', 'content': '<p>a\x00b \udcff c</p>'},
        conversationId='AAQk\x00', internetMessageId='<x\udfff@y>', changeKey='CQ\ud800',
        internetMessageHeaders=[{'name': 'In-Reply-To', 'value': '<p\ud800@x>'}],
        attachments=[file_attachment(name='Rechnung \udc80\udc81.pdf', contentType='image/png\x00',
                                     contentId='<cid\ud800>')],
        **{'from': recipient('ann@example.com', 'Ann \ud83d')}))
    assert '\\ud800' in raw
    message = map_message(json.loads(raw), 'inbox')
    values = [message.subject, message.body_html, message.conversation_id, message.internet_message_id,
              message.change_key, message.in_reply_to, message.from_.name, *message.references]
    attachment = message.attachments[0]
    values += [attachment.name, attachment.content_type, attachment.content_id]
    for value in values:
        value.encode('utf-8')          # raises on a lone surrogate
        assert '\x00' not in value
    assert message.subject == 'Bad \ufffd subject' and message.body_html == '<p>ab \ufffd c</p>'
    assert attachment.name == 'Rechnung \ufffd\ufffd.pdf' and message.from_.name == 'Ann \ufffd'
    assert map_delta_item(json.loads('{"id": "A", "subject": "x\\udc00"}')).subject == 'x\ufffd'


# === CORRESPONDENT AND THREAD KEY === #

def test_correspondent_of_received_mail_is_its_sender():
    message = map_message(graph_message(), 'inbox')
    assert message.correspondent(SUPPORT) == Address('Jürgen Müller', 'juergen.mueller@example.de')


def test_correspondent_of_sent_mail_is_the_first_outside_recipient():
    item = graph_message(**{
        'from': recipient(SUPPORT, 'Contoso Support'),
        'toRecipients': [recipient(SUPPORT), recipient('Ann@Example.com', 'Ann')],
        'ccRecipients': [recipient('bob@example.com', 'Bob')]})
    assert map_message(item, 'sentitems').correspondent(SUPPORT) == Address('Ann', 'ann@example.com')
    # the team's own mail found in the Inbox (sent to itself, cc) counts as sent
    assert map_message(item, 'inbox').correspondent(SUPPORT) == Address('Ann', 'ann@example.com')
    # in Sent Items the folder decides, whoever the from is (a delegate's "Send on Behalf")
    delegate = dict(item, **{'from': recipient('svc-helpdesk@contoso.onmicrosoft.com')})
    assert map_message(delegate, 'sentitems').correspondent(SUPPORT) == Address('Ann', 'ann@example.com')


def test_correspondent_of_sent_mail_falls_back_to_cc_then_none():
    item = graph_message(**{'from': recipient(SUPPORT), 'toRecipients': [recipient(SUPPORT)],
                            'ccRecipients': [recipient('not-an-address', 'Nameless'), recipient('c@example.com')]})
    assert map_message(item, 'sentitems').correspondent(SUPPORT) == Address('c@example.com', 'c@example.com')
    alone = graph_message(**{'from': recipient(SUPPORT), 'toRecipients': [recipient(SUPPORT)], 'ccRecipients': []})
    assert map_message(alone, 'sentitems').correspondent(SUPPORT) is None


def test_correspondent_of_received_mail_without_from():
    assert map_message(graph_message(**{'from': None}), 'inbox').correspondent(SUPPORT) is None
    nameless = map_message(graph_message(**{'from': recipient('broken', 'Broken Sender')}), 'inbox')
    assert nameless.correspondent(SUPPORT) == Address('Broken Sender', '')


def test_thread_key_groups_replies_by_normalized_subject_and_correspondent():
    first = map_message(graph_message(subject='Zählerstand 4711'), 'inbox')
    reply = map_message(graph_message(subject='AW: WG: Zählerstand   4711', **{
        'from': recipient(SUPPORT), 'toRecipients': [recipient('Juergen.Mueller@example.de')]}), 'sentitems')
    other = map_message(graph_message(subject='Zählerstand 4711', **{'from': recipient('x@example.com')}),
                        'inbox')
    assert first.thread_key(SUPPORT) == reply.thread_key(SUPPORT) == 'zählerstand 4711|juergen.mueller@example.de'
    assert other.thread_key(SUPPORT) != first.thread_key(SUPPORT)
    assert map_message({'id': 'x'}, 'inbox').thread_key(SUPPORT) == '|'


# === DELTA ITEMS === #

def test_delta_removed_item():
    change = map_delta_item({'@odata.type': '#microsoft.graph.message', 'id': 'AAMk-gone',
                             '@removed': {'reason': 'deleted'}})
    assert change.graph_id == 'AAMk-gone' and change.removed is True
    assert change.is_read is change.subject is change.change_key is None
    # any @removed value means removed, and other properties beside it are ignored
    change = map_delta_item({'id': 'AAMk-gone', '@removed': None, 'isRead': True, 'subject': 'x'})
    assert change.removed is True and change.is_read is None and change.subject is None


def test_delta_partial_update_carries_only_what_changed():
    change = map_delta_item({'@odata.type': '#microsoft.graph.message', '@odata.etag': 'W/"CQAAAB"',
                             'id': 'AAMk-1', 'isRead': 'true', 'changeKey': 'CQAAAB',
                             'lastModifiedDateTime': '2024-05-02T08:16:40.1234567Z'})
    assert change.removed is False and change.is_read is True and change.change_key == 'CQAAAB'
    assert change.subject is None and change.received_at is None          # not sent: unknown, not empty
    assert change.last_modified == datetime(2024, 5, 2, 8, 16, 40, 123456)

    change = map_delta_item({'id': 'AAMk-1', 'isRead': False})
    assert change.is_read is False and change.change_key is None and change.last_modified is None


def test_delta_full_item_of_an_initial_round():
    item = {'@odata.type': '#microsoft.graph.message', '@odata.etag': 'W/"CQ"', 'id': 'AAMk-2',
            'changeKey': 'CQ', 'isRead': False, 'subject': 'RE: Hello',
            'lastModifiedDateTime': '2024-05-02T08:15:02Z', 'receivedDateTime': '2024-05-02T10:15:02+02:00',
            'parentFolderId': 'AQMk'}
    change = map_delta_item(item)
    assert (change.graph_id, change.removed, change.is_read, change.change_key, change.subject) == (
        'AAMk-2', False, False, 'CQ', 'RE: Hello')
    assert change.received_at == change.last_modified == datetime(2024, 5, 2, 8, 15, 2)


def test_delta_null_subject_is_empty_and_long_one_is_cut():
    assert map_delta_item({'id': 'A', 'subject': None}).subject == ''
    assert len(map_delta_item({'id': 'A', 'subject': 'y' * 5000}).subject) == MAX_SUBJECT


def test_delta_subject_is_cleaned_like_a_full_message_subject():
    """A subject changed in a delta round must equal what ``map_message`` stores for the same subject."""
    for subject in ('Invoice\x00 4711\x07 overdue', 'Invoice\r\nBcc: victim@example.com', 'z' * 2000):
        assert map_delta_item({'id': 'A', 'subject': subject}).subject == \
            map_message(graph_message(subject=subject), 'inbox').subject


@pytest.mark.parametrize('item', [{}, {'id': ''}, {'id': None}, {'@removed': {'reason': 'deleted'}}, None, 'AAMk'])
def test_delta_item_without_id_raises_mapping_error(item):
    with pytest.raises(MappingError):
        map_delta_item(item)
