import dataclasses
import logging
from datetime import timedelta

from odoo import api, fields, models
from odoo.exceptions import UserError

from ..outlook_core.errors import OutlookError, Throttled
from ..outlook_core.mailbox import MailboxReader

_logger = logging.getLogger(__name__)

# Sync records whose read flag one cron turn sends to Graph (20 per $batch request).
READ_PUSH_BATCH = 200
# When Graph could not be told (outage, throttling, connection not usable), the next try.
READ_PUSH_RETRY = timedelta(minutes=5)


class EpilotOutlookMessage(models.Model):
    """ The agents' side of sync records: the read flag sent back to Outlook, and erasure.

    **Read state.** An agent reading a conversation marks its received e-mails read here and queues them
    (``read_push_pending``); :meth:`_cron_outlook_push_read_state` sends ``PATCH isRead`` in ``$batch``
    requests through the connection's Graph client, off the request path. Reading in Outlook comes back
    through delta (``_outlook_apply_facts``); while a push is pending Odoo's flag is the newer one and delta's
    is ignored.

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
        """ Send the queued read flags to Outlook, one mailbox at a time, committing after each.

        A message Graph no longer has is done (nothing to mark); anything else that failed stays queued and
        the cron is triggered again later.
        """
        pending = self.sudo().search([('read_push_pending', '=', True)], order='id', limit=READ_PUSH_BATCH)
        retry = False
        by_address = pending.grouped('address_id')
        for done, (address, records) in enumerate(by_address.items(), start=1):
            if not address:
                records.write({'read_push_pending': False})   # the mailbox is no longer synced: nobody to tell
                continue
            if address.connection_id.state != 'connected':
                continue   # kept for the hourly run after the connection is back
            flags = {record.graph_id: record.is_read for record in records}
            try:
                outcome = address.connection_id._outlook_call_graph(
                    lambda client: MailboxReader(client, address.email).set_read_flags(flags),  # noqa: B023
                    max_wait=2, slot_wait=2)
            except (OutlookError, UserError) as error:
                _logger.info("Microsoft Outlook: address %s: read flags not sent yet: %s", address.id, error)
                retry = True
            else:
                sent = records.filtered(lambda record: outcome.get(record.graph_id, True) is None)
                # Only if unchanged since read: an agent may have flipped it again meanwhile.
                sent.filtered(lambda record: record.is_read == flags[record.graph_id]).write(
                    {'read_push_pending': False})
                retry = retry or len(sent) < len(records)
                if any(isinstance(error, Throttled) for error in outcome.values()):
                    _logger.info("Microsoft Outlook: address %s: Graph throttled read flags", address.id)
            if not self.env['ir.cron']._commit_progress(len(records), remaining=len(by_address) - done):
                break
        if len(pending) == READ_PUSH_BATCH:
            self._outlook_push_cron()._trigger()
        elif retry:
            self._outlook_push_cron()._trigger(at=fields.Datetime.now() + READ_PUSH_RETRY)

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
