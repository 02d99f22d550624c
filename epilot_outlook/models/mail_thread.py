from odoo import models


class MailThread(models.AbstractModel):
    """ Override of `mail` for the synced mail of the shared inboxes (see ``mail_message_synced.py``). """
    _inherit = 'mail.thread'

    def _check_can_update_message_content(self, messages):
        """ Override of `mail`: the web client's edit and delete of a message (``/mail/message/update_content``)
        write as the superuser once Odoo found the user is its author: a team reply Outlook synced back is not
        its author's to rewrite any more (synced e-mails are refused by Odoo already, being no comments).

        :param messages: The messages to update (as the superuser); ``self`` is the thread, as the user.
        :raise AccessError: For a synced e-mail, to anyone but email settings editors.
        """
        super()._check_can_update_message_content(messages)
        if synced := messages.with_env(self.env)._outlook_read_only_synced():
            raise synced._outlook_read_only_error()
