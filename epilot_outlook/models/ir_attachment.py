from odoo import models
from odoo.tools import SQL

from .mail_message_synced import refuse_synced_mail


class IrAttachment(models.Model):
    """ Override of `mail`: the files of synced e-mails are read-only to agents, as the e-mails themselves are
    (see ``mail_message_synced.py``). Odoo lets whoever may write a conversation write and delete its files,
    and the web client deletes them through ``/mail/attachment/delete`` as the superuser once the user proved
    ownership: by that same right, or by the token the chatter hands the author of a message. """
    _inherit = 'ir.attachment'

    def _check_access(self, operation):
        """ Override of `base`: forbid writing and deleting the files of synced e-mails to anyone but email
        settings editors, on top of Odoo's rules. """
        result = super()._check_access(operation)
        if operation in ('write', 'unlink'):
            return refuse_synced_mail(self, result, type(self)._outlook_read_only_synced)
        return result

    def _has_attachments_ownership(self, attachment_tokens):
        """ Override of `mail`: the ownership token of the author of a synced e-mail does not make its files
        theirs to delete. """
        return super()._has_attachments_ownership(attachment_tokens) and not self._outlook_read_only_synced()

    def _outlook_read_only_synced(self):
        """ The attachments of ``self`` the current user may not write nor delete: files of synced e-mails
        (:meth:`mail.message._outlook_read_only_synced`). """
        Message = self.env['mail.message']
        if not self or Message._outlook_may_change_synced_mail():
            return self.browse()
        field = Message._fields['attachment_ids']
        Message.flush_model(['attachment_ids'])
        rows = self.env.execute_query(SQL(
            "SELECT %(attachment)s, %(message)s FROM %(relation)s WHERE %(attachment)s = ANY(%(ids)s)",
            attachment=SQL.identifier(field.column2), message=SQL.identifier(field.column1),
            relation=SQL.identifier(field.relation), ids=[id_ for id_ in self._ids if isinstance(id_, int)],
        ))
        synced = Message.browse({message_id for _attachment_id, message_id in rows})._outlook_read_only_synced()
        return self.browse(attachment_id for attachment_id, message_id in rows if message_id in synced._ids)

    def _outlook_read_only_error(self):
        return self.env['mail.message']._outlook_read_only_error()
