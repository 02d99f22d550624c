import dataclasses
import logging
from datetime import timedelta

from odoo import api, fields, models
from odoo.exceptions import UserError
from odoo.tools import SQL

from ..outlook_core.errors import ConnectionUnusable, OutlookError, Throttled, TransientError
from ..outlook_core.mailbox import MailboxReader
from .epilot_outlook_email_address import DB_CONFLICTS, SYNC_MAX_WAIT_S

_logger = logging.getLogger(__name__)

# Sync records whose read flag one step sends to Graph (20 per $batch request).
READ_PUSH_BATCH = 200
# When Graph could not be told and gave no time to wait (a refusal, the connection not usable), the next try.
READ_PUSH_RETRY = timedelta(minutes=5)


class EpilotOutlookMessage(models.Model):
    """ The agents' side of sync records: the read flag sent back to Outlook, and erasure.

    **Read state.** An agent reading a conversation marks its received e-mails read here and queues them
    (``read_push_pending``); :meth:`_cron_outlook_push_read_state` sends ``PATCH isRead`` in ``$batch``
    requests through the connection's Graph client, off the request path. Reading in Outlook comes back
    through delta (``_outlook_apply_facts``); while a push is pending Odoo's flag is the newer one and delta's
    is ignored. The cron's work items are ``epilot.outlook.read.push`` (one per address, below).

    **Erasure.** An erased e-mail (retention, a GDPR request) loses its ``mail.message``, its attachments and
    every personal fact of its sync record, which stays as a **tombstone**: the (inbox, immutable id) key
    alone. Backfill, delta and reconciliation find the key known and import nothing again.
    """
    _inherit = 'epilot.outlook.message'

    read_push_pending = fields.Boolean(
        string="Read Flag to Send", readonly=True,
        help="Technical: the read flag changed in Odoo and Outlook has not been told yet.")
    erased = fields.Boolean(
        string="Erased", readonly=True,
        help="The e-mail was erased in Odoo (retention or a request of the correspondent). Only Outlook's id "
             "is kept, so that the e-mail is not imported again.")
    erased_date = fields.Datetime(string="Erased On", readonly=True)

    _read_push_pending_idx = models.Index('(id) WHERE read_push_pending IS TRUE')

    # === BUSINESS METHODS - READ STATE === #

    def _outlook_set_read(self, is_read):
        """ Set the read flag of these sync records in Odoo now and queue it for Outlook.

        :param bool is_read: The new flag.
        """
        records = self.filtered(lambda record: record.is_read != is_read and not record.erased)
        if not records:
            return
        records.write({'is_read': is_read, 'read_push_pending': True})
        records.conversation_id._outlook_refresh_stats()
        self._outlook_push_cron()._trigger()

    def _outlook_apply_facts(self, message):
        """ Override: a tombstone (or Odoo's own mail) takes no facts; a read flag Outlook has not been told yet
        wins over delta's; a changed read flag updates the conversation's unread state. """
        if self.erased or self.odoo_own_mail:
            return
        if self.read_push_pending and message.is_read is not None:
            message = dataclasses.replace(message, is_read=None)
        was_read = self.is_read
        super()._outlook_apply_facts(message)
        if self.is_read != was_read and self.conversation_id:
            self.conversation_id._outlook_refresh_stats()

    @api.model
    def _outlook_push_cron(self):
        return self.env.ref('epilot_outlook.ir_cron_outlook_push_read_state').sudo()

    @api.model
    def _cron_outlook_push_read_state(self):
        """ Send the queued read flags to Outlook: the steps of the due ``epilot.outlook.read.push`` items (one
        per address), through the common step runner. """
        self.env['epilot.outlook.read.push']._outlook_run()

    # === BUSINESS METHODS - ERASURE === #

    def _outlook_erase(self):
        """ Erase the e-mails of these sync records: their ``mail.message`` (and those of any other sync record
        sharing it), their attachments, and the personal facts of the records, which stay as tombstones.
        Conversations left without e-mail are deleted; the others get their figures recomputed.

        :return: How many e-mails (``mail.message``) and attachments were deleted.
        :rtype: tuple(int, int)
        """
        records = self.sudo().filtered(lambda record: not record.erased)
        messages = records.mail_message_id
        if messages:
            records |= self.sudo().search([('mail_message_id', 'in', messages.ids)])
        conversations = records.conversation_id
        attachments = messages.attachment_ids
        records.write({
            'erased': True, 'erased_date': fields.Datetime.now(), 'read_push_pending': False,
            'mail_message_id': False, 'conversation_id': False, 'subject': False, 'internet_message_id': False,
            'graph_conversation_id': False, 'sender_email': False, 'change_key': False,
        })
        counts = (len(messages), len(attachments))
        attachments.unlink()
        messages.unlink()
        empty = conversations.filtered(lambda conversation: not conversation.outlook_message_ids.filtered(
            'mail_message_id'))
        empty.unlink()
        (conversations - empty)._outlook_refresh_stats()
        return counts


class EpilotOutlookReadPush(models.Model):
    """ The read flags of one Outlook address that Outlook has not been told yet: the work item of the cron
    *Outlook: send read flags*, run by the common step runner
    (:meth:`epilot.outlook.email.address._outlook_run_due_steps`).

    **Why one item per address.** The flags themselves are the sync records' ``read_push_pending``, written by
    the agents' requests; the item is what a worker claims. A row per address (not per sync record, not per
    batch) because one ``$batch`` of ``PATCH isRead`` is one mailbox's, because Graph throttles per mailbox
    (a ``Retry-After`` holds back that mailbox only), and because the row never changes while agents click: a
    worker locks it (``FOR NO KEY UPDATE SKIP LOCKED``) without waiting for, or making wait, any request. So
    two workers never push the same address's flags at once, and a throttled or failed push is recorded on its
    item (``retry_at``, ``last_error``) by the one retry policy (:func:`outlook_core.errors.retry_delay`).
    Items are made by the cron for the addresses with pending flags, and go with their address.

    **An agent changing a flag while it is being sent.** The step clears ``read_push_pending`` of what it sent
    only where the flag is still the one sent. An agent who changed it since the step's snapshot (REPEATABLE
    READ) makes that ``UPDATE`` fail with a serialization failure: the step rolls back to its savepoint, says
    so at INFO and runs again a second later, in a new snapshot that sends the agent's newer choice. Outlook
    ends with the last flag the agent chose; nothing is logged as an error.
    """
    _name = 'epilot.outlook.read.push'
    _inherit = ['epilot.outlook.work.item']
    _description = "Outlook Read Flags to Send"
    _log_access = False

    address_id = fields.Many2one(
        string="Outlook Address", comodel_name='epilot.outlook.email.address', required=True, readonly=True,
        ondelete='cascade')

    _address_uniq = models.UniqueIndex('(address_id)', "One read-flag work item per Outlook address.")

    @api.model
    def _outlook_cron(self):
        return self.env['epilot.outlook.message']._outlook_push_cron()

    @api.model
    def _outlook_run(self):
        """ The cron's run: make the missing items, then run the due ones a step at a time. """
        self._outlook_prepare()
        self.env['epilot.outlook.email.address']._outlook_run_due_steps(
            self.sudo(), self._outlook_due_ids, lambda item: item._outlook_push())

    @api.model
    def _outlook_prepare(self):
        """ An item for each address with pending flags that has none, and flags of no address (its mailbox is
        no longer synced: nobody to tell) dropped; committed at once, so that another worker finds the items
        instead of waiting on this transaction's new rows. Another worker doing the same at the same moment
        wins; this one leaves it to it. """
        cr = self.env.cr
        self.env.flush_all()
        try:
            with cr.savepoint(flush=False):
                cr.execute(SQL(
                    """INSERT INTO epilot_outlook_read_push (address_id)
                       SELECT DISTINCT record.address_id
                         FROM epilot_outlook_message record
                        WHERE record.read_push_pending IS TRUE AND record.address_id IS NOT NULL
                          AND NOT EXISTS (SELECT 1 FROM epilot_outlook_read_push item
                                           WHERE item.address_id = record.address_id)
                       ON CONFLICT (address_id) DO NOTHING"""), log_exceptions=False)
                cr.execute(SQL(
                    """UPDATE epilot_outlook_message SET read_push_pending = FALSE
                        WHERE read_push_pending IS TRUE AND address_id IS NULL"""), log_exceptions=False)
        except DB_CONFLICTS as error:
            _logger.info("Microsoft Outlook: read flags: another worker prepared the items (%s)", type(error).__name__)
        self.env.invalidate_all()
        self.env['ir.cron']._commit_progress()

    @api.model
    def _outlook_due_ids(self, only=None):
        """ The items with flags to send now, in one query: their address has pending flags, its connection is
        connected, and no ``retry_at`` holds them back.

        :param list only: Consider these ids only.
        :rtype: list
        """
        rows = self.env.execute_query(SQL(
            """SELECT item.id
                 FROM epilot_outlook_read_push item
                 JOIN epilot_outlook_email_address address ON address.id = item.address_id
                 JOIN epilot_outlook_connection connection ON connection.id = address.connection_id
                WHERE connection.state = 'connected'
                  AND (item.retry_at IS NULL OR item.retry_at <= %(now)s)
                  AND %(only)s
                  AND EXISTS (SELECT 1 FROM epilot_outlook_message record
                               WHERE record.address_id = item.address_id AND record.read_push_pending IS TRUE)
             ORDER BY item.id""",
            now=fields.Datetime.now(),
            only=SQL("item.id IN %s", tuple(only)) if only is not None else SQL("TRUE"),
        ))
        return [item_id for (item_id,) in rows]

    def _outlook_push(self):
        """ One step of a locked item: up to :data:`READ_PUSH_BATCH` pending flags of its address in ``$batch``
        requests of ``PATCH isRead``. A message Graph no longer has is done (nothing to mark); anything else
        that failed stays pending, and the item waits for :func:`~outlook_core.errors.retry_delay`.

        :return: True when it sent flags and may go on now (more may be pending).
        :rtype: bool
        """
        self.ensure_one()
        address = self.address_id
        records = self.env['epilot.outlook.message'].sudo().search(
            [('address_id', '=', address.id), ('read_push_pending', '=', True)], order='id', limit=READ_PUSH_BATCH)
        if not records:
            return False
        flags = {record.graph_id: record.is_read for record in records}
        retry_default = READ_PUSH_RETRY.total_seconds()
        try:
            outcome = address.connection_id._outlook_call_graph(
                lambda client: MailboxReader(client, address.email).set_read_flags(flags),
                max_wait=SYNC_MAX_WAIT_S, slot_wait=SYNC_MAX_WAIT_S)
        except (OutlookError, UserError) as error:
            level = logging.INFO if isinstance(error, (TransientError, ConnectionUnusable, UserError)) \
                else logging.WARNING
            _logger.log(level, "Microsoft Outlook: address %s: read flags not sent yet: %s", address.id, error)
            self._outlook_schedule_retry(error, retry_default)
            return False
        sent = records.filtered(lambda record: outcome.get(record.graph_id, True) is None)
        try:
            self._outlook_mark_sent(sent, flags)
        except DB_CONFLICTS as error:
            _logger.info("Microsoft Outlook: address %s: an agent changed read flags while they were sent (%s); "
                         "sending the newer ones", address.id, type(error).__name__)
            self._outlook_schedule_retry(None, 1)
            return False
        failures = [error for error in outcome.values() if error is not None]
        if failures:
            error = next((error for error in failures if isinstance(error, Throttled)), failures[0])
            _logger.info("Microsoft Outlook: address %s: %d read flags not sent yet: %s",
                         address.id, len(records) - len(sent), error)
            self._outlook_schedule_retry(error, retry_default)
            return False
        if self.retry_at or self.last_error:
            self.write({'retry_at': False, 'last_error': False})
        return True

    @api.model
    def _outlook_mark_sent(self, records, flags):
        """ Clear ``read_push_pending`` of ``records`` where the flag is still the one sent (``flags``), in a
        savepoint.

        :raise psycopg2.errors.SerializationFailure: An agent changed one of these flags since this
            transaction's snapshot; nothing was cleared (not logged here: the caller retries).
        """
        cr = self.env.cr
        with cr.savepoint(flush=False):
            for is_read in (True, False):
                ids = tuple(record.id for record in records if bool(flags[record.graph_id]) == is_read)
                if ids:
                    cr.execute(SQL(
                        """UPDATE epilot_outlook_message SET read_push_pending = FALSE
                            WHERE id IN %s AND COALESCE(is_read, FALSE) = %s""", ids, is_read),
                        log_exceptions=False)
        records.invalidate_recordset(['read_push_pending'])
