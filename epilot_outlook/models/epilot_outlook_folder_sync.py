import logging
import time
from datetime import timedelta

import psycopg2

from odoo import api, fields, models
from odoo.exceptions import UserError
from odoo.fields import Domain
from odoo.tools import SQL

from ..outlook_core import mapping
from ..outlook_core.const import BACKOFF_MAX_S, BATCH_MAX_REQUESTS, BATCH_PARALLEL
from ..outlook_core.errors import OutlookError, SyncReset, TransientError
from ..outlook_core.graph import GraphPage
from ..outlook_core.mailbox import DeltaRequest, MailboxReader, delta_pages, fetch_messages_of
from ..outlook_core.mapping import MappingError
from ..tools import cron_wake
from .epilot_outlook_email_address import SYNC_MAX_WAIT_S, _try_lock_many

_logger = logging.getLogger(__name__)

# Delta pages one cron run handles for a folder before it commits and lets the other folders have a turn.
DELTA_PAGES_PER_RUN = 20
# Folders whose rounds one step of the batched pass asks for, and commits: ``BATCH_PARALLEL`` batches of 20 in
# flight at once, then their new messages fetched together (_outlook_batched_round).
FOLDERS_PER_BATCHED_STEP = BATCH_MAX_REQUESTS * BATCH_PARALLEL
# A lane triggers itself for the next due folder no sooner than this: a folder due now that it could not take (held
# by another lane) must not make it run again and again. Folders falling due within this gap wait for each other.
NEXT_DUE_MIN_GAP = timedelta(seconds=3)
# While push works for an address (every subscription active), delta still runs this often at least, as the
# safety net for notifications Graph dropped or never sent (it drops them after 4 h of failed retries, and
# says ``missed`` only sometimes): a lost notification then costs minutes, not hours, while the Graph traffic
# of an idle mailbox drops by this factor against the 1-minute polling default.
PUSH_SAFETY_POLL = timedelta(minutes=15)
# Notified rounds of one folder start at most this often (seconds): a steady stream of notifications, one per
# POST, costs a round a second, not one per notification, for at most this much more latency.
PUSH_ROUND_GAP_S = 1.0
# When this process last finished a notified round, by (database, folder sync id): monotonic seconds.
_push_round_ended = {}


class EpilotOutlookFolderSync(models.Model):
    """ The live sync of one folder (Inbox or Sent Items) of one Outlook address: Graph delta.

    The delta link is stored verbatim, as is the next link of a round in progress, so a crash or a restart
    resumes the round where it stopped. Delta is the source of truth: it brings new messages, changes (read
    flag, subject) and removals; when Graph forgets the delta state (``syncStateNotFound`` or 410) the round
    starts over over the whole window and nothing is imported twice.

    It also keeps the reconciliation of the folder: Outlook's count for the window next to Odoo's.
    """
    _name = 'epilot.outlook.folder.sync'
    _inherit = ['epilot.outlook.work.item']
    _description = "Outlook Folder Sync"
    _order = 'address_id, folder'

    address_id = fields.Many2one(
        string="Email Address", comodel_name='epilot.outlook.email.address', required=True, ondelete='cascade',
        index=True)
    folder = fields.Selection(
        string="Folder", selection=[('inbox', "Inbox"), ('sentitems', "Sent Items")], required=True)
    delta_link = fields.Text(string="Delta Link", help="Technical: Graph's deltaLink, verbatim.", copy=False)
    delta_next_link = fields.Text(
        string="Round Checkpoint", help="Technical: the nextLink of the delta round in progress, verbatim.",
        copy=False)
    last_round_date = fields.Datetime(string="Last Delta Round", copy=False)
    round_count = fields.Integer(string="Delta Rounds", copy=False)
    resync_count = fields.Integer(
        string="Resyncs", help="How often Graph forgot the delta state and the folder was read again.", copy=False)
    outlook_count = fields.Integer(string="In Outlook", help="Messages in the window in Outlook, at the last "
                                   "reconciliation.", copy=False)
    odoo_count = fields.Integer(string="In Odoo", help="Of those, how many Odoo holds.", copy=False)
    gap_count = fields.Integer(string="Gaps", help="Messages Outlook has that Odoo could not import.", copy=False)
    last_reconcile_date = fields.Datetime(string="Last Reconciliation", copy=False)
    push_pending_since = fields.Datetime(
        string="Notified Since", help="A change notification arrived: a delta round runs now.", copy=False)

    _address_folder_uniq = models.Constraint(
        'UNIQUE (address_id, folder)', "A folder of an address is synced once.")

    # === CRON METHODS === #

    @api.model
    def _cron_outlook_delta(self):
        """ Run the due delta rounds, a few pages per folder per turn, committing after each turn.

        Every delta lane runs this (``ir_cron_outlook_delta`` and its siblings in data/ir_cron_data.xml: Odoo runs
        different cron jobs at once, one job at a time): each lane locks the folder it works on, so the lanes of
        every cron thread of every server share the folders without overlap (see ``_outlook_run_due_steps``).
        """
        self.env['epilot.outlook.subscription']._outlook_collect_notifications()
        # First the rounds that only ask "anything new?" (from a delta link, nothing notified), 20 to a $batch;
        # then, one at a time, the folders a batch cannot take (rounds under way, notified, new, what a batch
        # left); and again while folders fall due. Folders fall due spread over the time their last round took:
        # left to the one-at-a-time pass, each would cost a round trip of its own (bench_scale, 150 ms latency: a
        # lane went on one folder at a time for 15 s, and the next cycle started 27 s late).
        tried = set()   # what the batched pass left in this run: it goes alone
        while budget_left := self._outlook_run_batched_rounds(tried):
            budget_left = self.env['epilot.outlook.email.address']._outlook_run_due_steps(
                self.sudo(), lambda only=None: self._outlook_due_alone_ids(tried, only),
                lambda folder_sync: folder_sync._outlook_run_round(max_pages=DELTA_PAGES_PER_RUN))
            if not budget_left or not self._outlook_batchable_rows(self._outlook_due_ids(), tried):
                break
        if budget_left:
            # Notified folders still due (the time budget ran out, or notifications came after the last look): run
            # again at once. The webhook does not trigger while this run's own trigger is recent.
            self.env['epilot.outlook.subscription']._outlook_collect_notifications()
            if self._outlook_due().filtered('push_pending_since'):
                self._outlook_cron()._trigger()
        self._outlook_trigger_lane()

    @api.model
    def _outlook_trigger_lane(self):
        """ Trigger this lane for when the next folder falls due, and wake the cron workers then.

        Left to its 1-minute grid, a lane may start up to a cycle late (Odoo runs a job once its next call passed
        *and* a cron thread looks), and mail waits that long. Also when the time budget ran out with folders still
        due (a partial run, also in the batched pass, bench_scale with Microsoft's latency): Odoo runs a partial
        job again "as soon as possible", which for an idle cron worker is its next look, up to a minute later
        (half the rounds of 1,000 mailboxes were lost so). An idle worker looks for due triggers once a minute
        only: this process wakes the workers at the trigger's time (``tools/cron_wake.py``).
        """
        if next_due := self._outlook_next_due():
            lane = self.env['ir.cron'].browse(self.env.context.get('cron_id')).exists() or self._outlook_cron()
            now = fields.Datetime.now()
            at = max(next_due, now + NEXT_DUE_MIN_GAP)
            lane._trigger(at=at)
            dbname, delay = self.env.cr.dbname, (at - now).total_seconds()
            self.env.cr.postcommit.add(lambda: cron_wake.wake_at(dbname, delay))

    @api.model
    def _outlook_run_batched_rounds(self, tried):
        """ The due rounds that start from a delta link, with nothing notified and none under way: their first
        page is asked for 20 folders of one connection in one ``$batch`` (``mailbox.delta_pages``), so an idle
        folder costs a batch item and no HTTP request of its own (docs/microsoft-graph.md §3.2, §5), and
        ``BATCH_PARALLEL`` such batches go out at once (Graph's latency, not Outlook's limits, bounds a round). A
        step locks its folders in one statement (``_try_lock_many``: another lane skips them), and each applies its
        page, in a savepoint when it brings changes; a folder whose page continues (a next link), or whose item
        failed, is left due for the one-at-a-time pass, which meets its error where it is handled. A ``SyncReset``
        clears its links there.

        :param set tried: The folders the batched pass left in this run (held by another lane, or still due after
            their batched page), not again; those it leaves now are added.
        :return: False when the cron's time budget is spent.
        :rtype: bool
        """
        cron = self.env['ir.cron']
        # The due list once per pass, not once per batch (quadratic in the folders, bench_scale).
        while rows := self._outlook_batchable_rows(self._outlook_due_ids(), tried):
            while rows:
                connection_id = rows[0][1]
                taken = [sync_id for sync_id, row_connection in rows[:FOLDERS_PER_BATCHED_STEP]
                         if row_connection == connection_id]
                rows = rows[len(taken):]
                locked = _try_lock_many(self.sudo().browse(taken)).ids
                # Still due once locked (another lane may have just done them): one query for the step.
                batch = self.sudo().browse(self._outlook_due_ids(only=locked) if locked else [])
                left = set(taken) - set(batch.ids)   # held by another lane, or just done
                if batch:
                    batch._outlook_batched_round()
                    left.update(self._outlook_due_ids(only=batch.ids))   # a page that continues, a failed item
                tried.update(left)
                if not cron._commit_progress(len(batch), remaining=len(rows)):
                    return False
        return True

    @api.model
    def _outlook_batchable_rows(self, due_ids, tried=()):
        """ The folders of ``due_ids`` that the batched pass takes (a round from a delta link, nothing notified,
        none under way), but not those of ``tried``: ``(id, connection id)`` by connection, then in ``due_ids``'
        order (the longest waiting first).

        :rtype: list
        """
        rows = self.env.execute_query(SQL(
            """SELECT sync.id, address.connection_id FROM epilot_outlook_folder_sync sync
                 JOIN epilot_outlook_email_address address ON address.id = sync.address_id
                WHERE sync.id IN %s AND sync.delta_link IS NOT NULL AND sync.delta_next_link IS NULL
                  AND sync.push_pending_since IS NULL""",
            tuple(due_ids) or (0,)))
        position = {sync_id: index for index, sync_id in enumerate(due_ids)}
        return sorted(((sync_id, connection_id) for sync_id, connection_id in rows if sync_id not in tried),
                      key=lambda row: (row[1], position[row[0]]))

    @api.model
    def _outlook_due_alone_ids(self, tried, only=None):
        """ The due folders for the one-at-a-time pass: those the batched pass cannot take, or took in this run
        (``tried``) and left due. Others falling due meanwhile wait for the next batched pass.

        :rtype: list
        """
        due = self._outlook_due_ids(only)
        batchable = {sync_id for sync_id, _connection in self._outlook_batchable_rows(due, tried)}
        return [sync_id for sync_id in due if sync_id not in batchable]

    def _outlook_batched_round(self):
        """ The next pages of these folders (one connection's) in ``$batch`` requests sent together, then the
        messages they bring that Odoo does not know, all fetched together too (``mailbox.fetch_messages_of``), and
        each page applied; see :meth:`_outlook_run_batched_rounds`. Throttled or failing transiently, they wait
        their retry; a folder whose messages could not be fetched, or another failure of the whole request,
        leaves them due, for the one-at-a-time pass and its error handling. """
        connection = self.address_id.connection_id
        requests_list = [DeltaRequest(sync.id, sync.address_id.email, sync.folder, sync.address_id.window_start,
                                      sync.delta_link) for sync in self]

        def run(client):
            # Every request first, then the writes: a 401 on the way makes the caller refresh and run this again.
            pages = delta_pages(client, requests_list)
            applicable = self.filtered(lambda sync: isinstance(pages.get(sync.id), GraphPage))
            fetched = fetch_messages_of(client, {
                sync.id: (sync.address_id.email, ids) for sync in applicable
                if (ids := sync._outlook_new_ids(pages[sync.id]))})
            for sync in self - applicable:
                page = pages.get(sync.id)
                if isinstance(page, SyncReset):
                    sync.write({'delta_link': False, 'resync_count': sync.resync_count + 1})
                elif isinstance(page, TransientError):   # throttled (after the batch's own retries), 5xx
                    sync._outlook_schedule_retry(page, BACKOFF_MAX_S)
            for sync in applicable:
                prefetched = fetched.get(sync.id)
                if isinstance(prefetched, Exception):
                    _logger.info("Microsoft Outlook: folder sync %s: its new messages could not be fetched with the "
                                 "others (%s); it goes on alone", sync.id, type(prefetched).__name__)
                    continue
                page = pages[sync.id]
                if not page.items and not page.next_link:   # nothing new: only the folder's own row changes
                    sync._outlook_apply_page(None, page)
                    continue
                try:
                    with self.env.cr.savepoint():
                        sync._outlook_apply_page(MailboxReader(client, sync.address_id.email), page, prefetched)
                except (psycopg2.Error, OutlookError) as error:
                    _logger.info("Microsoft Outlook: folder sync %s: its batched page failed (%s); it goes on "
                                 "alone", sync.id, type(error).__name__)

        try:
            connection._outlook_call_graph(run, max_wait=SYNC_MAX_WAIT_S, slot_wait=SYNC_MAX_WAIT_S)
        except TransientError as error:
            self._outlook_schedule_retry(error, BACKOFF_MAX_S)
        except (OutlookError, UserError) as error:
            _logger.info("Microsoft Outlook: connection %s: batched delta request failed (%s); the folders go on "
                         "alone", connection.id, type(error).__name__)

    @api.model
    def _outlook_next_due(self):
        """ When the next folder's polling interval runs out (the connection's interval: a folder whose address
        has push waits longer, and the lane then finds nothing to do); or ``None``. """
        rows = self.env.execute_query(SQL(
            """SELECT MIN(sync.last_round_date + make_interval(mins => connection.poll_interval_minutes))
                 FROM epilot_outlook_folder_sync sync
                 JOIN epilot_outlook_email_address address ON address.id = sync.address_id
                 JOIN epilot_outlook_connection connection ON connection.id = address.connection_id
                WHERE address.sync_state IN ('backfilling', 'live') AND connection.state = 'connected'
                  AND sync.last_round_date IS NOT NULL"""))
        return rows[0][0] if rows and rows[0][0] else None

    @api.model
    def _outlook_due(self):
        """ Folders whose next delta round is due (see :meth:`_outlook_due_ids`), after folding in the
        notifications the webhook queued. """
        self.env['epilot.outlook.subscription']._outlook_collect_notifications()
        return self.sudo().browse(self._outlook_due_ids())

    @api.model
    def _outlook_due_ids(self, only=None):
        """ The folders whose next delta round is due, notified ones first, then the longest waiting, in one
        query (the cron's loop asks again for each folder it locks): their address syncs, their connection is
        connected, no ``Retry-After`` holds them back, and their polling interval has passed (or a round is in
        progress, or a notification asks for one). The interval is the connection's, or :data:`PUSH_SAFETY_POLL`
        when push works for the address (every folder's subscription active and unexpired, as
        ``epilot.outlook.email.address._outlook_push_healthy`` says for one address).

        :param list only: Consider these ids only.
        :rtype: list
        """
        now = fields.Datetime.now()
        rows = self.env.execute_query(SQL(
            """SELECT sync.id
                 FROM epilot_outlook_folder_sync sync
                 JOIN epilot_outlook_email_address address ON address.id = sync.address_id
                 JOIN epilot_outlook_connection connection ON connection.id = address.connection_id
                WHERE address.sync_state IN ('backfilling', 'live') AND connection.state = 'connected'
                  AND (sync.retry_at IS NULL OR sync.retry_at <= %(now)s)
                  AND %(only)s
                  AND (sync.delta_next_link IS NOT NULL OR sync.last_round_date IS NULL
                       OR sync.push_pending_since IS NOT NULL
                       OR sync.last_round_date + make_interval(mins => CASE
                              WHEN address.sync_mode = 'webhook'
                               AND EXISTS (SELECT 1 FROM epilot_outlook_subscription sub
                                            WHERE sub.address_id = address.id)
                               AND NOT EXISTS (SELECT 1 FROM epilot_outlook_subscription sub
                                                WHERE sub.address_id = address.id
                                                  AND (sub.state != 'active' OR sub.expiration IS NULL
                                                       OR sub.expiration <= %(now)s))
                              THEN GREATEST(connection.poll_interval_minutes, %(push_minutes)s)
                              ELSE connection.poll_interval_minutes END) <= %(now)s)
             ORDER BY sync.push_pending_since IS NULL, sync.last_round_date ASC NULLS FIRST, sync.id""",
            now=now, push_minutes=int(PUSH_SAFETY_POLL.total_seconds() // 60),
            only=SQL("sync.id IN %s", tuple(only)) if only is not None else SQL("TRUE"),
        ))
        return [sync_id for (sync_id,) in rows]

    def _outlook_want_round_now(self, since):
        """ A notification arrived (at ``since``): the next delta cron run starts a round of these folders. """
        for sync in self.filtered(lambda sync: not sync.push_pending_since):
            sync.push_pending_since = since

    # === BUSINESS METHODS - DELTA === #

    def _outlook_run_round(self, max_pages=DELTA_PAGES_PER_RUN):
        """ Run (or continue) this folder's delta round for at most ``max_pages`` pages.

        :return: True when the round reached its delta link.
        :rtype: bool
        """
        self.ensure_one()
        address = self.address_id
        notified = bool(self.push_pending_since and not self.delta_next_link)
        key = (self.env.cr.dbname, self.id)
        if notified and (wait := _push_round_ended.get(key, 0.0) + PUSH_ROUND_GAP_S - time.monotonic()) > 0:
            time.sleep(wait)
        done = address._outlook_with_reader(lambda reader: self._outlook_round_pages(reader, max_pages),
                                            on_retry=self)
        if notified:
            _push_round_ended[key] = time.monotonic()
        return done

    def _outlook_round_pages(self, reader, max_pages):
        address = self.address_id
        # A new round sees every change notified before its first page; one notified later asks for another.
        clears_push = bool(self.push_pending_since and not self.delta_next_link)
        for _page_number in range(max_pages):
            link = self.delta_next_link or self.delta_link
            try:
                page = reader.delta_page(self.folder, address.window_start, link)
            except SyncReset:
                _logger.info("Microsoft Outlook: address %s, %s: delta state reset by Graph; reading the window "
                             "again", address.id, self.folder)
                self.write({'delta_link': False, 'delta_next_link': False, 'resync_count': self.resync_count + 1})
                continue
            if clears_push:
                self.push_pending_since = clears_push = False
            if self._outlook_apply_page(reader, page):
                return True
        return False

    def _outlook_apply_page(self, reader, page, prefetched=None):
        """ Apply one page of this folder's delta round: changes to the messages Odoo knows, the others fetched
        and imported, then the checkpoint (the next link) or the end of the round (the delta link).

        :param reader: The address's :class:`MailboxReader` (to fetch new messages).
        :param page: The :class:`~outlook_core.graph.GraphPage`.
        :param tuple prefetched: ``(found, missing)`` of :meth:`_outlook_new_ids`, fetched beforehand with other
            folders' (``mailbox.fetch_messages_of``); whatever it lacks is fetched here.
        :return: True when the round reached its delta link.
        :rtype: bool
        """
        address = self.address_id
        changes = self._outlook_page_changes(page)
        unknown = self.env['epilot.outlook.message']._outlook_apply_delta(address, changes)
        if any(change.removed for change in changes):
            self._outlook_triage_removed(reader)   # archived in Outlook? (models/epilot_outlook_triage.py)
        self._outlook_import_ids(reader, [change.graph_id for change in unknown
                                          if not address._outlook_backfill_covers(change.received_at)], prefetched)
        if page.next_link:
            self.write({'delta_next_link': page.next_link, 'retry_at': False})
            return False
        self.write({
            'delta_link': page.delta_link or False,
            'delta_next_link': False,
            'last_round_date': fields.Datetime.now(),
            'round_count': self.round_count + 1,
            'retry_at': False,
            'last_error': False,
        })
        return True

    def _outlook_page_changes(self, page):
        """ The :class:`~outlook_core.mapping.DeltaChange` items of a delta page (an item without id is skipped). """
        changes = []
        for item in page.items:
            try:
                changes.append(mapping.map_delta_item(item))
            except MappingError:
                _logger.warning("Microsoft Outlook: address %s: a delta item without id was skipped",
                                self.address_id.id)
        return changes

    def _outlook_new_ids(self, page):
        """ The messages of a delta page that :meth:`_outlook_apply_page` will fetch and import: neither known
        nor removed, nor the backfill's business. Read only (the page is applied later).

        :rtype: list
        """
        by_id = {}
        for change in self._outlook_page_changes(page):
            by_id[change.graph_id] = change   # the last word of a replayed item wins, as in _outlook_apply_delta
        address = self.address_id
        candidates = {graph_id: change for graph_id, change in by_id.items() if not change.removed}
        known = self.env['epilot.outlook.message']._outlook_known(address.shared_inbox_id, candidates)
        return [graph_id for graph_id, change in candidates.items()
                if graph_id not in known and not address._outlook_backfill_covers(change.received_at)]

    def _outlook_import_ids(self, reader, graph_ids, prefetched=None):
        """ Fetch the messages ``graph_ids`` in full (20 per ``$batch``) and import them.

        :param tuple prefetched: ``(found, missing)`` fetched beforehand for some of them.
        :return: The ids Graph no longer has (deleted or moved out meanwhile).
        :rtype: list
        """
        if not graph_ids:
            return []
        items, missing = [], []
        if prefetched:
            found_by_id = {item.get('id'): item for item in prefetched[0] if isinstance(item, dict)}
            gone = set(prefetched[1])
            items = [found_by_id[graph_id] for graph_id in graph_ids if graph_id in found_by_id]
            missing = [graph_id for graph_id in graph_ids if graph_id in gone]
            graph_ids = [graph_id for graph_id in graph_ids if graph_id not in found_by_id and graph_id not in gone]
        if graph_ids:
            more_items, more_missing = reader.fetch_messages(graph_ids)
            items, missing = items + more_items, missing + more_missing
        messages, skipped = mapping.map_messages(items, self.folder)
        if skipped:
            _logger.warning("Microsoft Outlook: address %s: %d messages without id were skipped",
                            self.address_id.id, skipped)
        self.env['epilot.outlook.message']._outlook_import(self.address_id, messages)
        return missing

    # === BUSINESS METHODS - RECONCILIATION === #

    def _outlook_reconcile(self, reader):
        """ Compare Outlook's ids for the window with Odoo's, import what is missing, record the counts.

        Costs one request per 1,000 ids, plus one per 20 missing messages.
        """
        self.ensure_one()
        address = self.address_id
        outlook_ids = reader.list_ids(self.folder, address.window_start)
        known = self.env['epilot.outlook.message']._outlook_known(address.shared_inbox_id, outlook_ids)
        missing = sorted(outlook_ids - set(known))
        gone = []
        if missing:
            _logger.info("Microsoft Outlook: address %s, %s: reconciliation imports %d missing messages",
                         address.id, self.folder, len(missing))
            gone = self._outlook_import_ids(reader, missing)
        # Odoo messages of the window that Outlook no longer lists were removed there: say so (they stay).
        Message = self.env['epilot.outlook.message']
        stale = Message.search(Message._outlook_window_domain(address, self.folder, address.window_start)
                               & Domain('graph_id', 'not in', list(outlook_ids)))
        stale.write({'removed_in_outlook': True, 'removed_date': fields.Datetime.now()})
        outlook_ids -= set(gone)   # deleted in Outlook while we looked
        present = Message._outlook_known(address.shared_inbox_id, outlook_ids)
        self.write({
            'outlook_count': len(outlook_ids),
            'odoo_count': len(present),
            'gap_count': len(outlook_ids) - len(present),
            'last_reconcile_date': fields.Datetime.now(),
        })
        return len(missing) - len(gone)

    # === TOOLING === #

    @api.model
    def _outlook_cron(self):
        return self.env.ref('epilot_outlook.ir_cron_outlook_delta')
