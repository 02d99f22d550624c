""" Triage both ways with Outlook (issue 19, item 5), per shared inbox, off by default.

- **Odoo → Outlook**: an agent closes a conversation; its received e-mails still in the Inbox are queued
  (``archive_pending`` on their sync records) and the cron *Outlook: archive closed conversations* moves them to
  the mailbox's Archive folder, 20 moves per ``$batch``, through the common step runner, never in the agent's
  request. A move keeps the immutable id (docs/microsoft-graph.md §3.4), so the sync record still names the
  e-mail; it is marked ``archived_by_odoo`` so that delta's echo of the move (the Inbox's ``@removed``) is not
  taken for a close in Outlook.
- **Outlook → Odoo**: delta reports an e-mail removed from the Inbox (``@removed``, reason ``deleted``, also for
  a move, §3.2). One ``$batch`` asks where it is now (``parentFolderId``); in the Archive folder, with every
  received e-mail of its conversation out of the Inbox, the conversation is closed, with "Closed in Outlook" in
  its chatter. Deleted Items or any other folder closes nothing.

A new e-mail from the customer reopens the conversation as before (``_outlook_refresh_stats``). Nothing is ever
deleted in Outlook: the only write is ``move`` to ``archive``.
"""
import logging

from markupsafe import Markup

from odoo import api, fields, models
from odoo.tools import SQL

from ..outlook_core.errors import NotFound, TransientError

_logger = logging.getLogger(__name__)

# Exchange's well-known name of the folder Outlook's Archive button moves mail to.
ARCHIVE = 'archive'
# Moves one step sends at most: 10 $batch requests of 20, then the step commits.
MOVES_PER_STEP = 200
# Removals from the Inbox one delta page looks up at most (then the next page with removals goes on).
LOOKUPS_PER_PAGE = 200
# After a failure that is not transient (the mailbox right was lost...), the next try.
MOVE_RETRY_S = 15 * 60
# Context key: this close comes from Outlook (nothing to move back there).
CLOSED_IN_OUTLOOK = 'epilot_outlook_closed_in_outlook'


class EpilotSharedInbox(models.Model):
    _inherit = 'epilot.shared.inbox'

    outlook_sync_triage = fields.Boolean(
        string="Sync Triage with Outlook", default=False, tracking=True,
        help="Closing a conversation in Odoo moves its received e-mails to the mailbox's Archive folder, and "
             "archiving them in Outlook closes it in Odoo. A new e-mail reopens it. Nothing is deleted in Outlook.")


class EpilotOutlookEmailAddress(models.Model):
    _inherit = 'epilot.outlook.email.address'

    archive_folder_ref = fields.Char(
        string="Archive Folder", readonly=True, copy=False,
        help="Technical: the id of the mailbox's Archive folder, asked once (folder ids never change).")

    def _outlook_archive_folder(self, reader):
        """ The id of this mailbox's Archive folder: asked of Graph once, then kept. """
        self.ensure_one()
        if not self.archive_folder_ref:
            self.archive_folder_ref = reader.folder_id(ARCHIVE) or False
        return self.archive_folder_ref


class EpilotOutlookMessage(models.Model):
    _inherit = 'epilot.outlook.message'

    archive_pending = fields.Boolean(
        string="To Archive in Outlook", readonly=True,
        help="Technical: its conversation was closed in Odoo; the e-mail is to be moved to the Archive folder.")
    archived_by_odoo = fields.Boolean(
        string="Archived by Odoo", readonly=True,
        help="Odoo moved this e-mail to the Archive folder when its conversation was closed: its removal from the "
             "Inbox is Odoo's own doing, not a close in Outlook.")
    triage_check_pending = fields.Boolean(
        string="Removal to Look At", readonly=True,
        help="Technical: removed from the Inbox in Outlook; where it went (Archive or elsewhere) is still to be "
             "looked up.")

    _archive_pending_idx = models.Index('(address_id) WHERE archive_pending IS TRUE')
    _triage_check_pending_idx = models.Index('(address_id) WHERE triage_check_pending IS TRUE')

    def _outlook_apply_delta(self, address, changes):
        """ Override: in an inbox that syncs triage, an e-mail delta removes from the Inbox now (not a replay of a
        removal already applied, not Odoo's own move) is marked for :meth:`_outlook_triage_removed`, which looks
        up where it went. Marked in the page's transaction, so a lookup that fails is tried again. """
        removed = [change.graph_id for change in changes if change.removed]
        watch = self.browse()
        if removed and address.shared_inbox_id.outlook_sync_triage:
            watch = self.search([
                ('inbox_id', '=', address.shared_inbox_id.id), ('graph_id', 'in', removed), ('folder', '=', 'inbox'),
                ('removed_in_outlook', '=', False), ('archived_by_odoo', '=', False), ('conversation_id', '!=', False),
            ])
        unknown = super()._outlook_apply_delta(address, changes)
        watch.filtered('removed_in_outlook').write({'triage_check_pending': True})
        return unknown

    def _outlook_apply_facts(self, message):
        """ Override: an e-mail back in the Inbox is no longer Odoo's archived one, nor a removal to look at. """
        was_removed = self.removed_in_outlook
        super()._outlook_apply_facts(message)
        if was_removed and not self.removed_in_outlook and (self.archived_by_odoo or self.triage_check_pending):
            self.write({'archived_by_odoo': False, 'triage_check_pending': False})


class EpilotSharedConversation(models.Model):
    _inherit = 'epilot.shared.conversation'

    def write(self, vals):
        result = super().write(vals)
        if vals.get('state') == 'closed' and not self.env.context.get(CLOSED_IN_OUTLOOK):
            self._outlook_queue_archive()
        return result

    def _outlook_queue_archive(self):
        """ Closed in Odoo: queue the received e-mails still in the Inbox of the inboxes that sync triage for the
        cron (one search, one write, one trigger: Graph is never called in the agent's request). Queued as the
        superuser: whoever may close the conversation moves its e-mails. """
        records = self.env['epilot.outlook.message'].sudo().search([
            ('conversation_id', 'in', self.ids), ('folder', '=', 'inbox'), ('removed_in_outlook', '=', False),
            ('archive_pending', '=', False), ('odoo_own_mail', '=', False), ('mail_message_id', '!=', False),
            ('address_id', '!=', False), ('inbox_id.outlook_sync_triage', '=', True),
        ])
        if records:
            records.write({'archive_pending': True})
            self.env['epilot.outlook.triage']._outlook_queue(records.address_id)

    def _outlook_close_in_outlook(self):
        """ Archived in Outlook: close these conversations, said in their chatter with the status change. """
        for conversation in self:
            conversation._track_set_log_message(Markup('<p>%s</p>') % self.env._(
                "Closed in Outlook: its e-mails were archived there."))
        self.with_context(**{CLOSED_IN_OUTLOOK: True}).write({'state': 'closed'})


class EpilotOutlookFolderSync(models.Model):
    _inherit = 'epilot.outlook.folder.sync'

    def _outlook_triage_removed(self, reader):
        """ Look up where the e-mails delta removed from this Inbox went (``triage_check_pending``), in one
        ``$batch`` per 20, and close the conversations archived in Outlook: the e-mail is in the mailbox's Archive
        folder and none of the conversation's received e-mails is left in the Inbox. Called by
        ``_outlook_apply_page`` for pages with removals only, so an idle round costs nothing more.

        :raise GraphError: The lookup failed (throttled...): the marks stay, the page is applied again later.
        """
        if self.folder != 'inbox':
            return
        address = self.address_id
        Message = self.env['epilot.outlook.message']
        pending = Message.search([('address_id', '=', address.id), ('triage_check_pending', '=', True)],
                                 order='id', limit=LOOKUPS_PER_PAGE)
        if not pending:
            return
        # Conversations already closed (by an agent, or by another e-mail of this page) need no lookup.
        lookup = pending.filtered(lambda record: record.conversation_id.state != 'closed'
                                  and address.shared_inbox_id.outlook_sync_triage)
        archived = Message
        if lookup:
            archive = address._outlook_archive_folder(reader)
            where = reader.parent_folders(lookup.mapped('graph_id'))
            archived = lookup.filtered(lambda record: archive and where.get(record.graph_id) == archive)
        pending.write({'triage_check_pending': False})
        conversations = archived.conversation_id
        if not conversations:
            return
        still_in = Message.search([
            ('conversation_id', 'in', conversations.ids), ('folder', '=', 'inbox'), ('removed_in_outlook', '=', False),
            ('odoo_own_mail', '=', False), ('mail_message_id', '!=', False),
        ]).conversation_id
        closing = conversations - still_in
        if closing:
            _logger.info("Microsoft Outlook: address %s: %d conversations archived in Outlook are closed", address.id,
                         len(closing))
            closing._outlook_close_in_outlook()


class EpilotOutlookTriage(models.Model):
    """ The moves to the Archive folder one Outlook address still owes Outlook: a work item of the common step
    runner (``epilot.outlook.email.address._outlook_run_due_steps``), with its ``retry_at`` and ``last_error``.
    The e-mails to move are the address's sync records with ``archive_pending``. """
    _name = 'epilot.outlook.triage'
    _inherit = ['epilot.outlook.work.item']
    _description = "Outlook Triage"

    address_id = fields.Many2one(
        string="Email Address", comodel_name='epilot.outlook.email.address', required=True, ondelete='cascade')
    moved_count = fields.Integer(string="Moved to Archive", readonly=True, copy=False)
    last_move_date = fields.Datetime(string="Last Move", readonly=True, copy=False)

    _address_uniq = models.Constraint('UNIQUE (address_id)', "An address has one triage queue.")

    # === CRON METHODS === #

    @api.model
    def _cron_outlook_triage(self):
        """ Move the queued e-mails of every due address, a step (at most :data:`MOVES_PER_STEP`) at a time,
        committing after each, in parallel with the other cron threads (row locks). """
        self.env['epilot.outlook.email.address']._outlook_run_due_steps(
            self.sudo(), self._outlook_due_ids, lambda item: item._outlook_run_step())

    @api.model
    def _outlook_due_ids(self, only=None):
        """ The addresses' queues with e-mails to move, whose address syncs, whose connection is connected and
        that no retry holds back, longest waiting first, in one query. """
        rows = self.env.execute_query(SQL(
            """SELECT triage.id
                 FROM epilot_outlook_triage triage
                 JOIN epilot_outlook_email_address address ON address.id = triage.address_id
                 JOIN epilot_outlook_connection connection ON connection.id = address.connection_id
                WHERE address.sync_state IN ('backfilling', 'live') AND connection.state = 'connected'
                  AND (triage.retry_at IS NULL OR triage.retry_at <= %(now)s)
                  AND %(only)s
                  AND EXISTS (SELECT 1 FROM epilot_outlook_message message
                               WHERE message.address_id = triage.address_id AND message.archive_pending IS TRUE)
             ORDER BY triage.last_move_date ASC NULLS FIRST, triage.id""",
            now=fields.Datetime.now(),
            only=SQL("triage.id IN %s", tuple(only)) if only is not None else SQL("TRUE"),
        ))
        return [triage_id for (triage_id,) in rows]

    # === BUSINESS METHODS === #

    @api.model
    def _outlook_queue(self, addresses):
        """ Make sure each of ``addresses`` has its queue, and wake the cron. ``ON CONFLICT``: two agents closing
        conversations of one mailbox at the same moment both succeed. """
        self.env.cr.execute(SQL(
            """INSERT INTO epilot_outlook_triage (address_id, create_uid, create_date, write_uid, write_date)
               SELECT address_id, %(uid)s, %(now)s, %(uid)s, %(now)s FROM unnest(%(ids)s) AS address_id
               ON CONFLICT (address_id) DO NOTHING""",
            uid=self.env.uid, now=self.env.cr.now(), ids=list(addresses.ids)))
        self._outlook_cron().sudo()._trigger()

    def _outlook_run_step(self):
        """ Move this address's next queued e-mails to its Archive folder (20 per ``$batch``). An e-mail whose
        conversation was reopened since, or whose inbox no longer syncs triage, is not moved. Moved: the record
        is *Removed in Outlook* and ``archived_by_odoo``. Gone from the mailbox: nothing to move. Throttled or
        failing: the rest waits for :meth:`_outlook_schedule_retry`.

        :return: True when the step made progress.
        :rtype: bool
        """
        self.ensure_one()
        address = self.address_id
        pending = self.env['epilot.outlook.message'].sudo().search(
            [('address_id', '=', address.id), ('archive_pending', '=', True)], order='id', limit=MOVES_PER_STEP)
        wanted = pending.filtered(lambda record: record.inbox_id.outlook_sync_triage and not record.removed_in_outlook
                                  and record.conversation_id.state == 'closed')
        (pending - wanted).write({'archive_pending': False})
        if not wanted:
            self.write({'retry_at': False, 'last_error': False})
            return bool(pending)
        outcome = address._outlook_with_reader(
            lambda reader: reader.move_messages(wanted.mapped('graph_id'), ARCHIVE), on_retry=self)
        if outcome is None:
            return False   # _outlook_with_reader recorded the retry (or the address's lost access)
        now = fields.Datetime.now()
        moved = wanted.filtered(lambda record: outcome.get(record.graph_id, False) is None)
        gone = wanted.filtered(lambda record: isinstance(outcome.get(record.graph_id), NotFound))
        moved.write({'archive_pending': False, 'archived_by_odoo': True, 'removed_in_outlook': True,
                     'removed_date': now})
        gone.write({'archive_pending': False})
        values = {'moved_count': self.moved_count + len(moved), 'last_move_date': now if moved else self.last_move_date}
        failed = [error for error in outcome.values() if error is not None and not isinstance(error, NotFound)]
        if failed:
            error = next((error for error in failed if isinstance(error, TransientError)), failed[0])
            _logger.info("Microsoft Outlook: address %s: %d moves to Archive wait (%s)", address.id, len(failed),
                         type(error).__name__)
            self._outlook_schedule_retry(error, MOVE_RETRY_S, **values)
        else:
            self.write({**values, 'retry_at': False, 'last_error': False})
        return bool(moved or gone)

    # === TOOLING === #

    @api.model
    def _outlook_cron(self):
        return self.env.ref('epilot_outlook.ir_cron_outlook_triage')
