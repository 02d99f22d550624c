from odoo import api, models
from odoo.tools import SQL

CONVERSATION_MODEL = 'epilot.shared.conversation'


class MailMessage(models.Model):
    """ Override of `mail`: who reads (and edits) the messages of a shared inbox's conversations.

    They are read and edited by those who may read the conversation (its inbox's members, email settings
    editors), and by nobody else. Odoo also lets a message's author, its recipients and whoever was notified of
    it read it (and the first two write it). On a conversation, those are partners the import matched by
    address: the first contact with the sender's e-mail may be a portal user's (anyone can sign up with a
    customer's address), and an agent removed from the inbox stays a recipient of what was sent while a member.
    Neither may read the team's mail (issue 17).
    """
    _inherit = 'mail.message'

    @api.model
    def _search(self, domain, offset=0, limit=None, order=None, *, bypass_access=False, **kwargs):
        """ Override of `mail`: searching finds no message of a conversation the user may not read. """
        query = super()._search(domain, offset, limit, order, bypass_access=bypass_access, **kwargs)
        if self.env.is_superuser() or bypass_access:
            return query
        found = self.browse(query)
        if not found:
            return query
        hidden = found._outlook_unreadable()
        return (found - hidden)._as_query(order) if hidden else query

    def _get_forbidden_access(self, operation):
        """ Override of `mail`: see the class. """
        forbidden = super()._get_forbidden_access(operation)
        if self.env.su or operation not in ('read', 'write'):
            return forbidden
        return forbidden + (self - forbidden)._outlook_unreadable()

    def _outlook_unreadable(self):
        """ The messages of ``self`` that belong to a conversation the current user may not read (one query for
        the messages, one for the conversations). """
        if not self:
            return self
        self.flush_recordset(['model', 'res_id'])
        rows = self.env.execute_query(SQL(
            "SELECT id, res_id FROM mail_message WHERE id = ANY(%s) AND model = %s AND res_id IS NOT NULL",
            self.ids, CONVERSATION_MODEL))
        if not rows:
            return self.browse()
        conversations = self.env[CONVERSATION_MODEL].browse({res_id for _id, res_id in rows})
        readable = set(conversations._filtered_access('read').ids)
        return self.browse([message_id for message_id, res_id in rows if res_id not in readable])
