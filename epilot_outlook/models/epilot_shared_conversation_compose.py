from markupsafe import Markup, escape

from odoo import models
from odoo.exceptions import UserError
from odoo.tools import email_normalize, format_datetime
from odoo.tools.mail import email_split_and_format

from ..outlook_core.sending import CC_HEADER, MODE_HEADER

# The context key naming how an agent answers (``reply``, ``replyAll``, ``forward``); travels to the Graph session
# as a header of the outgoing e-mail (MODE_HEADER).
SEND_MODE_KEY = 'epilot_outlook_send_mode'
# The context key of the Cc addresses the full composer's Cc row names; travels to the Graph session as a header
# of the outgoing e-mail (CC_HEADER), which puts them in Cc instead of To.
CC_KEY = 'epilot_outlook_cc'


class EpilotSharedConversation(models.Model):
    """ Answering a conversation: the full composer for Reply, Reply All and Forward (the original quoted, its
    recipients proposed, the shared mailbox never among them), and recipients typed by address. """
    _inherit = 'epilot.shared.conversation'

    # === ACTION METHODS === #

    def action_outlook_reply(self):
        """ Open the full composer to answer the last received e-mail's sender only (Graph's ``createReply``). """
        return self._outlook_open_composer('reply')

    def action_outlook_reply_all(self):
        """ Open the full composer to answer the last received e-mail to all its correspondents (Graph's
        ``createReplyAll``: Outlook threads it with the original): its sender and To, and its Cc in Cc. """
        return self._outlook_open_composer('replyAll')

    def action_outlook_forward(self):
        """ Open the full composer to forward the last received e-mail, with its attachments (``createForward``). """
        return self._outlook_open_composer('forward')

    def outlook_recipients(self, emails):
        """ The contacts of the addresses an agent types in the composer's To or Cc, made when missing (agents may
        not create contacts, and Odoo's composer sends to contacts only): writing to an address is the agent's
        decision, on a conversation they may send from. The shared mailbox itself is never a recipient.

        :param list emails: Addresses as typed (``Name <address>`` or a bare address).
        :return: ``[{'id', 'name', 'email'}]``, in the order given.
        :raise AccessError: The user may not send from this conversation's inbox.
        :raise UserError: One of them is no e-mail address, or is the shared mailbox.
        """
        self.ensure_one()
        self.check_access('read')
        self._outlook_check_can_send()
        mailbox = email_normalize(self.sudo().inbox_id.email or '')
        for email in emails:
            normalized = email_normalize(email or '', strict=False)
            if not normalized:
                raise UserError(self.env._("%(email)s is not an e-mail address.", email=email))
            if normalized == mailbox:
                raise UserError(self.env._(
                    "%(email)s is this inbox's own mailbox: the e-mail leaves from it, it is never a recipient.",
                    email=email))
        partners = self._partner_find_from_emails_single(emails, no_create=True)
        return [{'id': partner.id, 'name': partner.name, 'email': partner.email} for partner in partners]

    # === MAIL THREAD: RECIPIENTS === #

    def _message_get_suggested_recipients_batch(self, reply_discussion=False, reply_message=None, no_create=True,
                                                primary_email=False, additional_partners=None):
        """ Override of `mail`: the chatter proposes the last e-mail's To and Cc, where the shared mailbox itself
        is (the customer wrote to it): the e-mail leaves from it, it is never a recipient. """
        suggested = super()._message_get_suggested_recipients_batch(
            reply_discussion=reply_discussion, reply_message=reply_message, no_create=no_create,
            primary_email=primary_email, additional_partners=additional_partners)
        for conversation in self:
            mailbox = email_normalize(conversation.sudo().inbox_id.email or '')
            if mailbox and conversation.id in suggested:
                suggested[conversation.id] = [
                    recipient for recipient in suggested[conversation.id]
                    if email_normalize(recipient.get('email') or '') != mailbox]
        return suggested

    def _notify_get_recipients_groups(self, message, model_description, msg_vals=False):
        """ Override of `mail`: an e-mail from the shared mailbox is the same e-mail for all its recipients, a
        colleague's included (a forward to them): one e-mail through Outlook, without Odoo's access buttons. """
        groups = super()._notify_get_recipients_groups(message, model_description, msg_vals=msg_vals)
        if self._outlook_from_mailbox(message, msg_vals):
            for name, _func, data in groups:
                if name != 'customer':
                    data['active'] = False
                else:
                    data['has_button_access'] = False
        return groups

    def _notify_by_email_get_headers(self, headers=None):
        """ Override of `mail`: how the agent answers (reply, reply all, forward: ``MODE_HEADER``) and which
        recipients they copied (``CC_HEADER``), for the Graph session. """
        headers = super()._notify_by_email_get_headers(headers=headers)
        if mode := self.env.context.get(SEND_MODE_KEY):
            headers[MODE_HEADER] = mode
        if cc := self.env.context.get(CC_KEY):
            headers[CC_HEADER] = ', '.join(cc)
        return headers

    def _outlook_from_mailbox(self, message, msg_vals=False):
        """ Whether ``message`` (or the values it is made of) is an e-mail from this conversation's mailbox. """
        mailbox = email_normalize(self.sudo().inbox_id[:1].email or '')
        email_from = (msg_vals or {}).get('email_from') or message.email_from
        return bool(mailbox) and email_normalize(email_from or '') == mailbox

    # === BUSINESS METHODS === #

    def _outlook_open_composer(self, mode):
        """ The full composer for ``mode`` (``reply``, ``replyAll``, ``forward``) on the last received e-mail,
        with our recipients row (addresses typed become contacts, see :meth:`outlook_recipients`):

        - a reply goes to the e-mail's sender (its Reply-To is Outlook's business, the draft keeps it);
        - a reply to all to its sender and To, and its Cc in Cc; the shared mailbox left out;
        - a forward to whom the agent chooses; the composer shows the forwarded e-mail and its files, which
          Outlook's ``createForward`` carries;
        - the original is quoted below the answer, as Outlook does (Graph takes the draft's body as given).

        Correspondents without a contact the agent may see get one (as the superuser: agents may not create
        contacts; a reply to all must not drop anyone the customer copied), as typed addresses do.
        """
        self.ensure_one()
        self._outlook_check_can_send()
        # The e-mail answered or forwarded, also for Graph (the parent of the message posted): the last one
        # received (not a copy the team sent from Outlook), else the last one.
        records_sudo = self.env['epilot.outlook.message'].sudo().search([
            ('conversation_id', '=', self.id), ('mail_message_id', '!=', False),
        ], order='date desc, id desc', limit=50)
        received = records_sudo.filtered(lambda record: record.folder == 'inbox')
        last = (received or records_sudo)[:1].mail_message_id.sudo(False)
        mailbox = email_normalize(self.inbox_id.sudo().email or '')

        def partners_of(*fields_):
            emails = [email for field in fields_ for email in email_split_and_format(field or '')
                      if email_normalize(email) != mailbox]
            return self._partner_find_from_emails_single(emails, no_create=True) if emails else self.env['res.partner']

        to = cc = self.env['res.partner']
        if mode == 'reply':
            to = partners_of(last.email_from)
        elif mode == 'replyAll':
            to = partners_of(last.email_from, last.incoming_email_to)
            cc = partners_of(last.incoming_email_cc) - to
        quote = self._outlook_quote(last, mode) if last else ''
        prefix = self.env._("Fw:") if mode == 'forward' else self.env._("Re:")
        names = {'reply': self.env._("Reply"), 'replyAll': self.env._("Reply All"), 'forward': self.env._("Forward")}
        return {
            'type': 'ir.actions.act_window',
            'name': names[mode],
            'res_model': 'mail.compose.message',
            'view_mode': 'form',
            'views': [(self.env.ref('epilot_outlook.mail_compose_message_view_form_outlook').id, 'form')],
            'target': 'new',
            'context': {
                'default_composition_mode': 'comment',
                # A forward goes to its recipients only, never to the followers (Odoo's own Forward).
                'default_composition_comment_option': 'forward' if mode == 'forward' else False,
                'default_model': self._name,
                'default_res_ids': self.ids,
                'default_subtype_id': self.env['ir.model.data']._xmlid_to_res_id('mail.mt_comment'),
                'default_partner_ids': to.ids,
                'default_epilot_outlook_cc_partner_ids': cc.ids,
                'default_parent_id': last.id,
                'default_subject': '%s %s' % (prefix, self.name),
                'default_epilot_outlook_quote': quote,
                'default_body': Markup('<p><br></p>') + quote,
                SEND_MODE_KEY: mode,
            },
        }

    def _outlook_quote(self, message, mode):
        """ The original below an answer, as Outlook shows it: "On …, … wrote:" and the e-mail for a reply, the
        forwarded e-mail's header (its files named: Outlook forwards them) and the e-mail for a forward.

        :param message: The ``mail.message`` answered (readable by the user).
        :rtype: markupsafe.Markup
        """
        date = format_datetime(self.env, message.date, tz=self.env.user.tz) if message.date else ''
        sender = message.email_from or message.author_id.email_formatted or ''
        if mode == 'forward':
            rows = [
                (self.env._("From"), sender),
                (self.env._("Date"), date),
                (self.env._("Subject"), message.subject or self.name),
                (self.env._("To"), message.incoming_email_to),
                (self.env._("Cc"), message.incoming_email_cc),
                (self.env._("Attachments"), ', '.join(message.attachment_ids.mapped('name'))),
            ]
            header = Markup('<br>').join(
                Markup('<b>%s:</b> %s') % (label, value) for label, value in rows if value)
            intro = Markup('<p>---------- %s ----------<br>%s</p>') % (self.env._("Forwarded message"), header)
        else:
            intro = Markup('<p>%s</p>') % self.env._("On %(date)s, %(sender)s wrote:", date=date, sender=sender)
        return Markup('<div data-o-mail-quote-container="1">%s<blockquote data-o-mail-quote="1">%s</blockquote>'
                      '</div>') % (intro, message.body or escape(''))
