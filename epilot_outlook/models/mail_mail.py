import logging
from contextlib import nullcontext

from odoo import models

from .ir_mail_server import MAIL_HEADER, OUTLOOK_AUTH, OutlookGraphSession

_logger = logging.getLogger(__name__)


class MailMail(models.Model):
    """ Override of `mail` for e-mails sent through an Outlook shared mailbox (see ``ir_mail_server.py``). """
    _inherit = 'mail.mail'

    def _prepare_outgoing_list(self, mail_server=False, doc_to_followers=None):
        """ Override of `mail`: through Outlook, one e-mail for all its recipients, as Outlook itself sends a
        reply (Odoo makes one e-mail per recipient partner, which would put one copy per recipient in the shared
        mailbox's Sent Items and split the conversation); it names the ``mail.mail`` it is (``MAIL_HEADER``, set
        last: whatever headers the author gave, the Graph session checks this mail). """
        emails = super()._prepare_outgoing_list(mail_server=mail_server, doc_to_followers=doc_to_followers)
        server = mail_server or self.mail_server_id
        if not server or server.sudo().smtp_authentication != OUTLOOK_AUTH:
            return emails
        if len(emails) > 1:
            merged = dict(emails[0], partner_id=False, email_to=[], email_cc=[], email_to_normalized=[],
                          email_to_raw=','.join(email['email_to_raw'] for email in emails if email['email_to_raw']))
            for email in emails:
                for key in ('email_to', 'email_cc', 'email_to_normalized'):
                    merged[key] += [value for value in email[key] if value not in merged[key]]
            emails = [merged]
        for email in emails:
            email['headers'] = {**email['headers'], MAIL_HEADER: str(self.id)}
        return emails

    def _send(self, auto_commit=False, raise_exception=False, smtp_session=None, alias_domain_id=False,
              mail_server=False, post_send_callback=None):
        """ Override of `mail`:

        - an e-mail the Outlook address may not send (``_outlook_send_verdict``) fails with the reason, before
          anything is built; the Graph session checks the e-mails it was not handed this way;
        - an e-mail Graph throttled (or may still be sending) goes back to the queue for later instead of
          failing; the queue's cron is triggered for then;
        - committing after each e-mail, it tells the screens of the conversations' changes (Waiting after the
          team's reply) at most once a second (``_outlook_live_coalesced``), not once per e-mail.
        """
        mails = self
        if isinstance(smtp_session, OutlookGraphSession):
            mails = self._outlook_refuse_unauthorized(
                smtp_session.server.sudo().epilot_outlook_address_id, smtp_session.vetted)
        with (self.env['epilot.shared.conversation']._outlook_live_coalesced() if auto_commit is True
              else nullcontext()):
            result = super(MailMail, mails)._send(
                auto_commit=auto_commit, raise_exception=raise_exception, smtp_session=smtp_session,
                alias_domain_id=alias_domain_id, mail_server=mail_server, post_send_callback=post_send_callback)
        if isinstance(smtp_session, OutlookGraphSession) and smtp_session.retry_later:
            later = mails.exists().filtered(
                lambda mail: mail.state == 'exception' and mail.id in smtp_session.retry_later)
            for mail in later:
                retry_at = smtp_session.retry_at(mail.id)
                mail.write({'state': 'outgoing', 'scheduled_date': retry_at, 'failure_type': False})
                self.env['mail.notification'].sudo().search([
                    ('mail_mail_id', '=', mail.id), ('notification_status', '=', 'exception'),
                ]).write({'notification_status': 'ready', 'failure_type': False, 'failure_reason': False})
                self.env.ref('mail.ir_cron_mail_scheduler_action')._trigger(at=retry_at)
            if auto_commit is True and later:
                self.env.cr.commit()
        return result

    def _outlook_refuse_unauthorized(self, address, vetted):
        """ Fail the outgoing e-mails of ``self`` that ``address`` may not send, each with the reason (and its
        notifications with it, so the chatter shows the failure); return the others.

        :param address: The ``epilot.outlook.email.address`` whose server sends ``self``.
        :param dict vetted: Filled with ``{mail id: odoo_own}`` of the e-mails it may send (for the Graph
            session, which then needs not ask again).
        """
        allowed = self.browse()
        # The batch's conversations in one query (this runs before the first mail's commit: one per mail before)
        conversations = self.env['epilot.outlook.email.address']._outlook_mail_conversations(
            self.sudo().filtered(lambda mail: mail.state == 'outgoing'))
        for mail in self.sudo():
            if mail.state != 'outgoing':
                allowed |= mail   # Odoo skips it
                continue
            refusal, odoo_own = address._outlook_send_verdict(mail, conversations) if address else (
                self.env._("This Outlook server lost its Outlook address; remove it."), False)
            if not refusal:
                allowed |= mail
                vetted[mail.id] = odoo_own
                continue
            _logger.warning("Microsoft Outlook: mail.mail %s refused by the server of %s: %s",
                            mail.id, address.email, refusal)
            mail.write({'state': 'exception', 'failure_type': 'unknown', 'failure_reason': refusal})
            mail._postprocess_sent_message(
                success_pids=[], success_emails=[], failure_reason=refusal, failure_type='unknown')
        return self.browse(allowed.ids)
