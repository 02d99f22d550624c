from markupsafe import Markup

from odoo.fields import Command
from odoo.tests import TransactionCase, tagged

from ..tools import bulk


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
