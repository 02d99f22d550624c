from markupsafe import Markup

from odoo import Command
from odoo.exceptions import AccessError
from odoo.tests import HttpCase, JsonRpcException, new_test_user, tagged
from odoo.tools import mute_logger

from ..outlook_core import mapping
from .common import EpilotOutlookCommon
from .test_inbox_agents import CUSTOMER, InboxImportMixin


@tagged('post_install', '-at_install')
class TestSyncedMailReadOnly(InboxImportMixin, HttpCase, EpilotOutlookCommon):
    """ The e-mails synced from Outlook (and the team's replies Outlook synced back) and their files are the
    team's record of what was said: agents read them and work around them, only email settings editors (and
    the superuser) change or delete them, whatever the door (ORM, ``/mail/message/update_content``,
    ``/mail/attachment/delete``) and whatever gives the agent a right on the conversation (issue 17, point 3).

    ``inbox_other`` (billing@, fed by ``address``) has ``agent_member`` as member.
    """

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.inbox = cls.inbox_other
        cls.inbox.member_user_ids = [Command.link(cls.agent_member.id)]

    def setUp(self):
        super().setUp()
        record = self.import_mail(subject="Contract", body='<p>Please sign the contract.</p>', attachments=[
            mapping.Attachment('att-1', 'contract.pdf', 'application/pdf', b'%PDF-1.4 contract')])
        self.conversation = record.conversation_id
        self.email = record.mail_message_id
        self.file = self.email.attachment_ids
        self.assertEqual((self.email.message_type, len(self.file)), ('email', 1))
        self.reply, self.reply_file = self._team_reply_synced_back()

    def _team_reply_synced_back(self):
        """ A reply ``agent_member`` sent from the chatter, with a file, whose Sent Items copy Outlook synced back:
        a comment authored by the agent, with a sync record pointing to it. """
        file = self.env['ir.attachment'].create({
            'name': 'offer.pdf', 'raw': b'%PDF-1.4 offer', 'res_model': self.conversation._name,
            'res_id': self.conversation.id})
        reply = self.env['mail.message'].create({
            'model': self.conversation._name, 'res_id': self.conversation.id, 'message_type': 'comment',
            'subtype_id': self.env.ref('mail.mt_comment').id, 'author_id': self.agent_member.partner_id.id,
            'body': Markup('<p>Here is our offer.</p>'), 'attachment_ids': [Command.link(file.id)],
        })
        self.env['epilot.outlook.message'].create({
            'inbox_id': self.inbox.id, 'address_id': self.address.id, 'mailbox_email': self.address.email,
            'graph_id': 'AAMk-sent-reply', 'folder': 'sentitems', 'conversation_id': self.conversation.id,
            'mail_message_id': reply.id, 'internet_message_id': reply.message_id,
        })
        return reply, file

    def _clerk(self):
        """ An internal user who is no agent, given every right on every conversation by an extra ACL and rule:
        Odoo's own checks then let them write and delete the conversations' messages and files, so only the
        synced-mail guard stands in the way. """
        group = self.env['res.groups'].create({'name': "Conversation clerks (test)"})
        model = self.env['ir.model']._get(self.conversation._name)
        self.env['ir.model.access'].create({
            'name': "conversation clerk (test)", 'model_id': model.id, 'group_id': group.id,
            'perm_read': True, 'perm_write': True, 'perm_create': True, 'perm_unlink': True})
        self.env['ir.rule'].create({
            'name': "conversation clerk: all (test)", 'model_id': model.id, 'domain_force': "[(1, '=', 1)]",
            'groups': [Command.link(group.id)]})
        clerk = new_test_user(self.env, 'eo_clerk', groups='base.group_user')
        clerk.group_ids = [Command.link(group.id)]
        self.assertTrue(self.conversation.with_user(clerk).has_access('write'))
        self.assertTrue(self.conversation.with_user(clerk).has_access('unlink'))
        return clerk

    # --- the ORM ---------------------------------------------------------------------------------------

    def test_agent_cannot_rewrite_or_delete_synced_mail(self):
        email, file = self.email.with_user(self.agent_member), self.file.with_user(self.agent_member)
        self.assertTrue(email.read(['body']) and file.read(['name']), "the agent reads them")
        with self.assertRaises(AccessError):
            email.write({'body': '<p>Forged</p>'})
        with self.assertRaises(AccessError):
            email.unlink()
        with self.assertRaises(AccessError):
            file.write({'name': 'forged.pdf'})
        with self.assertRaises(AccessError):
            file.unlink()
        self.assertIn('Please sign the contract.', str(self.email.body))
        self.assertEqual(self.file.name, 'contract.pdf')

    def test_team_reply_synced_back_is_read_only_to_its_author(self):
        """ Odoo lets an author edit their message whatever their rights on the document: not once Outlook
        synced it back. """
        reply, file = self.reply.with_user(self.agent_member), self.reply_file.with_user(self.agent_member)
        with self.assertRaises(AccessError):
            reply.write({'body': '<p>We never offered that.</p>'})
        with self.assertRaises(AccessError):
            file.unlink()
        with self.assertRaises(AccessError):
            file.write({'raw': b'%PDF-1.4 other offer'})
        self.assertIn('Here is our offer.', str(self.reply.body))
        self.assertTrue(self.reply_file.exists())

    def test_guard_alone_refuses_a_user_with_every_right_on_the_conversation(self):
        """ The guard does not rely on agents lacking a right on the conversation: a user given read, write
        and unlink on every conversation by another path still changes no synced e-mail nor file. """
        clerk = self._clerk()
        note = self.conversation.with_user(self.agent_member).message_post(
            body="Called her back", message_type='comment', subtype_xmlid='mail.mt_note')
        for message, file in ((self.email, self.file), (self.reply, self.reply_file)):
            with self.subTest(message=message.message_type):
                self.assertFalse(message.with_user(clerk).has_access('write'))
                self.assertFalse(file.with_user(clerk).has_access('write'))
                with self.assertRaises(AccessError):
                    message.with_user(clerk).write({'body': '<p>Forged</p>'})
                with self.assertRaises(AccessError):
                    file.with_user(clerk).unlink()
                with self.assertRaises(AccessError):
                    message.with_user(clerk).unlink()
        self.assertTrue(self.email.exists() and self.file.exists() and self.reply.exists())
        # ... while the conversation's other messages stay theirs, as Odoo decides.
        self.assertTrue(note.with_user(clerk).has_access('write'))

    def test_nobody_but_editors_forges_an_email(self):
        """ Odoo lets whoever may post on a document post a message of any type, with any author, and lets an
        author rewrite their message's type and author: an e-mail from the customer would be made up. In a shared
        inbox an e-mail is Outlook's; agents post as themselves. """
        customer = self.email.author_id or self.env['res.partner'].create({'name': "Carla", 'email': CUSTOMER.address})
        forged = {'body': '<p>I agree to pay 10,000 EUR.</p>', 'message_type': 'email',
                  'subtype_xmlid': 'mail.mt_comment'}
        clerk = self._clerk()
        for user in (self.agent_member, clerk):
            conversation = self.conversation.with_user(user)
            with self.subTest(user=user.login):
                with self.assertRaises(AccessError):
                    conversation.message_post(**forged, author_id=customer.id)
                with self.assertRaises(AccessError):
                    conversation.message_post(**forged, email_from=CUSTOMER.formatted())
                with self.assertRaises(AccessError):
                    self.env['mail.message'].with_user(user).create({
                        'model': conversation._name, 'res_id': conversation.id, 'message_type': 'email',
                        'author_id': customer.id, 'body': '<p>I agree to pay 10,000 EUR.</p>'})
                note = conversation.message_post(body="Called her back", message_type='comment',
                                                 subtype_xmlid='mail.mt_note')
                with self.assertRaises(AccessError):
                    note.write({'message_type': 'email', 'author_id': customer.id})
                note.write({'body': '<p>Called her back twice</p>'})   # their own note stays theirs
        self.assertFalse(self.conversation.message_ids.filtered(lambda message: '10,000' in str(message.body)))
        # An e-mail as themselves is a message of the team; editors (and the import) record the customer's.
        self.conversation.with_user(self.agent_member).message_post(body="From us", message_type='email')
        self.conversation.with_user(self.editor).message_post(**forged, author_id=customer.id)

    def test_editors_and_the_superuser_change_synced_mail(self):
        self.email.with_user(self.editor).write({'body': Markup('<p>Redacted</p>')})
        self.assertIn('Redacted', str(self.email.body))
        self.reply_file.with_user(self.editor).write({'name': 'offer-v1.pdf'})
        self.file.with_user(self.editor).unlink()
        self.reply.with_user(self.admin).unlink()
        self.assertFalse(self.file.exists() or self.reply.exists())
        self.reply_file.unlink()   # the superuser

    def test_agents_keep_working_on_synced_mail(self):
        """ Notes with files, editing their own notes, stars, marking read: as before. """
        Conversation = self.conversation.with_user(self.agent_member)
        note = Conversation.message_post(body="Called her back", message_type='comment',
                                         subtype_xmlid='mail.mt_note', attachments=[('call.txt', b'notes')])
        self.assertEqual(note.attachment_ids.name, 'call.txt')
        Conversation._message_update_content(note, body="Called her back: she signs today")
        self.assertIn('she signs today', str(note.body))
        note.attachment_ids.with_user(self.agent_member).unlink()
        email = self.email.with_user(self.agent_member)
        email.toggle_message_starred()
        self.assertTrue(email.starred)
        Conversation.action_outlook_mark_read()
        self.assertFalse(self.conversation.is_unread)

    # --- the web client's doors ------------------------------------------------------------------------

    def login(self, user):
        self.authenticate(user.login, user.login)

    def update_content(self, message, body):
        return self.make_jsonrpc_request('/mail/message/update_content', {
            'message_id': message.id, 'update_data': {'body': body}})

    def remove(self, message):
        """ What the web client sends to delete a message (``removeParams`` of its message model). """
        return self.make_jsonrpc_request('/mail/message/update_content', {'message_id': message.id, 'update_data': {
            'attachment_ids': [], 'attachment_tokens': [], 'body': '', 'partner_ids': []}})

    def delete_attachment(self, attachment, access_token=None):
        params = {'attachment_id': attachment.id}
        if access_token:
            params['access_token'] = access_token
        return self.make_jsonrpc_request('/mail/attachment/delete', params)

    @mute_logger('odoo.http')
    def test_web_client_refuses_the_agent(self):
        self.login(self.agent_member)
        # The chatter hands the author of a message the token that proves ownership of its files.
        thread = self.make_jsonrpc_request('/mail/thread/messages', {
            'thread_model': self.conversation._name, 'thread_id': self.conversation.id})
        self.assertIn(self.reply.id, thread['messages'])
        for message, body in ((self.email, '<p>Forged</p>'), (self.reply, '<p>We never offered that.</p>')):
            with self.subTest(message=message.message_type), self.assertRaises(JsonRpcException):
                self.update_content(message, body)
        with self.assertRaises(JsonRpcException):
            self.remove(self.reply)
        for file, token in ((self.file, None), (self.reply_file, None),
                            (self.reply_file, self.reply_file._get_ownership_token())):
            with self.subTest(file=file.name, token=bool(token)), self.assertRaises(JsonRpcException):
                self.delete_attachment(file, token)
        self.env.invalidate_all()
        self.assertIn('Please sign the contract.', str(self.email.body))
        self.assertIn('Here is our offer.', str(self.reply.body))
        self.assertTrue(self.file.exists() and self.reply_file.exists())

    @mute_logger('odoo.http')
    def test_no_synced_file_deleted_through_a_note(self):
        """ Deleting a note deletes its files, as the superuser: a synced e-mail's file cannot be made a file of
        an agent's note (Odoo lets an author link any file they read to their message). """
        Conversation = self.conversation.with_user(self.agent_member)
        note = Conversation.message_post(body="See her contract", message_type='comment',
                                         subtype_xmlid='mail.mt_note')
        with self.assertRaises(AccessError):
            note.write({'attachment_ids': [Command.link(self.file.id)]})
        with self.assertRaises(AccessError):
            Conversation.message_post(body="Her contract again", message_type='comment',
                                      subtype_xmlid='mail.mt_note', attachment_ids=self.reply_file.ids)
        self.login(self.agent_member)
        self.remove(note)
        self.assertTrue(self.file.exists() and self.reply_file.exists())
        self.assertEqual(self.email.attachment_ids, self.file)
        # Editors may: it is their record to arrange.
        note.with_user(self.editor).write({'attachment_ids': [Command.link(self.file.id)]})

    def test_web_client_lets_the_agent_work_on_their_notes(self):
        self.login(self.agent_member)
        posted = self.make_jsonrpc_request('/mail/message/post', {
            'thread_model': self.conversation._name, 'thread_id': self.conversation.id,
            'post_data': {'body': 'Called her back', 'message_type': 'comment', 'subtype_xmlid': 'mail.mt_note'}})
        note = self.env['mail.message'].browse(posted['message_id'])
        self.update_content(note, 'Called her back: she signs today')
        self.assertIn('she signs today', str(note.body))
        self.remove(note)
        self.assertTrue(note._filter_empty())
        self.make_jsonrpc_request('/mail/message/reaction', {
            'message_id': self.email.id, 'content': '👍', 'action': 'add'})
        self.assertEqual(self.email.reaction_ids.content, '👍')

    def test_web_client_lets_editors_delete_a_synced_file(self):
        self.login(self.editor)
        self.delete_attachment(self.file)
        self.assertFalse(self.file.exists())
