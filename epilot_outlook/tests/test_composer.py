import base64

from odoo.exceptions import AccessError, UserError
from odoo.tests import new_test_user, tagged

from .mail_sync_common import SUPPORT
from .send_common import OutlookSendCase

CUSTOMER = 'customer@fabrikam.com'


@tagged('post_install', '-at_install')
class TestComposer(OutlookSendCase):
    """ Reply, Reply All and Forward from the conversation (issue 19): who they go to, what they quote, that typed
    addresses and colleagues get a real e-mail from the shared mailbox, and that the mailbox is never a recipient. """

    def compose(self, action, **values):
        """ The composer ``action`` opens, as the agent, sent with ``values`` changed; returns the composer. """
        composer = self.env['mail.compose.message'].with_user(self.agent).with_context(action['context']).create(values)
        composer._action_send_mail()
        self.run_mail_queue()
        return composer

    def partners(self, ids):
        return sorted(self.env['res.partner'].browse(ids).mapped('email_normalized'))

    def test_reply_goes_to_the_sender_only_with_the_original_quoted(self):
        conversation, delivered = self.customer_writes(
            to=[SUPPORT, 'boss@fabrikam.com'], cc=['colleague@fabrikam.com'], body_html='<p>My meter reads 4711.</p>')
        action = conversation.with_user(self.agent).action_outlook_reply()
        context = action['context']
        self.assertEqual(context['epilot_outlook_send_mode'], 'reply')
        self.assertEqual(self.partners(context['default_partner_ids']), [CUSTOMER])
        self.assertFalse(context['default_epilot_outlook_cc_partner_ids'])
        self.assertIn('My meter reads 4711.', context['default_body'])
        self.assertIn('wrote:', context['default_body'])
        self.compose(action, body=str(context['default_body']).replace('<p><br></p>', '<p>Booked, thanks.</p>', 1))
        [record] = self.sent()
        self.assertEqual([a['address'] for a in record['to']], [CUSTOMER])
        self.assertEqual(record['cc'], [])
        self.assertEqual(record['from']['address'], SUPPORT)
        self.assertEqual(record['conversationId'], delivered['conversationId'])
        self.assertIn('Booked, thanks.', record['body']['content'])
        self.assertIn('My meter reads 4711.', record['body']['content'], "the customer gets the original quoted")

    def test_reply_all_copies_the_original_cc_without_the_mailbox(self):
        conversation, delivered = self.customer_writes(
            to=[SUPPORT, 'boss@fabrikam.com'], cc=['colleague@fabrikam.com', SUPPORT],
            body_html='<p>Please check the invoice.</p>')
        action = conversation.with_user(self.agent).action_outlook_reply_all()
        context = action['context']
        self.assertEqual(self.partners(context['default_partner_ids']), ['boss@fabrikam.com', CUSTOMER])
        self.assertEqual(self.partners(context['default_epilot_outlook_cc_partner_ids']), ['colleague@fabrikam.com'])
        self.assertIn('Please check the invoice.', context['default_body'])
        composer = self.compose(action, body='<p>Hallo zusammen</p>')
        self.assertEqual(self.partners(composer.epilot_outlook_cc_partner_ids.ids), ['colleague@fabrikam.com'])
        [record] = self.sent()
        self.assertEqual(sorted(a['address'] for a in record['to']), ['boss@fabrikam.com', CUSTOMER])
        self.assertEqual([a['address'] for a in record['cc']], ['colleague@fabrikam.com'], "Cc stays Cc")
        self.assertEqual(record['conversationId'], delivered['conversationId'])

    def test_forward_to_a_typed_address_and_to_a_colleague_leaves_as_an_email(self):
        conversation, delivered = self.customer_writes(subject='Rechnung 42', attachments=[{
            'name': 'invoice.pdf', 'content_type': 'application/pdf',
            'content_b64': base64.b64encode(b'%PDF-1.4 invoice').decode()}], body_html='<p>See the invoice.</p>')
        # a colleague outside the inbox, who reads mail in Odoo
        colleague = new_test_user(self.env, 'eo_accounting', groups='base.group_user', name='Anna Accounting',
                                  email='anna@contoso.com')
        colleague.notification_type = 'inbox'
        action = conversation.with_user(self.agent).action_outlook_forward()
        context = action['context']
        self.assertFalse(context['default_partner_ids'])
        body = context['default_body']
        for shown in ('Forwarded message', CUSTOMER, 'Rechnung 42', 'invoice.pdf', 'See the invoice.'):
            self.assertIn(shown, body, "the composer shows which e-mail and which files are forwarded")
        # an address nobody knows yet, typed in To (agents may not create contacts)
        self.assertFalse(self.env['res.partner'].with_user(self.agent).has_access('create'))
        [typed] = conversation.with_user(self.agent).outlook_recipients(['Neu Person <new.person@example.org>'])
        self.assertEqual(typed['email'], 'new.person@example.org')
        [found] = conversation.with_user(self.agent).outlook_recipients(['anna@contoso.com'])
        self.assertEqual(found['id'], colleague.partner_id.id, "a colleague's address is the colleague")
        self.compose(action, body=body, partner_ids=[typed['id'], found['id']])
        [record] = self.sent()
        self.assertEqual(sorted(a['address'] for a in record['to']), ['anna@contoso.com', 'new.person@example.org'],
                         "one e-mail, to the colleague too")
        self.assertEqual(record['from']['address'], SUPPORT)
        self.assertEqual(record['attachments'], ['invoice.pdf'])
        self.assertEqual(record['conversationId'], delivered['conversationId'])
        message = conversation.message_ids.filtered(lambda m: 'Forwarded message' in str(m.body))
        self.assertEqual(message.notification_ids.filtered(lambda n: n.res_partner_id == colleague.partner_id)
                         .notification_type, 'email', "an e-mail, not an Odoo notification")
        with self.assertRaises(AccessError):
            message.with_user(colleague).read(['body'])

    def test_an_email_to_a_colleague_leaves_through_the_mailbox(self):
        """ Named in an e-mail (not a note), a colleague gets it by e-mail like anyone else, member or not; as a
        follower, a member reads the team's replies in Odoo. """
        conversation, _delivered = self.customer_writes()
        for login, member in (('eo_colleague_out', False), ('eo_colleague_in', True)):
            with self.subTest(member=member):
                self.sandbox.control('DELETE', '/mail/sent')
                colleague = new_test_user(self.env, login, groups='base.group_user,epilot_outlook.group_agent',
                                          name=login, email='%s@contoso.com' % login)
                colleague.notification_type = 'inbox'
                if member:
                    self.inbox.member_user_ids = [(4, colleague.id)]
                message = self.reply(conversation, mode='forward', partners=colleague.partner_id,
                                     body='<p>FYI</p>')
                self.run_mail_queue()
                self.assertEqual([[a['address'] for a in record['to']] for record in self.sent()],
                                 [['%s@contoso.com' % login]])
                self.assertEqual(message.notification_ids.notification_type, 'email')

    def test_typed_recipients_are_for_senders_and_real_addresses(self):
        conversation, _delivered = self.customer_writes()
        as_agent = conversation.with_user(self.agent)
        with self.assertRaisesRegex(UserError, 'not an e-mail address'):
            as_agent.outlook_recipients(['hello'])
        with self.assertRaisesRegex(UserError, 'own mailbox'):
            as_agent.outlook_recipients([SUPPORT.upper()])
        outsider = new_test_user(self.env, 'eo_outsider_compose', groups='base.group_user,epilot_outlook.group_agent')
        for method in ('action_outlook_reply', 'action_outlook_reply_all', 'action_outlook_forward'):
            with self.subTest(method=method), self.assertRaises(AccessError):
                getattr(conversation.with_user(outsider), method)()
        # the send check alone, for someone who may read it (issue 17: each guard on its own)
        with self.assertRaisesRegex(AccessError, 'not a member'):
            conversation.with_user(outsider).sudo().outlook_recipients(['x@example.org'])
        self.assertFalse(self.env['res.partner'].search([('email', '=', 'x@example.org')]))

    def test_typed_recipients_never_tell_a_contact_the_agent_may_not_see(self):
        """ A typed address names a contact the agent may read, shared or of the conversation's company; another
        company's contact of that address is never told (its name), a new one is made instead. """
        conversation, _delivered = self.customer_writes()
        Partner = self.env['res.partner']
        company = conversation.company_id
        other = self.env['res.company'].create({'name': 'Other Company'})
        hidden = Partner.create({'name': 'Secret Other Name', 'email': 'secret@other.example',
                                 'company_id': other.id})
        shared = Partner.create({'name': 'Shared Contact', 'email': 'shared@other.example'})
        own = Partner.create({'name': 'Own Contact', 'email': 'own@other.example', 'company_id': company.id})
        as_agent = conversation.with_user(self.agent)
        self.assertFalse(hidden.with_user(self.agent).has_access('read'))
        found = as_agent.outlook_recipients(['secret@other.example', 'shared@other.example', 'own@other.example'])
        self.assertEqual([partner['id'] for partner in found[1:]], [shared.id, own.id])
        new = Partner.browse(found[0]['id'])
        self.assertNotEqual(new, hidden)
        self.assertEqual((new.name, new.email, found[0]['name']),
                         ('secret@other.example', 'secret@other.example', 'secret@other.example'))
        self.assertNotIn(new.company_id, other)
        # Another company's contact the agent may read (a member of both) is still not this conversation's.
        self.agent.company_ids = [(4, other.id)]
        self.assertTrue(hidden.with_user(self.agent).has_access('read'))
        other_only = Partner.create({'name': 'Other Only', 'email': 'other.only@other.example',
                                     'company_id': other.id})
        [typed] = as_agent.outlook_recipients(['other.only@other.example'])
        self.assertNotEqual(typed['id'], other_only.id)
        self.assertEqual(typed['name'], 'other.only@other.example')

    def test_the_mailbox_is_never_a_suggested_recipient(self):
        conversation, _delivered = self.customer_writes(to=[SUPPORT], cc=['colleague@fabrikam.com', SUPPORT])
        suggested = conversation.with_user(self.agent)._message_get_suggested_recipients(
            reply_discussion=True, no_create=True)
        emails = [recipient['email'] for recipient in suggested]
        self.assertIn(CUSTOMER, emails)
        self.assertNotIn(SUPPORT, emails)

    def test_example_template_fills_in_the_conversation_and_leaves_as_the_mailbox(self):
        conversation, _delivered = self.customer_writes(subject='Zählerstand März')
        template = self.env.ref('epilot_outlook.mail_template_conversation_acknowledge')
        action = conversation.with_user(self.agent).action_outlook_reply()
        composer = self.env['mail.compose.message'].with_user(self.agent).with_context(action['context']).create({})
        composer.template_id = template
        self.assertIn('Thank you for your e-mail "Zählerstand März"', composer.body)
        self.assertIn(conversation.partner_id.name, composer.body)
        self.assertIn('Alice Agent', composer.body)
        self.assertIn('wrote:', composer.body, "the quoted original stays below the template's text")
        self.assertEqual(composer.subject, 'Re: Zählerstand März')
        composer._action_send_mail()
        self.run_mail_queue()
        [record] = self.sent()
        self.assertEqual(record['from']['address'], SUPPORT)
        self.assertEqual([a['address'] for a in record['to']], [CUSTOMER])
        self.assertIn('Zählerstand März', record['body']['content'])
        # a template sends as the mailbox only for its members: the send check alone refuses one who may read the
        # conversation (the composer in sudo, as a server action or an automation would run it)
        outsider = new_test_user(self.env, 'eo_template_outsider', groups='base.group_user,epilot_outlook.group_agent')
        with self.assertRaisesRegex(AccessError, 'not a member'):
            self.env['mail.compose.message'].with_user(outsider).sudo().with_context(
                default_model=conversation._name, default_res_ids=conversation.ids,
                default_composition_mode='comment', default_subtype_id=self.env.ref('mail.mt_comment').id,
            ).create({'template_id': template.id, 'partner_ids': conversation.partner_id.ids})._action_send_mail()
