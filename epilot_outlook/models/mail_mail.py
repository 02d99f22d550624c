from odoo import models

from .ir_mail_server import OUTLOOK_AUTH, OutlookGraphSession


class MailMail(models.Model):
    """ Override of `mail` for e-mails sent through an Outlook shared mailbox (see ``ir_mail_server.py``). """
    _inherit = 'mail.mail'

    def _prepare_outgoing_list(self, mail_server=False, doc_to_followers=None):
        """ Override of `mail`: through Outlook, one e-mail for all its recipients, as Outlook itself sends a
        reply (Odoo makes one e-mail per recipient partner, which would put one copy per recipient in the shared
        mailbox's Sent Items and split the conversation). """
        emails = super()._prepare_outgoing_list(mail_server=mail_server, doc_to_followers=doc_to_followers)
        server = mail_server or self.mail_server_id
        if len(emails) < 2 or not server or server.sudo().smtp_authentication != OUTLOOK_AUTH:
            return emails
        merged = dict(emails[0], partner_id=False, email_to=[], email_cc=[], email_to_normalized=[],
                      email_to_raw=','.join(email['email_to_raw'] for email in emails if email['email_to_raw']))
        for email in emails:
            for key in ('email_to', 'email_cc', 'email_to_normalized'):
                merged[key] += [value for value in email[key] if value not in merged[key]]
        return [merged]

    def _send(self, auto_commit=False, raise_exception=False, smtp_session=None, alias_domain_id=False,
              mail_server=False, post_send_callback=None):
        """ Override of `mail`: an e-mail Graph throttled (or may still be sending) goes back to the queue for
        later instead of failing; the queue's cron is triggered for then. """
        result = super()._send(auto_commit=auto_commit, raise_exception=raise_exception, smtp_session=smtp_session,
                               alias_domain_id=alias_domain_id, mail_server=mail_server,
                               post_send_callback=post_send_callback)
        if isinstance(smtp_session, OutlookGraphSession) and smtp_session.retry_later:
            later = self.exists().filtered(
                lambda mail: mail.state == 'exception' and mail.message_id in smtp_session.retry_later)
            for mail in later:
                retry_at = smtp_session.retry_at(mail.message_id)
                mail.write({'state': 'outgoing', 'scheduled_date': retry_at, 'failure_type': False})
                self.env['mail.notification'].sudo().search([
                    ('mail_mail_id', '=', mail.id), ('notification_status', '=', 'exception'),
                ]).write({'notification_status': 'ready', 'failure_type': False, 'failure_reason': False})
                self.env.ref('mail.ir_cron_mail_scheduler_action')._trigger(at=retry_at)
            if auto_commit is True and later:
                self.env.cr.commit()
        return result
