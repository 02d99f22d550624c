import logging
from collections import namedtuple

from odoo import api, fields, models
from odoo.tools import SQL

from ..outlook_core.sending import Draft

_logger = logging.getLogger(__name__)

# Which outbox row an e-mail is: its address, its ``mail.mail`` (0 for an e-mail handed to ``send_email``
# directly, without one), its ``mail.message`` (0: none), its Odoo Message-Id, and whether it is Odoo's own
# mail (not of a conversation of the address's inbox).
OutboxKey = namedtuple('OutboxKey', 'address_id mail_mail_id mail_message_id message_id odoo_own')


class EpilotOutlookOutbox(models.Model):
    """ The Graph side of one e-mail Odoo sends as a shared mailbox: its draft, and whether it was handed to
    ``send``. It is what makes sending exactly-once.

    Rows are written in **transactions of their own**, committed before the next Graph step: the draft's id
    before ``send``, the time of ``send`` before it is called. A worker dying after Graph accepted the e-mail
    rolls back the ``mail.mail`` (it stays outgoing and is sent again), but not this row: the next attempt
    asks Graph about the stored draft first, and sends nothing twice.

    A row is keyed on the ``mail.mail`` it sends (the Message-Id is the author's to choose, so it keys only an
    e-mail handed to ``send_email`` without a ``mail.mail``). It holds the ids of the mail records as plain
    integers, no foreign key, so that it can be written while the transaction sending the mail still holds
    them, and it outlives the ``mail.mail`` (deleted once sent).

    It also tells the import which sent copies are **Odoo's own mail** (a password reset, an invoice: anything
    not of a conversation of the address's inbox): those are never shown in the inbox (issue 17: a reset link
    agents could read).
    """
    _name = 'epilot.outlook.outbox'
    _description = "Outlook Outgoing E-mail"
    _order = 'id desc'
    _rec_name = 'message_id'

    message_id = fields.Char(string="Message-Id", required=True, readonly=True)
    mail_mail_id = fields.Integer(string="Mail", readonly=True, help="Technical: the mail.mail sent (no foreign key).")
    mail_message_id = fields.Integer(
        string="Message", readonly=True, help="Technical: the mail.message sent, if any (no foreign key).")
    odoo_own = fields.Boolean(
        string="Odoo's Own Mail", readonly=True,
        help="Not an e-mail of a conversation of the address's inbox: its sent copy is never shown in the inbox.")
    address_id = fields.Many2one(
        string="Outlook Address", comodel_name='epilot.outlook.email.address', required=True, readonly=True,
        ondelete='cascade', index=True)
    draft_graph_id = fields.Char(string="Draft Immutable ID", readonly=True)
    draft_mailbox = fields.Char(string="Draft Mailbox", readonly=True, help="users/{address} or me")
    internet_message_id = fields.Char(string="Outlook Message-Id", readonly=True, index='btree_not_null')
    graph_conversation_id = fields.Char(string="Outlook Conversation", readonly=True)
    send_requested_date = fields.Datetime(string="Handed to Send", readonly=True)
    sent_date = fields.Datetime(string="Sent", readonly=True)

    _mail_address_uniq = models.UniqueIndex(
        '(address_id, mail_mail_id) WHERE mail_mail_id IS NOT NULL AND mail_mail_id != 0',
        "An e-mail is sent once per Outlook address.")
    _message_address_uniq = models.UniqueIndex(
        '(address_id, message_id) WHERE mail_mail_id IS NULL OR mail_mail_id = 0',
        "An e-mail is sent once per Outlook address.")

    # === BUSINESS METHODS === #

    @api.model
    def _outlook_key(self, address, mail, message_id, odoo_own):
        """ The key of the row of an e-mail ``address`` sends.

        :param mail: Its ``mail.mail``, or an empty recordset (an e-mail handed to ``send_email`` directly).
        :param str message_id: Its Odoo Message-Id.
        :param bool odoo_own: Whether it is Odoo's own mail (``address._outlook_send_verdict``).
        :rtype: OutboxKey
        """
        return OutboxKey(address.id, mail.id or 0, mail.mail_message_id.id or 0, message_id or '', bool(odoo_own))

    def _outlook_domain(self, key):
        return [('address_id', '=', key.address_id)] + (
            [('mail_mail_id', '=', key.mail_mail_id)] if key.mail_mail_id else
            [('mail_mail_id', 'in', (0, False)), ('message_id', '=', key.message_id)])

    @api.model
    def _outlook_read(self, key):
        """ The stored row of ``key`` as committed now (a fresh transaction: the caller's snapshot may
        predate an earlier attempt's commit).

        :param OutboxKey key: See :meth:`_outlook_key`.
        :return: ``(Draft or None, seconds since it was handed to send or None, the row's id or 0)``: the id
            goes to :meth:`_outlook_write`, which then writes the row without looking for it again.
        """
        with self.env.registry.cursor() as cr:
            row = self.with_env(self.env(cr=cr)).sudo().search(self._outlook_domain(key), limit=1)
            if not row or not row.draft_graph_id:
                return None, None, row.id or 0
            draft = Draft(graph_id=row.draft_graph_id, internet_message_id=row.internet_message_id or '',
                          conversation_id=row.graph_conversation_id or '', is_draft=True,
                          mailbox=row.draft_mailbox or '')
            age = (fields.Datetime.now() - row.send_requested_date).total_seconds() \
                if row.send_requested_date else None
            return draft, age, row.id

    @api.model
    def _outlook_write(self, key, values, row_id=None):
        """ Create or update the row of ``key`` in a transaction of its own, committed on return.

        :param row_id: The row's id, as :meth:`_outlook_read` or an earlier call returned it (0: there is none
            yet; ``None``: look for it). Each step of a send writes the row it read, one query less per step
            (issue 18: three steps per e-mail the mail queue sends).
        :return: The row's id.
        """
        with self.env.registry.cursor() as cr:
            # The company of the sending environment, known there: the create's defaults need one, and the
            # new transaction would read the user's again.
            Outbox = self.with_env(self.env(cr=cr)).sudo().with_company(self.env.company)
            if row_id:
                # One statement: the ORM's write would first ask this new transaction's time of the database,
                # one query more per step; write_date is that time all the same. No field of the row is computed
                # from another, and nothing is in this new transaction's cache.
                cr.execute(SQL(
                    "UPDATE %s SET %s, write_uid = %s, write_date = NOW() AT TIME ZONE 'UTC' "
                    "WHERE id = %s RETURNING id",
                    SQL.identifier(self._table),
                    SQL(', ').join(SQL('%s = %s', SQL.identifier(name), self._fields[name].convert_to_column(
                        value, Outbox)) for name, value in values.items()),
                    self.env.uid, row_id,
                ))
                if cr.fetchone():
                    return row_id
            row = Outbox.browse() if row_id is not None else Outbox.search(self._outlook_domain(key), limit=1)
            if row:
                row.write(values)
                return row.id
            return Outbox.create({
                'address_id': key.address_id, 'mail_mail_id': key.mail_mail_id,
                'mail_message_id': key.mail_message_id, 'message_id': key.message_id, 'odoo_own': key.odoo_own,
                **values,
            }).id

    @api.model
    def _outlook_draft_values(self, draft):
        return {'draft_graph_id': draft.graph_id, 'draft_mailbox': draft.mailbox,
                'internet_message_id': draft.internet_message_id or False,
                'graph_conversation_id': draft.conversation_id or False}

    @api.model
    def _outlook_sent_by_odoo(self, inbox, internet_message_ids):
        """ What Odoo sent from ``inbox``'s addresses under these Outlook Message-Ids (one query each way), for
        the import: a sent copy synced before Odoo recorded it as sent is that e-mail, not a new one; and Odoo's
        own mail is never shown.

        :return: ``({internet_message_id: {'conversation_id': id, 'mail_message_id': id}}, {internet_message_id
            of Odoo's own mail})``.
        :rtype: tuple
        """
        if not internet_message_ids:
            return {}, set()
        rows = self.sudo().search([('internet_message_id', 'in', list(internet_message_ids)),
                                   ('address_id.shared_inbox_id', '=', inbox.id)])
        own = {row.internet_message_id for row in rows if row.odoo_own}
        by_message = {row.mail_message_id: row.internet_message_id for row in rows
                      if not row.odoo_own and row.mail_message_id}
        shown = {}
        for message in self.env['mail.message'].sudo().browse(list(by_message)).exists():
            conversation = self.env['epilot.shared.conversation'].sudo().browse(message.res_id)
            if message.model == conversation._name and conversation.exists().inbox_id == inbox:
                shown.setdefault(by_message[message.id], {
                    'conversation_id': conversation.id, 'mail_message_id': message.id})
        return shown, own
