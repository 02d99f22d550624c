from odoo.exceptions import AccessError
from odoo.tests import HttpCase, JsonRpcException, tagged
from odoo.tools import mute_logger

from ..outlook_core import mapping
from .common import EpilotOutlookCommon
from .test_inbox_agents import InboxImportMixin

ACCESS_ERROR = 'odoo.exceptions.AccessError'


@tagged('post_install', '-at_install')
class TestInboxAccessOverHttp(InboxImportMixin, HttpCase, EpilotOutlookCommon):
    """ Who reads a shared inbox's mail, enforced by record rules whatever the door: the ORM, JSON-RPC
    (``/web/dataset/call_kw``), ``/web/content``, ``/web/image`` and ``/mail/thread/messages``.

    ``inbox_other`` (billing@, fed by ``address``) has ``agent_member`` as member here; ``agent_outsider`` is
    an agent of no inbox; ``portal`` is a portal user; ``editor`` manages every inbox.
    """

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.inbox = cls.inbox_other
        cls.inbox.member_user_ids = [(4, cls.agent_member.id)]

    def setUp(self):
        super().setUp()
        record = self.import_mail(subject="Private matter", body='<p>my IBAN is DE00 1234</p>', attachments=[
            mapping.Attachment('att-1', 'contract.pdf', 'application/pdf', b'%PDF-1.4 secret')])
        self.record = record
        self.conversation = record.conversation_id
        self.message = record.mail_message_id
        self.attachment = self.message.attachment_ids
        self.assertEqual(len(self.attachment), 1)

    def login(self, user):
        self.authenticate(user.login, user.login)

    def call_kw(self, model, method, args, kwargs=None):
        return self.make_jsonrpc_request('/web/dataset/call_kw/%s/%s' % (model, method), {
            'model': model, 'method': method, 'args': args, 'kwargs': kwargs or {}})

    def thread_messages(self):
        return self.make_jsonrpc_request('/mail/thread/messages', {
            'thread_model': self.conversation._name, 'thread_id': self.conversation.id})

    def test_member_reads_everything(self):
        for user in (self.agent_member, self.editor, self.admin):
            with self.subTest(user=user.login):
                self.login(user)
                result = self.thread_messages()
                self.assertIn(self.message.id, result['messages'])
                rows = self.call_kw('mail.message', 'read', [[self.message.id], ['body']])
                self.assertIn('DE00 1234', rows[0]['body'])
                rows = self.call_kw('ir.attachment', 'read', [[self.attachment.id], ['name']])
                self.assertEqual(rows[0]['name'], 'contract.pdf')
                response = self.url_open('/web/content/%d' % self.attachment.id)
                self.assertEqual((response.status_code, response.content), (200, b'%PDF-1.4 secret'))

    @mute_logger('odoo.http', 'odoo.addons.base.models.ir_rule', 'odoo.models')
    def test_outsiders_read_nothing(self):
        for user in (self.agent_outsider, self.internal, self.portal):
            with self.subTest(user=user.login):
                self.login(user)
                # Odoo answers a thread one cannot read with the messages one can (none of this inbox's).
                result = self.thread_messages()
                self.assertNotIn(self.message.id, result['messages'])
                self.assertNotIn('DE00 1234', str(result))
                with self.assertRaises(JsonRpcException) as caught:
                    self.call_kw('mail.message', 'read', [[self.message.id], ['body']])
                self.assertEqual(caught.exception.args[0], ACCESS_ERROR)
                found = self.call_kw('mail.message', 'search_read', [[('model', '=', self.conversation._name)]],
                                     {'fields': ['body']})
                self.assertFalse(found, "searching finds none of the inbox's e-mails")
                with self.assertRaises(JsonRpcException):
                    self.call_kw('ir.attachment', 'read', [[self.attachment.id], ['datas']])
                try:
                    found = self.call_kw('ir.attachment', 'search_read',
                                         [[('res_model', '=', self.conversation._name)]], {'fields': ['name']})
                except JsonRpcException as error:   # no right on conversations at all (internal, portal)
                    self.assertEqual(error.args[0], ACCESS_ERROR)
                else:
                    self.assertFalse(found)
                with self.assertRaises(JsonRpcException):
                    self.call_kw(self.conversation._name, 'read', [[self.conversation.id], ['name']])
                for url in ('/web/content/%d' % self.attachment.id, '/web/content/%d?download=true'
                            % self.attachment.id, '/web/image/%d' % self.attachment.id):
                    response = self.url_open(url)
                    # /web/image answers a placeholder picture to whoever may not see the file.
                    self.assertIn(response.status_code, (200, 403, 404) if '/web/image' in url else (403, 404), url)
                    self.assertNotIn(b'secret', response.content)

    @mute_logger('odoo.http', 'odoo.addons.base.models.ir_rule', 'odoo.models')
    def test_json2_api_keys(self):
        """ An integration's API key acts as its user: the member's reads the e-mail, the outsider's does not. """
        def json2(user, model, method, payload):
            key = self.env['res.users.apikeys'].with_user(user).sudo()._generate(None, 'integration', None)
            return self.url_open('/json/2/%s/%s' % (model, method), json=payload,
                                 headers={'Authorization': 'bearer %s' % key})

        response = json2(self.agent_member, 'mail.message', 'read', {'ids': self.message.ids, 'fields': ['body']})
        self.assertEqual(response.status_code, 200, response.text[:300])
        self.assertIn('DE00 1234', response.json()[0]['body'])
        for user in (self.agent_outsider, self.internal):
            with self.subTest(user=user.login):
                response = json2(user, 'mail.message', 'read', {'ids': self.message.ids, 'fields': ['body']})
                self.assertEqual(response.status_code, 403, response.text[:300])
                self.assertNotIn('DE00', response.text)
                response = json2(user, 'ir.attachment', 'read', {'ids': self.attachment.ids, 'fields': ['datas']})
                self.assertEqual(response.status_code, 403, response.text[:300])
                response = json2(user, 'mail.message', 'search_read', {
                    'domain': [('model', '=', self.conversation._name)], 'fields': ['body']})
                self.assertEqual((response.status_code, response.json()), (200, []))

    def test_sync_records_are_for_editors(self):
        Message = self.env['epilot.outlook.message']
        with self.assertRaises(AccessError):
            Message.with_user(self.agent_member).browse(self.record.id).read(['subject'])
        self.assertEqual(Message.with_user(self.editor).browse(self.record.id).read(['subject'])[0]['subject'],
                         "Private matter")
        with self.assertRaises(AccessError):
            self.conversation.with_user(self.agent_outsider).action_outlook_mark_read()
        self.assertTrue(self.conversation.is_unread, "a non-member cannot mark it read")

    def test_agents_cannot_delete_synced_mail(self):
        with self.assertRaises(AccessError):
            self.message.with_user(self.agent_member).unlink()
        note = self.conversation.with_user(self.agent_member).message_post(body="Called her back", message_type='comment')
        self.assertTrue(note, "agents still post on the conversations they read")
        self.message.with_user(self.editor).unlink()
        self.assertFalse(self.message.exists())

    def test_membership_is_managed_by_editors(self):
        with self.assertRaises(AccessError):
            self.inbox.with_user(self.agent_member).member_user_ids = [(4, self.agent_outsider.id)]
        self.inbox.with_user(self.editor).member_user_ids = [(4, self.agent_outsider.id)]
        self.assertEqual(self.conversation.with_user(self.agent_outsider).read(['name'])[0]['name'],
                         "Private matter")
        self.assertTrue(self.message.with_user(self.agent_outsider).read(['body']))

    def test_agent_reads_in_the_browser(self):
        """ The web client: the inbox's menu entry with its unread count, the list, the conversation's chatter;
        opening it marks it read (and queues the flag for Outlook). """
        self.message.body = '<p>Where is my refund?</p>'
        self.start_tour('/odoo/action-epilot_outlook.epilot_shared_conversation_action', 'epilot_outlook_agent_reads',
                        login=self.agent_member.login)
        self.assertFalse(self.conversation.is_unread)
        self.assertTrue(self.record.read_push_pending)
