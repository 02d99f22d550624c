""" Who may make mail leave as a shared mailbox, end to end against the sandbox (issue 17, points 1, 2 and 4).

The rule is enforced where mail leaves: the Outlook server's Graph session in Odoo's mail queue
(``epilot.outlook.email.address._outlook_send_refusal``). ``message_post`` answers early for the common case;
each guard is tested here on its own, with the other one out of the way.
"""
from odoo.exceptions import AccessError
from odoo.tests import new_test_user, tagged
from odoo.tools import mute_logger

from .mail_sync_common import BILLING, SUPPORT
from .send_common import OutlookSendCase

MAIL_LOGGERS = ('odoo.addons.mail.models.mail_mail', 'odoo.addons.epilot_outlook.models.mail_mail')


@tagged('post_install', '-at_install')
class TestSendAuthorization(OutlookSendCase):
    """ ``support@`` (inbox Support, ``self.agent`` = Ann is a member) and ``billing@`` (inbox Billing, no member)
    are both connected; Ivy is an internal user of no Shared Inboxes group. """

    def setUp(self):
        super().setUp()
        self.billing = self.add_address(BILLING)
        self.run_backfill(self.billing)
        self.billing_inbox = self.billing.shared_inbox_id
        self.ivy = new_test_user(self.env, 'eo_ivy', groups='base.group_user', name='Ivy Internal',
                                 email='ivy@odoo.example.com')
        self.customer = self.env['res.partner'].create({'name': 'Kunde', 'email': 'kunde@fabrikam.com'})
        self.sandbox.control('DELETE', '/mail/sent')

    def sent_from(self, mailbox):
        return [record for record in self.sent() if record['from']['address'] == mailbox]

    def queued_mail(self, user, values):
        """ A ``mail.mail`` as Odoo's mail code makes it for ``user`` (its creator), bypassing ``message_post``:
        what reaches the mail queue whatever door made it. """
        return self.env['mail.mail'].with_user(user).sudo().create({
            'email_from': values.pop('email_from', '"Billing" <%s>' % BILLING), 'subject': 'Zahlung',
            'body_html': '<p>Bitte zahlen Sie an DE99 9999.</p>', 'recipient_ids': self.customer.ids, **values})

    def assertRefused(self, mail, reason):
        mail.invalidate_recordset()
        self.assertEqual(mail.state, 'exception')
        self.assertIn(reason, mail.failure_reason)

    # --- point 1: nothing leaves as a mailbox the sender may not use -----------------------------------------

    @mute_logger(*MAIL_LOGGERS)
    def test_member_of_support_cannot_send_as_billing_through_message_post(self):
        """ Ann, agent of Support only: a post with email_from = billing@ and a customer, without message type
        (a notification), and the same as a note. Nothing leaves from billing@. """
        conversation, _delivered = self.customer_writes()
        as_ann = conversation.with_user(self.agent)
        as_ann.message_post(body='<p>x</p>', email_from=BILLING, partner_ids=self.customer.ids)
        as_ann.message_post(body='<p>y</p>', email_from=BILLING, partner_ids=self.customer.ids,
                            message_type='comment', subtype_xmlid='mail.mt_note')
        billing_server = self.billing.mail_server_ids
        as_ann.message_post(body='<p>z</p>', partner_ids=self.customer.ids, message_type='comment',
                            subtype_xmlid='mail.mt_comment', mail_server_id=billing_server.id)
        self.run_mail_queue()
        self.assertEqual(self.sent_from(BILLING), [])
        # What she may send left as Support, the mailbox of her inbox, and never through billing@'s server.
        self.assertEqual({record['from']['address'] for record in self.sent()}, {SUPPORT})
        self.assertFalse(self.env['mail.mail'].sudo().search([('mail_server_id', '=', billing_server.id)]))

    @mute_logger(*MAIL_LOGGERS)
    def test_the_queue_refuses_another_inboxs_mailbox(self):
        """ The queue's guard alone: a mail of a Support conversation bound for billing@'s server, asked for by
        Ann (a member of Support), by From or by a forced server, is refused with the reason. """
        conversation, _delivered = self.customer_writes()
        by_from = self.queued_mail(self.agent, {'model': conversation._name, 'res_id': conversation.id})
        forced = self.queued_mail(self.agent, {'model': conversation._name, 'res_id': conversation.id,
                                               'email_from': SUPPORT,
                                               'mail_server_id': self.billing.mail_server_ids.id})
        (by_from | forced).send()
        for mail in (by_from, forced):
            self.assertRefused(mail, "of another inbox's conversation")
        self.assertEqual(self.sent(), [])

    @mute_logger(*MAIL_LOGGERS)
    def test_internal_user_mass_mail_as_billing_is_refused(self):
        """ Ivy, no agent at all, mass-mails a contact from billing@ with the full composer. """
        composer = self.env['mail.compose.message'].with_user(self.ivy).with_context(
            default_model='res.partner', default_res_ids=self.customer.ids, default_composition_mode='mass_mail',
        ).create({'subject': 'Rechnung', 'body': '<p>Bitte zahlen</p>', 'email_from': BILLING})
        composer._action_send_mail()
        mails = self.env['mail.mail'].sudo().search([('model', '=', 'res.partner'), ('res_id', '=', self.customer.id)])
        self.assertTrue(mails, "the composer made the e-mail")
        self.run_mail_queue()
        for mail in mails:
            self.assertRefused(mail, "is Odoo's own mail")
        self.assertEqual(self.sent(), [])

    @mute_logger(*MAIL_LOGGERS)
    def test_non_member_with_read_access_cannot_send(self):
        """ Each send guard on its own: a user who can read Billing's conversation through another rule, but is
        no member of Billing, is refused by the conversation's send check (``message_post``), and a mail made
        for him anyway is refused by the queue. """
        customer = self.env['res.partner'].create({'name': 'Kundin', 'email': 'kundin@fabrikam.com'})
        conversation = self.env['epilot.shared.conversation'].create({
            'inbox_id': self.billing_inbox.id, 'name': 'Rechnung 42', 'partner_id': customer.id})
        reader = new_test_user(self.env, 'eo_reader', groups='base.group_user,epilot_outlook.group_agent')
        self.env['ir.rule'].create({
            'name': 'test: agents read Billing', 'model_id': self.env['ir.model']._get_id(conversation._name),
            'domain_force': [('inbox_id', '=', self.billing_inbox.id)],
            'groups': [self.env.ref('epilot_outlook.group_agent').id],
            'perm_read': True, 'perm_write': False, 'perm_create': False, 'perm_unlink': False,
        })
        self.assertEqual(conversation.with_user(reader).read(['name'])[0]['name'], 'Rechnung 42')
        with self.assertRaisesRegex(AccessError, 'not a member of the shared inbox %s' % self.billing_inbox.name):
            conversation.with_user(reader).message_post(
                body='<p>Hallo</p>', message_type='comment', subtype_xmlid='mail.mt_comment',
                partner_ids=customer.ids)
        mail = self.queued_mail(reader, {'model': conversation._name, 'res_id': conversation.id,
                                         'recipient_ids': customer.ids})
        mail.send()
        self.assertRefused(mail, 'is not a member of the shared inbox %s' % self.billing_inbox.name)
        self.assertEqual(self.sent(), [])
        # A member may: the same mail, asked for by the editor who manages the inbox, leaves.
        allowed = self.queued_mail(self.odoo_admin, {'model': conversation._name, 'res_id': conversation.id,
                                                     'recipient_ids': customer.ids})
        allowed.send()
        self.assertEqual([record['from']['address'] for record in self.sent()], [BILLING])

    def test_member_removed_before_the_queue_ran_sends_nothing(self):
        """ The queue checks who asked when the mail leaves, not when it was written: a reply queued by a member
        removed since is refused, and the chatter shows the failure with the reason. """
        conversation, _delivered = self.customer_writes()
        message = conversation.with_user(self.agent).with_context(mail_notify_force_send=False).message_post(
            body='<p>Später</p>', partner_ids=self.customer.ids, message_type='comment',
            subtype_xmlid='mail.mt_comment')
        self.assertEqual(self.mails_of(message).state, 'outgoing')
        self.inbox.member_user_ids = [(3, self.agent.id)]
        with mute_logger(*MAIL_LOGGERS):
            self.run_mail_queue()
        self.assertRefused(self.mails_of(message), 'Alice Agent is not a member of the shared inbox')
        failed = message.notification_ids.filtered(lambda n: n.notification_type == 'email')
        self.assertEqual(failed.mapped('notification_status'), ['exception'])
        self.assertIn('not a member', failed.failure_reason)
        self.assertEqual(self.sent(), [])

    # --- point 2: Odoo's own mail --------------------------------------------------------------------------

    def odoo_own_mail(self):
        """ What ``/web/reset_password`` does for the admin login, as the public user: a mail with a token from
        the company's address (support@ here), of no conversation. """
        public = self.env.ref('base.public_user')
        return self.env['mail.mail'].with_user(public).sudo().create({
            'model': 'res.users', 'res_id': self.odoo_admin.id, 'email_from': '"My Company" <%s>' % SUPPORT,
            'subject': 'Password reset', 'email_to': 'admin@odoo.example.com', 'auto_delete': False,
            'body_html': '<p>Reset: https://odoo.example.com/web/reset_password?token=SECRET-TOKEN-42</p>'})

    @mute_logger(*MAIL_LOGGERS)
    def test_odoo_own_mail_is_refused_by_default(self):
        mail = self.odoo_own_mail()
        mail.send()
        self.assertRefused(mail, "Send Odoo's Other Mail")
        self.assertEqual(self.sent(), [])

    def test_odoo_own_mail_when_allowed_is_never_shown_to_agents(self):
        """ With the per-address option on, Odoo's own mail leaves from the mailbox; its copy in Sent Items is
        known to sync and shown nowhere: no conversation, no e-mail an agent can find. """
        self.address.send_odoo_mail = True
        conversations = self.inbox.conversation_ids
        mail = self.odoo_own_mail()
        mail.send()
        [record] = self.sent()
        self.assertEqual(record['from']['address'], SUPPORT)
        self.run_delta(self.address)
        self.assertEqual(self.inbox.conversation_ids, conversations, "no conversation for Odoo's own mail")
        sync = self.env['epilot.outlook.message'].search([('graph_id', '=', record['sentCopy']['immutableId'])])
        self.assertTrue(sync.odoo_own_mail)
        self.assertFalse(sync.mail_message_id or sync.conversation_id or sync.subject)
        found = self.env['mail.message'].with_user(self.agent).search([('body', 'ilike', 'SECRET-TOKEN-42')])
        self.assertFalse(found)
        self.assertFalse(self.env['mail.message'].sudo().search([
            ('model', '=', 'epilot.shared.conversation'), ('body', 'ilike', 'SECRET-TOKEN-42')]))

    def test_odoo_own_mail_synced_before_it_was_recorded_stays_hidden(self):
        """ The worker died between Graph's send and recording the copy: delta meets the copy first, and the
        outbox (written before the send) tells it is Odoo's own. """
        self.address.send_odoo_mail = True
        Address = type(self.env['epilot.outlook.email.address'])
        self.patch(Address, '_outlook_record_sent', lambda *args, **kwargs: None)
        self.odoo_own_mail().send()
        [record] = self.sent()
        before = self.inbox.conversation_ids
        self.run_delta(self.address)
        self.assertEqual(self.inbox.conversation_ids, before)
        sync = self.env['epilot.outlook.message'].search([('graph_id', '=', record['sentCopy']['immutableId'])])
        self.assertTrue(sync.odoo_own_mail)
        self.assertFalse(sync.mail_message_id)

    def test_adding_the_companys_address_warns(self):
        """ An editor adding the address Odoo sends its own mail from is told what it means. """
        company = self.connection.company_id
        company.email = 'info@contoso.onmicrosoft.com'
        Wizard = self.env['epilot.outlook.address.wizard'].with_user(self.odoo_admin)
        wizard = Wizard.new({'connection_id': self.connection.id, 'email': 'Info@Contoso.onmicrosoft.com'})
        self.assertIn("password resets", wizard.odoo_mail_warning)
        self.assertFalse(Wizard.new({'connection_id': self.connection.id, 'email': BILLING}).odoo_mail_warning)
        self.assertFalse(self.billing.odoo_mail_warning)
        # The default From of Odoo's notifications (the company's alias domain) counts the same.
        company.alias_domain_id = self.env['mail.alias.domain'].create({
            'name': 'contoso.onmicrosoft.com', 'default_from': 'billing'})
        self.billing.invalidate_recordset(['odoo_mail_warning'])
        self.assertIn("password resets", self.billing.with_user(self.odoo_admin).odoo_mail_warning)

    # --- point 4: the outbox is keyed by the mail.mail --------------------------------------------------------

    def test_two_mails_with_one_message_id_are_two_sends(self):
        """ An author may choose a post's Message-Id: a second e-mail with the first's is sent, not taken for
        the first one "already sent". """
        conversation, _delivered = self.customer_writes()
        for body in ('<p>Erste</p>', '<p>Zweite</p>'):
            conversation.with_user(self.agent).message_post(
                body=body, message_type='comment', subtype_xmlid='mail.mt_comment',
                partner_ids=conversation.partner_id.ids, message_id='<chosen@attacker.example.com>')
        bodies = [record['body']['content'] for record in self.sent()]
        self.assertEqual(len(bodies), 2)
        self.assertTrue(any('Erste' in body for body in bodies) and any('Zweite' in body for body in bodies))


# Every way to post on a conversation that may e-mail someone, each with the From and the server an attacker would
# choose (billing@'s): (message_type, subtype xmlid, extra values of message_post).
POST_KINDS = {
    'comment': ('comment', 'mail.mt_comment', {}),
    'note with recipients': ('comment', 'mail.mt_note', {}),
    'notification (the default type)': (None, None, {}),
    'email': ('email', 'mail.mt_comment', {}),
    'auto_comment': ('auto_comment', 'mail.mt_comment', {}),
    'forced server': ('comment', 'mail.mt_comment', {'server': True}),
}
# Who may make a Support conversation's mail leave (as support@ only); everyone else is refused before.
SENDERS = ('admin', 'member')
SEND_ROLES = ('admin', 'member', 'other_agent', 'removed', 'internal', 'portal')


@tagged('post_install', '-at_install')
class TestSendMatrix(OutlookSendCase):
    """ The send cells of the access matrix (issue 17, point 5): roles x every kind of post, the composer in
    comment and mass-mail mode. Whatever is asked, nothing leaves as billing@, nothing leaves for a role that may
    not send, and what a sender may send leaves as support@. """

    def setUp(self):
        super().setUp()
        self.billing = self.add_address(BILLING)
        self.run_backfill(self.billing)
        self.conversation, _delivered = self.customer_writes()
        self.customer = self.conversation.partner_id
        other_inbox = self.env['epilot.shared.inbox'].create({'name': 'Sales', 'email': 'sales@example.com'})
        removed = new_test_user(self.env, 'eo_removed', groups='base.group_user,epilot_outlook.group_agent')
        self.inbox.member_user_ids = [(4, removed.id)]
        self.inbox.member_user_ids = [(3, removed.id)]
        self.roles = {
            'admin': self.odoo_admin,
            'member': self.agent,
            'other_agent': new_test_user(self.env, 'eo_other', groups='base.group_user,epilot_outlook.group_agent'),
            'removed': removed,
            'internal': new_test_user(self.env, 'eo_plain', groups='base.group_user'),
            'portal': new_test_user(self.env, 'eo_portal_sender', groups='base.group_portal'),
        }
        other_inbox.member_user_ids = [(4, self.roles['other_agent'].id)]
        self.sandbox.control('DELETE', '/mail/sent')

    def post(self, user, kind):
        message_type, subtype, extra = POST_KINDS[kind]
        values = {'body': '<p>%s</p>' % kind, 'partner_ids': self.customer.ids, 'email_from': BILLING}
        if message_type:
            values.update(message_type=message_type, subtype_xmlid=subtype)
        if extra.get('server'):
            values['mail_server_id'] = self.billing.mail_server_ids.id
        self.conversation.with_user(user).message_post(**values)

    def compose(self, user, mode):
        composer = self.env['mail.compose.message'].with_user(user).with_context(
            default_model=self.conversation._name, default_res_ids=self.conversation.ids,
            default_composition_mode=mode, default_subtype_id=self.env.ref('mail.mt_comment').id,
        ).create({'body': '<p>%s</p>' % mode, 'subject': 'Re', 'partner_ids': self.customer.ids,
                  'email_from': BILLING})
        composer._action_send_mail()

    @mute_logger(*MAIL_LOGGERS, 'odoo.addons.base.models.ir_rule', 'odoo.models')
    def test_send_matrix(self):
        cells = [(kind, self.post) for kind in POST_KINDS] + [
            ('composer, comment', lambda user, _kind: self.compose(user, 'comment')),
            ('composer, mass mail', lambda user, _kind: self.compose(user, 'mass_mail'))]
        for kind, act in cells:
            for role in SEND_ROLES:
                with self.subTest(kind=kind, role=role):
                    self.sandbox.control('DELETE', '/mail/sent')
                    if role in SENDERS:
                        act(self.roles[role], kind)
                    else:
                        with self.assertRaises(AccessError):
                            act(self.roles[role], kind)
                    self.run_mail_queue()
                    froms = [record['from']['address'] for record in self.sent()]
                    self.assertNotIn(BILLING, froms, "nothing leaves as another inbox's mailbox")
                    if role not in SENDERS:
                        self.assertEqual(froms, [])
                    elif kind != 'composer, mass mail':
                        self.assertEqual(froms, [SUPPORT], "a sender's post leaves as the inbox's mailbox, once")


@tagged('post_install', '-at_install')
class TestMembersAndFollowers(OutlookSendCase):
    """ Followers and notifications follow membership (issue 17, point 4). """

    def test_removed_member_is_unsubscribed_and_not_notified(self):
        conversation, _delivered = self.customer_writes()
        colleague = new_test_user(self.env, 'eo_colleague', groups='base.group_user,epilot_outlook.group_agent',
                                  name='Carl Colleague')
        colleague.notification_type = 'inbox'
        self.inbox.member_user_ids = [(4, colleague.id)]
        conversation.with_user(colleague).message_subscribe(partner_ids=colleague.partner_id.ids)
        self.assertIn(colleague.partner_id, conversation.message_partner_ids)
        self.inbox.member_user_ids = [(3, colleague.id)]
        self.assertNotIn(colleague.partner_id, conversation.message_partner_ids)
        message = self.reply(conversation, body='<p>Vertraulich: IBAN DE00</p>')
        self.assertNotIn(colleague.partner_id, message.notification_ids.res_partner_id)
        with self.assertRaises(AccessError):
            conversation.with_user(colleague).message_post(body='<p>x</p>', message_type='comment',
                                                           subtype_xmlid='mail.mt_note')

    def test_non_members_are_never_subscribed_nor_notified(self):
        conversation, _delivered = self.customer_writes()
        outsider = new_test_user(self.env, 'eo_outsider', groups='base.group_user,epilot_outlook.group_agent',
                                 name='Olga Outsider')
        outsider.notification_type = 'inbox'
        conversation.message_subscribe(partner_ids=outsider.partner_id.ids)
        self.assertNotIn(outsider.partner_id, conversation.message_partner_ids)
        # Named in a member's note: not notified (a notification carries the body and the files).
        message = conversation.with_user(self.agent).message_post(
            body='<p>@Olga schau mal</p>', message_type='comment', subtype_xmlid='mail.mt_note',
            partner_ids=outsider.partner_id.ids)
        self.assertNotIn(outsider.partner_id, message.notification_ids.res_partner_id)
        self.assertFalse(self.env['mail.message'].with_user(outsider).search([('id', '=', message.id)]))
        with self.assertRaises(AccessError):
            message.with_user(outsider).read(['body'])
        # ... nor assigned (the assignee follows the conversation).
        with self.assertRaisesRegex(AccessError, 'not a member'):
            conversation.with_user(self.agent).user_id = outsider
        conversation.with_user(self.agent).user_id = self.agent
        self.assertEqual(conversation.state, 'open')

    def test_portal_user_with_the_customers_address_reads_nothing(self):
        """ The import takes the first contact with the sender's address as author: when it is a portal user's
        (anyone can sign up with a customer's address), that user still reads neither the conversation, nor the
        e-mails it authored, nor the team's replies addressed to it. """
        impostor = new_test_user(self.env, 'eo_impostor', groups='base.group_portal', name='Impostor',
                                 email='victim@fabrikam.com')
        conversation, _delivered = self.customer_writes(sender='victim@fabrikam.com', body_html='<p>my IBAN DE00</p>')
        received = conversation.message_ids.filtered(lambda message: message.message_type == 'email')
        self.assertEqual(received.author_id, impostor.partner_id, "the import picked the portal user's contact")
        reply = self.reply(conversation, partners=impostor.partner_id, body='<p>Your new password is 1234</p>')
        for message in received | reply:
            with self.subTest(message=message.id), self.assertRaises(AccessError):
                message.with_user(impostor).read(['body'])
        found = self.env['mail.message'].with_user(impostor).search([('model', '=', conversation._name)])
        self.assertFalse(found)
        with self.assertRaises(AccessError):
            conversation.with_user(impostor).read(['name'])
        with self.assertRaises(AccessError):
            received.with_user(impostor).write({'body': '<p>forged</p>'})


@tagged('post_install', '-at_install')
class TestConversationFields(OutlookSendCase):
    """ Agents write a conversation's work fields; its inbox and company are for editors (issue 17, point 3). """

    def test_agent_cannot_move_a_conversation_to_another_inbox(self):
        conversation, _delivered = self.customer_writes()
        other = self.env['epilot.shared.inbox'].create({'name': 'Billing', 'member_user_ids': [self.agent.id]})
        as_agent = conversation.with_user(self.agent)
        for values in ({'inbox_id': other.id}, {'company_id': self.env.company.id}, {'email_count': 0},
                       {'graph_conversation_id': 'forged'}):
            with self.subTest(values=values), self.assertRaises(AccessError):
                as_agent.write(values)
        as_agent.write({'user_id': self.agent.id, 'state': 'waiting'})
        self.assertEqual((conversation.user_id, conversation.state), (self.agent, 'waiting'))
        conversation.with_user(self.odoo_admin).write({'inbox_id': other.id})
        self.assertEqual(conversation.inbox_id, other)
