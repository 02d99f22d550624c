import base64
import hashlib
import os

from odoo.tests import tagged

from .mail_sync_common import BILLING, SUPPORT, OutlookMailSyncCase

# A 1x1 PNG.
PNG = base64.b64decode(
    'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==')


def _file(name, content, content_type='application/octet-stream', **values):
    return {'name': name, 'content_type': content_type, 'content_b64': base64.b64encode(content).decode(), **values}


@tagged('post_install', '-at_install')
class TestHostileContent(OutlookMailSyncCase):
    """ Mail from outside is untrusted: whatever it holds is imported safely, once, through the sandbox. """

    def setUp(self):
        super().setUp()
        self.address = self.add_address(SUPPORT)
        self.run_backfill(self.address)
        self.inbox = self.address.shared_inbox_id

    def imported(self, delivered):
        record = self.env['epilot.outlook.message'].search([('graph_id', '=', delivered['immutable_id'])])
        self.assertEqual(len(record), 1)
        return record

    def test_scripts_big_bodies_odd_senders_and_many_recipients(self):
        known = self.env['res.partner'].create({'name': "Known Customer", 'email': 'Known.Customer@Fabrikam.com'})
        partners_before = self.env['res.partner'].search_count([])
        big_body = '<div>%s</div>' % ('<p>%s</p>' % ('lorem ipsum ' * 80) * 2200)
        self.assertGreater(len(big_body), 2 * 1024 * 1024)
        big = self.deliver(subject="A very long e-mail", body_html=big_body,
                           sender={'name': "Known", 'address': 'known.customer@fabrikam.com'})
        hostile = self.deliver(subject="Click me", sender='stranger@evil.example', body_html=(
            '<p>Hello agent</p><script>document.cookie</script>'
            '<a href="javascript:alert(1)">your invoice</a><img src="x.png" onerror="alert(2)">'
            '<iframe src="https://evil.example/"></iframe><form action="https://evil.example/"><input></form>'
            '<p onclick="alert(3)" style="color: red">styled</p>'))
        malformed = self.deliver(subject="Malformed sender", sender={'name': 'Not an address',
                                                                     'address': 'not an address <<@>>'})
        missing = self.deliver(subject="No sender", sender={'name': '', 'address': ''})
        crowd = self.deliver(subject="To everyone", sender='newsletter@fabrikam.com',
                             to=['reader%03d@fabrikam.com' % index for index in range(500)])
        untitled = self.deliver(subject='', sender='terse@fabrikam.com', body_html='<p>?</p>')
        self.run_delta(self.address)

        record = self.imported(big)
        self.assertGreater(len(record.mail_message_id.body), 2 * 1024 * 1024, "the body is kept whole")
        self.assertEqual(record.mail_message_id.author_id, known, "the author is matched by address")
        self.assertEqual(record.conversation_id.partner_id, known)

        body = self.imported(hostile).mail_message_id.body
        self.assertIn('Hello agent', body)
        self.assertIn('your invoice', body)
        for active in ('<script', 'document.cookie', 'javascript:', 'onerror', 'onclick', '<iframe', '<form'):
            self.assertNotIn(active, body.lower())
        message = self.imported(hostile).mail_message_id
        self.assertFalse(message.author_id, "no contact is created for an unknown sender by default")
        self.assertEqual(message.email_from, 'stranger@evil.example')

        message = self.imported(malformed).mail_message_id
        self.assertFalse(message.author_id)
        self.assertNotIn('<<', message.email_from or '')
        self.assertIn('Not an address', message.email_from)
        message = self.imported(missing).mail_message_id
        self.assertFalse(message.author_id)
        self.assertFalse(message.email_from)

        message = self.imported(crowd).mail_message_id
        self.assertEqual(len(message.incoming_email_to.split(', ')), 500)
        self.assertIn('reader499@fabrikam.com', message.incoming_email_to)

        record = self.imported(untitled)
        self.assertFalse(record.mail_message_id.subject)
        self.assertEqual(record.conversation_id.name, "(no subject)")

        self.assertEqual(self.env['res.partner'].search_count([]), partners_before, "no contact was created")
        self.assertFalse(self.env['res.partner'].search([('email_normalized', '=', 'stranger@evil.example')]))

        # With Create Contacts on, an unknown sender becomes a contact (once, however many e-mails).
        self.inbox.create_partners = True
        first = self.deliver(subject="Hello from a newcomer", sender={'name': "New Comer",
                                                                       'address': 'newcomer@fabrikam.com'})
        second = self.deliver(subject="Again", sender='newcomer@fabrikam.com')
        self.run_delta(self.address)
        newcomer = self.env['res.partner'].search([('email_normalized', '=', 'newcomer@fabrikam.com')])
        self.assertEqual(len(newcomer), 1)
        self.assertEqual(newcomer.name, "New Comer")
        self.assertEqual(self.imported(first).mail_message_id.author_id, newcomer)
        self.assertEqual(self.imported(second).mail_message_id.author_id, newcomer)
        self.assertInSync(self.address)

    def test_attachments_inline_files_html_big_and_odd_names(self):
        big_file = os.urandom(20 * 1024 * 1024)
        odd_names = ["Résumé – 日本語 📎.pdf", "../../etc/passwd", "bad\x00na\x07me.txt",
                     "invoice\u202efdp.exe", "Ã©tÃ© latin-1 read as UTF-8.txt"]
        delivered = self.deliver(
            subject="Files", sender='files@fabrikam.com',
            body_html='<p>Our logo: <img src="cid:logo@fabrikam"></p>',
            attachments=[
                _file('logo.png', PNG, 'image/png', is_inline=True, content_id='<logo@fabrikam>'),
                _file('contract.pdf', b'%PDF-1.4 contract', 'application/pdf'),
                _file('page.html', b'<html><script>alert(document.cookie)</script></html>', 'text/html'),
                _file('drawing.svg', b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
                      'image/svg+xml'),
                *[_file(name, b'odd', 'text/plain') for name in odd_names],
            ])
        huge = self.deliver(subject="A big file", sender='files@fabrikam.com',
                            attachments=[_file('backup.bin', big_file)])
        self.run_delta(self.address)

        record = self.imported(delivered)
        message, conversation = record.mail_message_id, record.conversation_id
        attachments = message.attachment_ids
        self.assertEqual(len(attachments), 4 + len(odd_names))
        for attachment in attachments:
            self.assertEqual((attachment.res_model, attachment.res_id), (conversation._name, conversation.id),
                             "files belong to the conversation")
        by_name = {attachment.name: attachment for attachment in attachments}

        # The inline image is shown inline, through a URL that works without a session.
        logo = by_name['logo.png']
        self.assertTrue(logo.access_token)
        url = '/web/image/%s?access_token=%s' % (logo.id, logo.access_token)
        self.assertIn(url, message.body)
        self.assertNotIn('cid:', message.body)
        self.authenticate(None, None)
        response = self.url_open(url)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.content, PNG)

        # A normal file is an attachment of the conversation, with its bytes.
        contract = by_name['contract.pdf']
        self.assertEqual(contract.raw, b'%PDF-1.4 contract')
        self.assertEqual(contract.mimetype, 'application/pdf')
        self.assertFalse(contract.access_token, "only inline images get a public token")

        # Active content is stored as text: served from Odoo's domain it must not run.
        for name in ('page.html', 'drawing.svg'):
            self.assertNotIn('html', by_name[name].mimetype)
            self.assertNotIn('svg', by_name[name].mimetype)
            self.assertNotIn('xml', by_name[name].mimetype)

        # Odd names are kept (without control characters) and never reach the file system as paths.
        for name in ("Résumé – 日本語 📎.pdf", "../../etc/passwd", "badname.txt", "invoice\u202efdp.exe",
                     "Ã©tÃ© latin-1 read as UTF-8.txt"):
            self.assertIn(name, by_name)
            self.assertNotIn('..', by_name[name].store_fname or '')

        big = self.imported(huge).mail_message_id.attachment_ids
        self.assertEqual(len(big), 1)
        self.assertEqual(big.file_size, 20 * 1024 * 1024)
        self.assertEqual(big.checksum, hashlib.sha1(big_file).hexdigest())
        self.assertEqual(big.res_id, self.imported(huge).conversation_id.id)
        self.assertInSync(self.address)


@tagged('post_install', '-at_install')
class TestMailboxesAndInboxes(OutlookMailSyncCase):
    """ Shared mailboxes and shared inboxes need not be one to one. """

    def deliver_to_both(self, subject):
        """ A customer writes to support@ and billing@ at once: one e-mail, one Message-Id, in both. """
        message_id = '<%s@fabrikam.com>' % subject.replace(' ', '-').lower()
        delivered = [self.deliver(mailbox=mailbox, subject=subject, to=[SUPPORT, BILLING],
                                  internet_message_id=message_id) for mailbox in (SUPPORT, BILLING)]
        self.assertEqual({message['internetMessageId'] for message in delivered}, {message_id})
        self.assertNotEqual(delivered[0]['immutable_id'], delivered[1]['immutable_id'])
        return message_id, delivered

    def emails_with(self, inbox, message_id):
        return self.env['mail.message'].search([
            ('model', '=', 'epilot.shared.conversation'), ('res_id', 'in', inbox.conversation_ids.ids),
            ('message_id', '=', message_id)])

    def test_two_mailboxes_into_one_inbox(self):
        support = self.add_address(SUPPORT)
        inbox = support.shared_inbox_id
        billing = self.add_address(BILLING, inbox=inbox)
        self.assertEqual(billing.shared_inbox_id, inbox)
        self.run_backfill(support)
        self.run_backfill(billing)
        message_id, delivered = self.deliver_to_both("Both teams please")
        self.run_delta()

        emails = self.emails_with(inbox, message_id)
        self.assertEqual(len(emails), 1, "the inbox shows the e-mail once")
        records = self.env['epilot.outlook.message'].search([('internet_message_id', '=', message_id)])
        self.assertEqual(set(records.mapped('graph_id')), {message['immutable_id'] for message in delivered},
                         "each mailbox's copy has its sync record")
        self.assertEqual(records.mail_message_id, emails)
        self.assertEqual(set(records.mapped('mailbox_email')), {SUPPORT, BILLING})
        self.assertEqual(emails.model, 'epilot.shared.conversation')
        conversation = self.env['epilot.shared.conversation'].browse(emails.res_id)
        self.assertEqual(conversation.email_count, 1)

        # Read in one mailbox: the other copy's facts are its own.
        self.graph('PATCH', '/users/%s/messages/%s' % (BILLING, delivered[1]['immutable_id']), {'isRead': True})
        self.run_delta()
        self.assertEqual({record.mailbox_email: record.is_read for record in records},
                         {SUPPORT: False, BILLING: True})
        self.assertEqual(len(self.emails_with(inbox, message_id)), 1)

        # Delivered twice into one mailbox (a mail loop, a resend): both copies read in one round, shown once.
        twice = [self.deliver(subject="Twice", internet_message_id='<twice@fabrikam.com>') for _copy in range(2)]
        self.run_delta()
        self.assertEqual(len(self.emails_with(inbox, '<twice@fabrikam.com>')), 1)
        records = self.env['epilot.outlook.message'].search([('internet_message_id', '=', '<twice@fabrikam.com>')])
        self.assertEqual(set(records.mapped('graph_id')), {message['immutable_id'] for message in twice})
        self.assertEqual(len(records.mail_message_id), 1)
        self.assertInSync(support)
        self.assertInSync(billing)

    def test_one_message_in_two_inboxes_once_each(self):
        support = self.add_address(SUPPORT)
        billing = self.add_address(BILLING)
        self.assertNotEqual(support.shared_inbox_id, billing.shared_inbox_id)
        self.run_backfill(support)
        self.run_backfill(billing)
        message_id, _delivered = self.deliver_to_both("Who handles this")
        self.run_delta()
        self.run_delta()   # a replay imports nothing
        for address in (support, billing):
            self.assertEqual(len(self.emails_with(address.shared_inbox_id, message_id)), 1)
            self.assertInSync(address)
