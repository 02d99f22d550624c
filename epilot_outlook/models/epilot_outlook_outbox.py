import logging

from odoo import api, fields, models

from ..outlook_core.sending import Draft

_logger = logging.getLogger(__name__)


class EpilotOutlookOutbox(models.Model):
    """ The Graph side of one e-mail Odoo sends as a shared mailbox: its draft, and whether it was handed to
    ``send``. It is what makes sending exactly-once.

    Rows are written in **transactions of their own**, committed before the next Graph step: the draft's id
    before ``send``, the time of ``send`` before it is called. A worker dying after Graph accepted the e-mail
    rolls back the ``mail.mail`` (it stays outgoing and is sent again), but not this row: the next attempt
    asks Graph about the stored draft first, and sends nothing twice. It is keyed on the e-mail's Odoo
    ``Message-Id`` and holds no foreign key to the mail tables, so it can be written while the transaction
    sending the mail still holds them.
    """
    _name = 'epilot.outlook.outbox'
    _description = "Outlook Outgoing E-mail"
    _order = 'id desc'
    _rec_name = 'message_id'

    message_id = fields.Char(string="Message-Id", required=True, readonly=True)
    address_id = fields.Many2one(
        string="Outlook Address", comodel_name='epilot.outlook.email.address', required=True, readonly=True,
        ondelete='cascade', index=True)
    draft_graph_id = fields.Char(string="Draft Immutable ID", readonly=True)
    draft_mailbox = fields.Char(string="Draft Mailbox", readonly=True, help="users/{address} or me")
    internet_message_id = fields.Char(string="Outlook Message-Id", readonly=True, index='btree_not_null')
    graph_conversation_id = fields.Char(string="Outlook Conversation", readonly=True)
    send_requested_date = fields.Datetime(string="Handed to Send", readonly=True)
    sent_date = fields.Datetime(string="Sent", readonly=True)

    _message_address_uniq = models.UniqueIndex(
        '(address_id, message_id)', "An e-mail is sent once per Outlook address.")

    # === BUSINESS METHODS === #

    @api.model
    def _outlook_read(self, address, message_id):
        """ The stored row of ``message_id`` as committed now (a fresh transaction: the caller's snapshot may
        predate an earlier attempt's commit).

        :return: ``(Draft or None, seconds since it was handed to send or None)``.
        """
        with self.env.registry.cursor() as cr:
            row = self.with_env(self.env(cr=cr)).sudo().search(
                [('address_id', '=', address.id), ('message_id', '=', message_id)], limit=1)
            if not row or not row.draft_graph_id:
                return None, None
            draft = Draft(graph_id=row.draft_graph_id, internet_message_id=row.internet_message_id or '',
                          conversation_id=row.graph_conversation_id or '', is_draft=True,
                          mailbox=row.draft_mailbox or '')
            age = (fields.Datetime.now() - row.send_requested_date).total_seconds() \
                if row.send_requested_date else None
            return draft, age

    @api.model
    def _outlook_write(self, address, message_id, values):
        """ Create or update the row of ``message_id`` in a transaction of its own, committed on return. """
        with self.env.registry.cursor() as cr:
            Outbox = self.with_env(self.env(cr=cr)).sudo()
            row = Outbox.search([('address_id', '=', address.id), ('message_id', '=', message_id)], limit=1)
            if row:
                row.write(values)
            else:
                Outbox.create({'address_id': address.id, 'message_id': message_id, **values})

    @api.model
    def _outlook_draft_values(self, draft):
        return {'draft_graph_id': draft.graph_id, 'draft_mailbox': draft.mailbox,
                'internet_message_id': draft.internet_message_id or False,
                'graph_conversation_id': draft.conversation_id or False}

    @api.model
    def _outlook_shown(self, inbox, internet_message_ids):
        """ The e-mails of ``inbox`` that Odoo sent under these Outlook Message-Ids (one query each way), for
        the import: a sent copy synced before Odoo recorded it as sent is that e-mail, not a new one.

        :return: ``{internet_message_id: {'conversation_id': id, 'mail_message_id': id}}``.
        :rtype: dict
        """
        if not internet_message_ids:
            return {}
        rows = self.sudo().search([('internet_message_id', 'in', list(internet_message_ids)),
                                   ('address_id.shared_inbox_id', '=', inbox.id)])
        if not rows:
            return {}
        odoo_ids = {row.message_id: row.internet_message_id for row in rows}
        messages = self.env['mail.message'].sudo().search([
            ('model', '=', 'epilot.shared.conversation'),
            ('message_id', 'in', list(odoo_ids) + list(odoo_ids.values())),
        ])
        shown = {}
        for message in messages:
            internet_id = odoo_ids.get(message.message_id, message.message_id)
            conversation = self.env['epilot.shared.conversation'].sudo().browse(message.res_id)
            if conversation.inbox_id == inbox:
                shown.setdefault(internet_id, {'conversation_id': conversation.id, 'mail_message_id': message.id})
        return shown
