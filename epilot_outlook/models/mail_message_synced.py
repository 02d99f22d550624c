from odoo import api, models
from odoo.exceptions import AccessError
from odoo.tools import SQL


def synced_mail_read_only(records, operation, result):
    """ The answer of ``records._check_access(operation)`` (``result``, Odoo's), with the synced mail among
    ``records`` forbidden to write and delete (``records._outlook_read_only_synced()``).

    :param records: ``mail.message`` or ``ir.attachment`` records.
    :return: ``None`` or ``(forbidden, make_error)``, as ``_check_access``.
    """
    if operation not in ('write', 'unlink') or not records:
        return result
    allowed = records - result[0] if result else records
    if not (synced := allowed._outlook_read_only_synced()):
        return result
    if result:
        return result[0] + synced, result[1]
    return synced, synced._outlook_read_only_error


class MailMessage(models.Model):
    """ Override of `mail`: the synced mail of the shared inboxes is read-only to agents.

    The e-mails that came from Outlook, and the team's replies Outlook synced back, are the team's record of what
    was said (issue 17). Odoo lets whoever may write the document write its messages, and lets an author or a
    recipient write a message whatever their rights on the document: agents write conversations (to assign
    them), and author the replies they send. Writing or deleting such an e-mail therefore takes an email
    settings editor (or the superuser), whatever else allowed it. Agents still post, edit their own notes,
    react, star and mark read as Odoo allows.
    """
    _inherit = 'mail.message'

    def _check_access(self, operation):
        """ Override of `mail`: forbid writing and deleting synced e-mails to anyone but email settings editors,
        on top of Odoo's rules (which stay as they are for every other message). """
        return synced_mail_read_only(self, operation, super()._check_access(operation))

    @api.model
    def _outlook_may_change_synced_mail(self):
        """ Whether the current user may write and delete synced e-mails and their files. """
        return self.env.su or self.env.user.has_group('epilot_outlook.group_email_setting_edit')

    def _outlook_read_only_synced(self):
        """ The messages of ``self`` the current user may not write nor delete for being synced mail: a message
        of a shared inbox's conversation that Outlook synced (a sync record points to it) or that is an e-mail
        (a sync record erased, or one not written yet). Empty for those who may change synced mail.
        """
        if not self or self._outlook_may_change_synced_mail():
            return self.browse()
        Record = self.env['epilot.outlook.message']
        self.flush_recordset(['model', 'message_type'])
        Record.flush_model(['mail_message_id'])
        rows = self.env.execute_query(SQL(
            """SELECT message.id FROM %(messages)s AS message
                WHERE message.id = ANY(%(ids)s) AND message.model = %(model)s
                  AND (message.message_type = 'email'
                       OR EXISTS (SELECT 1 FROM %(records)s AS record WHERE record.mail_message_id = message.id))""",
            messages=SQL.identifier(self._table), records=SQL.identifier(Record._table),
            ids=[id_ for id_ in self._ids if isinstance(id_, int)],
            model='epilot.shared.conversation',
        ))
        return self.browse(message_id for [message_id] in rows)

    def _outlook_read_only_error(self):
        return AccessError(self.env._(
            "The e-mails synced from Outlook and their files are the team's record of what was said: only email "
            "settings editors may change or delete them."))
