from markupsafe import Markup

from odoo.fields import Command
from odoo.tests import TransactionCase, tagged
from odoo.tools import SQL

from ..outlook_core import mapping
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
        # As the import gives them: bodies sanitized by the field's own sanitizer, the raw one of a base64 image.
        raw_bodies = [row['body'] if 'data:image' in row['body'] else '' for row in rows]
        sanitize = self.env['epilot.outlook.message']._outlook_body_sanitizer()
        rows = [{**row, 'body': sanitize(row['body'])} for row in rows]
        created = self.env['epilot.outlook.message']._outlook_create_mail_messages(Message, rows, raw_bodies)

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


@tagged('post_install', '-at_install')
class TestImportPlans(TransactionCase):
    """ The import's lookups read the rows they look for, not the whole inbox, once statistics are fresh. """

    def test_lookups_by_id_use_the_index_after_analyze(self):
        inbox = self.env['epilot.shared.inbox'].create({'name': "Support"})
        Message = self.env['epilot.outlook.message']
        # Immutable ids as long as Outlook's (about 150 characters).
        graph_id = 'AAkALgAAAAAAHYQDEapmEc2byACqAC-EWg0A9q8N0esp7UehRBuMAklvCtsSaNISAoYMonMyBYjVAAA%070d='.__mod__
        bulk.insert_records(Message, [{
            'inbox_id': inbox.id, 'mailbox_email': 'support@contoso.com', 'graph_id': graph_id(index),
            'internet_message_id': '<%d@fabrikam.com>' % index, 'folder': 'inbox', 'subject': "Subject %d" % index,
        } for index in range(10000)])
        Message._outlook_analyze()
        wanted = [graph_id(index) for index in range(0, 10000, 200)]
        query = Message._search([('inbox_id', '=', inbox.id), ('graph_id', 'in', wanted)])
        self.env.cr.execute(SQL("EXPLAIN %s", query.select()))
        plan = '\n'.join(row[0] for row in self.env.cr.fetchall())
        self.assertRegex(plan, r'Index Cond: .*graph_id', "the 50 ids are looked up in the index:\n%s" % plan)
        self.assertEqual(set(Message._outlook_known(inbox, wanted)), set(wanted))
        # The import's lookup (ids and Message-Ids in one query) reads through both indexes, not the inbox.
        page = [mapping.OutlookItem(graph_id=graph_id(index), folder='inbox', internet_message_id='<%d@fabrikam.com>' % (
            index + 1)) for index in range(0, 10000, 200)]
        Message.invalidate_model()
        with self.assertQueryCount(1):
            records = Message._outlook_lookup(inbox, page)
        self.assertEqual(records.mapped("graph_id"), wanted, "those rows show no e-mail: found by id only")
        self.env.cr.execute(SQL("EXPLAIN %s", Message._search(Message._outlook_lookup_domain(inbox, page)).select()))
        plan = '\n'.join(row[0] for row in self.env.cr.fetchall())
        self.assertRegex(plan, r'BitmapOr[\s\S]*Index Cond: .*graph_id', plan)
        self.assertNotIn('Seq Scan', plan)
        self.assertNotRegex(plan, r'Index Cond: \(inbox_id = \d+\)\n', "no branch reads the whole inbox:\n" + plan)
