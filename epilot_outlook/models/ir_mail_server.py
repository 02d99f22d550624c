import logging
from datetime import timedelta
from email.utils import getaddresses

from odoo import api, fields, models
from odoo.addons.base.models.ir_mail_server import MailDeliveryException
from odoo.exceptions import UserError
from odoo.tools import email_normalize, formataddr

from ..outlook_core import const
from ..outlook_core.errors import (
    GraphError, OutlookError, SendPending, Throttled, TransientError, is_transient, retry_delay,
)
from ..outlook_core.sending import CC_HEADER, MODE_HEADER, SEND_AS, MailSender
from ..tools.explain import explain

_logger = logging.getLogger(__name__)

# A send waits no longer than this for a Retry-After or a mailbox slot; past it, the mail goes back to the
# queue for later (the queue cron is triggered for then).
SEND_MAX_WAIT_S = 2
OUTLOOK_AUTH = 'epilot_outlook'
# The ``mail.mail`` an e-mail is, as a header of the e-mail the mail queue built for an Outlook server (set last by
# ``mail.mail._prepare_outgoing_list``, so an author cannot choose it; removed before Graph): the Graph session
# checks that mail against the address's sending rule, and keys the outbox by it.
MAIL_HEADER = 'X-Epilot-Outlook-Mail'


class IrMail_Server(models.Model):
    """ Override of `base` to send the e-mails of an Outlook shared mailbox through Microsoft Graph.

    Each Outlook address has its own outgoing server (created when its sync starts, deleted with the address):
    ``smtp_authentication`` is ``epilot_outlook`` and ``from_filter`` is the shared address, so
    ``_find_mail_server`` picks it for every e-mail from that address. ``_connect__`` then returns a
    :class:`OutlookGraphSession` instead of an SMTP connection, and Odoo's ``mail.mail`` queue, failure states,
    notifications and Retry work unchanged.
    """
    _inherit = 'ir.mail_server'

    smtp_authentication = fields.Selection(
        selection_add=[(OUTLOOK_AUTH, "Outlook Shared Mailbox (Microsoft Graph)")],
        ondelete={OUTLOOK_AUTH: 'set default'},
    )
    epilot_outlook_address_id = fields.Many2one(
        string="Outlook Address",
        comodel_name='epilot.outlook.email.address',
        readonly=True,
        ondelete='cascade',  # Disconnecting removes the address, and with it its way out.
        index='btree_not_null',
    )

    # === COMPUTE METHODS === #

    def _compute_smtp_authentication_info(self):
        outlook = self.filtered(lambda server: server.smtp_authentication == OUTLOOK_AUTH)
        for server in outlook:
            server.smtp_authentication_info = self.env._(
                "E-mails from %(address)s are sent through Microsoft Graph by the Outlook connection's service "
                "account, as the shared mailbox.", address=server.from_filter)
        super(IrMail_Server, self - outlook)._compute_smtp_authentication_info()

    # === BUSINESS METHODS === #

    def _connect__(self, host=None, port=None, user=None, password=None, encryption=None,  # noqa: PLW3201
                   smtp_from=None, ssl_certificate=None, ssl_private_key=None, smtp_debug=False,
                   mail_server_id=None, allow_archived=False):
        """ Override of `base` to return a Graph session for an Outlook shared mailbox's server. """
        server = self._outlook_server_for(mail_server_id, host, smtp_from, allow_archived)
        if server:
            return None if self._disable_send() else OutlookGraphSession(server)
        return super()._connect__(
            host=host, port=port, user=user, password=password, encryption=encryption, smtp_from=smtp_from,
            ssl_certificate=ssl_certificate, ssl_private_key=ssl_private_key, smtp_debug=smtp_debug,
            mail_server_id=mail_server_id, allow_archived=allow_archived)

    def send_email(self, message, mail_server_id=None, smtp_server=None, smtp_port=None, smtp_user=None,
                   smtp_password=None, smtp_encryption=None, smtp_ssl_certificate=None,
                   smtp_ssl_private_key=None, smtp_debug=False, smtp_session=None):
        """ Override of `base` to send through a Graph session: return Outlook's Message-Id of the sent e-mail,
        which the ``mail.mail`` (and so its ``mail.message``) keeps. """
        if smtp_session is None and (mail_server_id or not smtp_server):
            server = self._outlook_server_for(mail_server_id, smtp_server, message['From'], False)
            if server:
                smtp_session = OutlookGraphSession(server)
        if not isinstance(smtp_session, OutlookGraphSession):
            return super().send_email(
                message, mail_server_id=mail_server_id, smtp_server=smtp_server, smtp_port=smtp_port,
                smtp_user=smtp_user, smtp_password=smtp_password, smtp_encryption=smtp_encryption,
                smtp_ssl_certificate=smtp_ssl_certificate, smtp_ssl_private_key=smtp_ssl_private_key,
                smtp_debug=smtp_debug, smtp_session=smtp_session)
        _smtp_from, smtp_to_list, message = self._prepare_email_message__(message, smtp_session)
        cc = [address for _name, address in getaddresses(message.get_all(CC_HEADER, []))]
        del message[CC_HEADER]
        _outlook_recipients_as_sent(message, smtp_to_list, cc=cc)
        return smtp_session.send_graph(message)

    def test_smtp_connection(self, autodetect_max_email_size=False):
        """ Override of `base`: for an Outlook server, one Graph request that the service account can reach the
        mailbox its drafts go to (sending rights show only on a real send). """
        outlook = self.filtered(lambda server: server.smtp_authentication == OUTLOOK_AUTH)
        for server in outlook:
            address = server.sudo().epilot_outlook_address_id
            if not address:
                raise UserError(self.env._("This Outlook server lost its Outlook address; remove it."))
            path = 'me' if address.send_mode == 'send_on_behalf' else 'users/%s' % address.email
            try:
                address.connection_id._outlook_call_graph(
                    lambda client: client.get('%s/mailFolders/drafts' % path, params={'$select': 'id'}))
            except OutlookError as error:
                raise UserError(explain(self.env, error)) from None
        if outlook == self:
            return {'type': 'ir.actions.client', 'tag': 'display_notification', 'params': {
                'message': self.env._("Connection Test Successful!"), 'type': 'success', 'sticky': False,
                'next': {'type': 'ir.actions.act_window_close'}}}
        return super(IrMail_Server, self - outlook).test_smtp_connection(
            autodetect_max_email_size=autodetect_max_email_size)

    @api.model
    def _filter_mail_servers_fallback(self, servers):
        """ Override of `base`: an Outlook server sends only its own address's e-mails, never as the fallback
        for other senders (Graph would refuse them, or worse, send them as the shared mailbox). """
        return super()._filter_mail_servers_fallback(servers).filtered(
            lambda server: server.smtp_authentication != OUTLOOK_AUTH)

    @api.model
    def _outlook_server_for(self, mail_server_id, host, smtp_from, allow_archived):
        """ The Outlook server an e-mail goes through (forced, or found by its From), or an empty recordset. """
        if mail_server_id:
            server = self.sudo().browse(mail_server_id)
            if not server.exists() or (not server.active and not allow_archived):
                return self.browse()
        elif host:
            return self.browse()
        else:
            server, _email_from = self.sudo()._find_mail_server(smtp_from)
        return server if server and server.smtp_authentication == OUTLOOK_AUTH else self.browse()


def _outlook_default_subject(mail_message):
    """ Whether ``mail_message`` has the subject Odoo gives any message posted on its record (the record's name,
    ``mail.thread._message_compute_subject``) or none: nobody chose it. """
    if not mail_message.subject:
        return True
    if not mail_message.model or not mail_message.res_id:
        return False
    Model = mail_message.env[mail_message.model]
    if not hasattr(Model, '_message_compute_subject'):
        return False
    # The record (archived too, as exists() finds it) and its fields in one query per e-mail sent: its name here,
    # the conversation's Outlook conversation when the e-mail is recorded as sent.
    record = Model.with_context(active_test=False).search_fetch([('id', '=', mail_message.res_id)])
    return bool(record) and mail_message.subject == record._message_compute_subject()


def _outlook_recipients_as_sent(message, smtp_to_list, cc=()):
    """ Make the headers say who receives ``message``: Graph delivers to every address of To, Cc and Bcc, while
    Odoo's SMTP envelope (``smtp_to_list``) may differ from them (``X-Msg-To-Add`` shows recipients in To who are
    not sent to; Bcc is removed from the headers). Only envelope recipients stay in To and Cc, those of ``cc`` (the
    composer's Cc row: Odoo puts every recipient contact in To) in Cc; the others of the envelope go to Bcc. """
    envelope = {email_normalize(address): address for address in smtp_to_list if email_normalize(address)}
    cc = {email_normalize(address) for address in cc}
    shown, kept = set(), {'To': [], 'Cc': []}
    for header in ('To', 'Cc'):
        for name, address in getaddresses(message.get_all(header, [])):
            normalized = email_normalize(address)
            if normalized in envelope and normalized not in shown:
                shown.add(normalized)
                kept['Cc' if normalized in cc else header].append(formataddr((name, address)))
    for header in ('To', 'Cc'):
        del message[header]
        if kept[header]:
            message[header] = ', '.join(kept[header])
    del message['Bcc']
    if hidden := [address for normalized, address in envelope.items() if normalized not in shown]:
        message['Bcc'] = ', '.join(hidden)


class OutlookGraphSession:
    """ What ``_connect__`` returns for an Outlook server: quacks like an SMTP session, sends through Graph.

    Remembers, per ``mail.mail`` id, the e-mails to retry later (throttled, or possibly still on their way):
    ``mail.mail`` puts those back in the queue instead of failing them.
    """

    def __init__(self, server):
        self.server = server
        self.env = server.env
        self.from_filter = server.from_filter
        self.retry_later = {}   # mail.mail id -> seconds
        self.vetted = {}        # mail.mail id -> Odoo's own mail: checked by mail.mail._send, may leave
        self.requests = 0

    # --- smtplib's surface, as mail.mail and ir.mail_server use it ---

    def send_message(self, message, smtp_from=None, smtp_to_list=None):
        return self.send_graph(message)

    def quit(self):
        return None

    def set_debuglevel(self, _level):
        return None

    # --- Graph ---

    def send_graph(self, message):
        """ Send ``message`` as the shared mailbox, exactly once; return Outlook's Message-Id.

        Nothing leaves that the address may not send (:meth:`epilot.outlook.email.address._outlook_send_verdict`):
        the check is here, where the e-mail leaves, whatever made it (``mail.mail._send`` made it already for the
        e-mails it hands over: ``vetted``).

        :raise MailDeliveryException: With the reason in words (the mail then shows as failed, with Retry).
        """
        env = self.env
        address = self.server.sudo().epilot_outlook_address_id
        odoo_message_id = message['Message-Id']
        mode = (message.get(MODE_HEADER) or '').strip()
        mail_id = (message.get(MAIL_HEADER) or '').strip()
        del message[MODE_HEADER]
        del message[MAIL_HEADER]
        mail = env['mail.mail'].sudo().browse(int(mail_id) if mail_id.isdigit() else ())
        if mail.id not in self.vetted:   # a vetted one is the mail.mail sending it now: it exists
            mail = mail.exists()
        if not address:
            raise MailDeliveryException(env._("This Outlook server lost its Outlook address; remove it."))
        if mail and mail.id in self.vetted:
            odoo_own = self.vetted[mail.id]
        else:
            refusal, odoo_own = address._outlook_send_verdict(mail)
            if refusal:
                raise MailDeliveryException(refusal)
        mail_message = mail.mail_message_id
        parent = address._outlook_reply_parent(mail_message)
        if parent and not message['In-Reply-To']:
            message['In-Reply-To'] = parent.internet_message_id
        if mode not in ('reply', 'replyAll', 'forward'):
            mode = 'replyAll' if message['Cc'] else 'reply'
        parent_id = parent.graph_id if parent and parent.mailbox_email == address.email else None
        if parent_id and _outlook_default_subject(mail_message):
            # Nobody chose a subject (a reply from the chatter): Odoo's is the conversation's name. Left out,
            # Exchange gives the reply the original's subject with "RE:", as Outlook does.
            del message['Subject']
        Outbox = env['epilot.outlook.outbox']
        key = Outbox._outlook_key(address, mail, odoo_message_id, odoo_own)
        row_id = None   # the outbox row, once read: each step writes it by id

        def store(values):
            nonlocal row_id
            row_id = Outbox._outlook_write(key, values, row_id)

        def deliver(client):
            nonlocal row_id
            sender = MailSender(client, address.email, address.send_mode or SEND_AS)
            draft, age, row_id = Outbox._outlook_read(key)
            try:
                return sender.deliver(
                    message, parent_id=parent_id, mode=mode, draft=draft, send_requested_age=age,
                    on_draft=lambda made: store(Outbox._outlook_draft_values(made)),
                    on_send=lambda _draft: store({'send_requested_date': fields.Datetime.now()}))
            finally:
                self.requests += sender.requests

        try:
            result = address.connection_id._outlook_call_graph(
                deliver, max_wait=SEND_MAX_WAIT_S, slot_wait=SEND_MAX_WAIT_S)
        except (Throttled, SendPending, TransientError) as error:
            if isinstance(error, Throttled):
                self._outlook_refused(key, row_id)
            # A timeout: Graph may have taken it; the stored draft tells next time.
            if mail:
                self.retry_later[mail.id] = retry_delay(error, const.BACKOFF_MAX_S)
            raise MailDeliveryException(explain(env, error)) from None
        except GraphError as error:
            # A definite answer: Graph did not send it. The draft stays for Retry.
            self._outlook_refused(key, row_id)
            raise MailDeliveryException(explain(env, error)) from None
        except OutlookError as error:
            # No token now for a reason that passes (Microsoft's 5xx or 429 after the refresh's retries, another
            # worker's refresh holding the connection): the queue tries again, as for a throttled send. A
            # connection that needs a reconnect fails the mail, with the reason.
            if mail and is_transient(error):
                self.retry_later[mail.id] = retry_delay(error, const.BACKOFF_MAX_S)
            raise MailDeliveryException(explain(env, error)) from None
        except UserError as error:
            raise MailDeliveryException(error.args[0]) from None
        store({'sent_date': fields.Datetime.now()})
        draft = result.draft
        address._outlook_record_sent(mail_message, draft, odoo_own=key.odoo_own)
        _logger.info("Microsoft Outlook: address %s: mail.mail %s (mail.message %s) sent through Graph%s", address.id,
                     mail.id, mail_message.id, " (already sent before)" if result.already_sent else "")
        return draft.internet_message_id or odoo_message_id

    def _outlook_refused(self, key, row_id=None):
        """ Graph answered and sent nothing: the next attempt may send the stored draft at once. """
        self.env['epilot.outlook.outbox']._outlook_write(key, {'send_requested_date': False}, row_id)

    def retry_at(self, mail_id):
        seconds = self.retry_later.get(mail_id)
        return fields.Datetime.now() + timedelta(seconds=seconds) if seconds is not None else None
