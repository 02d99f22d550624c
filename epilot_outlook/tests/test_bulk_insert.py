from types import SimpleNamespace

from markupsafe import Markup

from odoo.fields import Command
from odoo.tests import TransactionCase, tagged

from ..tools import bulk
from .mail_sync_common import SUPPORT, OutlookMailSyncCase


@tagged('post_install', '-at_install')
class TestBulkInsert(TransactionCase):
    """ The import's one-statement create writes what ``create()`` would have written. """

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.inbox = cls.env['epilot.shared.inbox'].create({'name': "Support"})
        cls.conversation = cls.env['epilot.shared.conversation'].create({'inbox_id': cls.inbox.id, 'name': "Hi"})
        cls.subtype_id = cls.env.ref('mail.mt_comment').id

    def values(self, **values):
        return {'model': self.conversation._name, 'res_id': self.conversation.id, 'message_type': 'email',
                'subtype_id': self.subtype_id, 'subject': "Hello", 'body': Markup('<p>Hello</p>'),
                'author_id': False, 'email_from': 'customer@fabrikam.com', 'incoming_email_to': False,
                'incoming_email_cc': False, 'reply_to': False, 'message_id': '<a@fabrikam.com>',
                'date': '2026-11-30 10:00:00', 'attachment_ids': [Command.set([])], **values}

    def test_mail_messages_as_create_writes_them(self):
        Message = self.env['mail.message']
        attachment = self.env['ir.attachment'].create({
            'name': 'a.txt', 'raw': b'a', 'res_model': self.conversation._name, 'res_id': self.conversation.id})
        self.assertFalse(self.conversation.message_ids.filtered(lambda message: message.message_type == 'email'))
        rows = [
            self.values(body=Markup('<p onclick="alert(1)">Hi</p><script>alert(2)</script>'),
                        attachment_ids=[Command.set([attachment.id])]),
            self.values(message_id=False, subject="No Message-Id"),
            self.values(message_id='<c@fabrikam.com>', subject="With an image",
                        body=Markup('<p><img src="data:image/png;base64,iVBORw0KGgo="></p>')),
            self.values(message_id='<d@fabrikam.com>', subject="Last"),
        ]
        created = self.env['epilot.outlook.message']._outlook_create_mail_messages(Message, rows)

        self.assertEqual(created.mapped('subject'), ["Hello", "No Message-Id", "With an image", "Last"],
                         "the e-mails come back in the order given")
        sanitized, untitled, imaged, last = created
        self.assertIn('Hi', sanitized.body)
        for active in ('onclick', '<script', 'alert(2)'):
            self.assertNotIn(active, sanitized.body)
        self.assertEqual(sanitized.attachment_ids, attachment)
        self.assertTrue(untitled.message_id and untitled.message_id.startswith('<'), "Odoo gives its own Message-Id")
        self.assertNotIn('data:image', imaged.body, "a base64 image becomes an attachment, as create() does")
        self.assertIn('/web/image/', imaged.body)
        self.assertEqual(len(imaged.attachment_ids), 1)
        self.assertEqual(last.message_id, '<d@fabrikam.com>')
        for message in created:
            self.assertEqual((message.create_uid, message.write_uid), (self.env.user, self.env.user))
            self.assertTrue(message.create_date)
        self.assertEqual(self.conversation.message_ids.filtered(lambda message: message.message_type == 'email'),
                         created, "the conversation's chatter shows them at once")

    def test_defaults_constraints_and_bad_input(self):
        Inbox = self.env['epilot.shared.inbox']
        inboxes = bulk.insert_records(Inbox, [{'name': "One"}, {'name': "Two"}])
        self.assertEqual(inboxes.mapped('name'), ["One", "Two"])
        self.assertTrue(all(inboxes.mapped('active')), "defaults are those of default_get")
        self.assertEqual(inboxes.company_id, self.env.company)
        with self.assertRaises(ValueError):
            bulk.insert_records(Inbox, [{'name': "Three", 'no_such_field': 1}])
        self.assertFalse(bulk.insert_records(Inbox, []))

    def test_sanitized_ahead_equals_the_fields_own(self):
        field = self.env['mail.message']._fields['body']
        for html in (HOSTILE, '<p style="color: red; position: fixed">styled</p><!--[if mso]><b>x</b><![endif]-->',
                     '<div><blockquote>quoted</blockquote><p>Hi</p></div>', '', '<p>caf\u00e9 \u2603</p>'):
            ahead = bulk.sanitize_for(field, html)
            self.assertIsInstance(ahead, bulk.Sanitized)
            self.assertEqual(str(ahead), str(field.convert_to_column(html, self.env['mail.message']) or ''))
        with self.assertRaises(ValueError):
            bulk.sanitize_for(SimpleNamespace(sanitize_overridable=True), '<p>x</p>')


# Everything a sanitizer must remove, in one body.
HOSTILE = ('<p>Hello agent</p><script>document.cookie</script><a href="javascript:alert(1)">your invoice</a>'
           '<img src="x.png" onerror="alert(2)"><iframe src="https://evil.example/"></iframe>'
           '<form action="https://evil.example/"><input></form><p onclick="alert(3)">styled</p>')


@tagged('post_install', '-at_install')
class TestSanitizedAhead(OutlookMailSyncCase):
    """ The backfill sanitizes the next page's bodies while it imports a page: they are stored as safe. """

    def test_pages_read_ahead_store_sanitized_bodies(self):
        # Newest first, 50 a page: 55 newer messages put it on the second page, the first one read ahead.
        hostile = self.deliver(subject="Older and hostile", body_html=HOSTILE)
        self.sandbox.control('POST', '/clock/advance', {'seconds': 60})
        for index in range(55):
            self.deliver(subject="Newer %d" % index)
        address = self.add_address(SUPPORT)
        self.run_backfill(address)
        record = self.env['epilot.outlook.message'].search([('graph_id', '=', hostile['immutable_id'])])
        body = record.mail_message_id.body
        self.assertIn('your invoice', body)
        for active in ('<script', 'document.cookie', 'javascript:', 'onerror', 'onclick', '<iframe', '<form'):
            self.assertNotIn(active, body.lower())
        self.assertInSync(address)
