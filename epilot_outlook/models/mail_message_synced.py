from odoo import api, models
from odoo.exceptions import AccessError
from odoo.tools import SQL


def refuse_synced_mail(records, result, find):
    """ The answer of ``records._check_access()`` (``result``, Odoo's), with the records that ``find`` returns
    among those Odoo allows forbidden too.

    :param records: ``mail.message`` or ``ir.attachment`` records.
    :param find: Called on the allowed records, returns those to refuse (each with ``_outlook_read_only_error``).
    :return: ``None`` or ``(forbidden, make_error)``, as ``_check_access``.
    """
    if not records:
        return result
    allowed = records - result[0] if result else records
    if not (refused := find(allowed)):
        return result
    if result:
        return result[0] + refused, result[1]
    return refused, refused._outlook_read_only_error


class MailMessage(models.Model):
    """ Override of `mail`: the synced mail of the shared inboxes is read-only to agents.

    The e-mails that came from Outlook, and the team's replies Outlook synced back, are the team's record of what
    was said (issue 17). Odoo lets whoever may write the document write its messages, and lets an author or a
    recipient write a message whatever their rights on the document: agents write conversations (to assign
    them), and author the replies they send. Writing or deleting such an e-mail therefore takes an email
    settings editor (or the superuser), whatever else allowed it. Nor does anyone else make one up: Odoo lets
    whoever may post post an e-mail with any author (or make their note one), an e-mail from the customer here;
    nor take a synced e-mail's file into their own message, whose deletion would delete it.
    Agents still post as themselves, edit their own notes, react, star and mark read as Odoo allows.
    """
    _inherit = 'mail.message'

    def _check_access(self, operation):
        """ Override of `mail`: forbid writing and deleting synced e-mails, and creating an e-mail in someone
        else's name or a message holding a synced e-mail's file, to anyone but email settings editors, on top of
        Odoo's rules (which stay as they are for every other message). """
        result = super()._check_access(operation)
        if operation in ('write', 'unlink'):
            return refuse_synced_mail(self, result, type(self)._outlook_read_only_synced)
        if operation == 'create':
            return refuse_synced_mail(self, result, lambda messages: (
                messages._outlook_forged_mail() | messages._outlook_borrowing_synced_files()))
        return result

    def write(self, vals):
        """ Override of `mail`: an author turning their message into an e-mail in someone else's name, or
        giving it a synced e-mail's file (checked once written: Odoo checks the message as it was). """
        result = super().write(vals)
        refused = self.browse()
        if {'message_type', 'author_id'} & set(vals):
            refused |= self._outlook_forged_mail()
        if 'attachment_ids' in vals:
            refused |= self._outlook_borrowing_synced_files()
        if refused:
            raise refused._outlook_read_only_error()
        return result

    @api.model
    def _outlook_may_change_synced_mail(self):
        """ Whether the current user may write and delete synced e-mails and their files. """
        return self.env.su or self.env.user.has_group('epilot_outlook.group_email_setting_edit')

    def _outlook_read_only_synced(self):
        """ The messages of ``self`` the current user may not write nor delete for being synced mail: a message
        of a shared inbox's conversation that Outlook synced (a sync record points to it) or that is an e-mail
        (a sync record erased, or one not written yet). Empty for those who may change synced mail.
        """
        records = SQL.identifier(self.env['epilot.outlook.message']._table)
        return self._outlook_conversation_messages(SQL(
            "message.message_type = 'email' OR EXISTS (SELECT 1 FROM %s AS record WHERE record.mail_message_id = "
            "message.id)", records))

    def _outlook_forged_mail(self):
        """ The messages of ``self`` that are e-mails of a shared inbox's conversation in the name of someone else
        than the current user (only Outlook's are; the import runs as the superuser). Empty for those who may
        change synced mail. """
        return self._outlook_conversation_messages(SQL(
            "message.message_type = 'email' AND message.author_id IS DISTINCT FROM %s", self.env.user.partner_id.id))

    def _outlook_borrowing_synced_files(self):
        """ The messages of ``self`` holding a file of another synced e-mail the current user may not change:
        deleting a message deletes its files as the superuser (``/mail/message/update_content``), so a synced
        e-mail's file is no one else's. Empty for those who may change synced mail. """
        if not self or self._outlook_may_change_synced_mail():
            return self.browse()
        field = self._fields['attachment_ids']
        self.flush_recordset(['attachment_ids'])
        rows = self.env.execute_query(SQL(
            "SELECT %(mine)s, %(other)s FROM %(relation)s AS mine JOIN %(relation)s AS other "
            "ON %(other_file)s = %(my_file)s AND %(other)s != %(mine)s WHERE %(mine)s = ANY(%(ids)s)",
            mine=SQL.identifier('mine', field.column1), other=SQL.identifier('other', field.column1),
            my_file=SQL.identifier('mine', field.column2), other_file=SQL.identifier('other', field.column2),
            relation=SQL.identifier(field.relation), ids=[id_ for id_ in self._ids if isinstance(id_, int)],
        ))
        synced = self.browse({other for _mine, other in rows})._outlook_read_only_synced()
        return self.browse({mine for mine, other in rows if other in synced._ids})

    def _outlook_conversation_messages(self, condition):
        """ The messages of ``self`` of a shared inbox's conversation that meet ``condition`` (SQL on
        ``message``), unless the current user may change synced mail. """
        if not self or self._outlook_may_change_synced_mail():
            return self.browse()
        self.flush_recordset(['model', 'message_type', 'author_id'])
        self.env['epilot.outlook.message'].flush_model(['mail_message_id'])
        rows = self.env.execute_query(SQL(
            "SELECT message.id FROM %s AS message WHERE message.id = ANY(%s) AND message.model = %s AND (%s)",
            SQL.identifier(self._table), [id_ for id_ in self._ids if isinstance(id_, int)],
            'epilot.shared.conversation', condition,
        ))
        return self.browse(message_id for [message_id] in rows)

    def _outlook_read_only_error(self):
        return AccessError(self.env._(
            "The e-mails synced from Outlook and their files are the team's record of what was said: only email "
            "settings editors may change or delete them, and agents post as themselves."))
