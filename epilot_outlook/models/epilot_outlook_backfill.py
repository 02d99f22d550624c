import logging
import time
from datetime import timedelta

from odoo import api, fields, models

from ..outlook_core import mapping
from ..outlook_core.mailbox import MailboxReader
from ..outlook_core.prefetch import PagePrefetcher
from ..tools.sanitize import SanitizerPool

_logger = logging.getLogger(__name__)

# The next page of each running backfill, read while this process imports the current one.
PREFETCHER = PagePrefetcher()
# ... and its bodies sanitized meanwhile, in a helper process held while a backfill cron runs.
SANITIZER = SanitizerPool()
# A backfill refreshes the planner's statistics of the tables it fills when its count of imported messages
# reaches this, and again each time it doubles (EpilotOutlookMessage._outlook_analyze).
ANALYZE_FROM = 1024


class EpilotOutlookBackfill(models.Model):
    """ The import of an address's past mail: the window's messages, newest first, folder by folder.

    It pages through Graph's filtered list, a few pages per step (``MailboxReader.backfill_pages``: 200
    messages, in Graph pages of 50), storing the last ``nextLink`` verbatim as its checkpoint in the same
    transaction as the messages, so a crash, a restart or a pause resumes at the first page not yet committed.
    It never changes anything in Exchange. Its last step is a reconciliation of each folder.

    Progress (done / total, messages per second, ETA) is shown on the address.
    """
    _name = 'epilot.outlook.backfill'
    _inherit = ['epilot.outlook.work.item']
    _description = "Outlook Backfill"
    _order = 'id desc'

    address_id = fields.Many2one(
        string="Email Address", comodel_name='epilot.outlook.email.address', required=True, ondelete='cascade',
        index=True)
    state = fields.Selection(
        string="Backfill Status",
        selection=[
            ('pending', "Pending"),
            ('running', "Running"),
            ('waiting', "Waiting (Throttled)"),
            ('done', "Done"),
            ('cancelled', "Cancelled"),
            ('failed', "Failed"),
        ],
        required=True,
        default='pending',
    )
    window_start = fields.Datetime(string="Window Start", required=True)
    started_date = fields.Datetime(
        string="Started", required=True, default=fields.Datetime.now,
        help="Mail received after this is delta's to import; before it, the backfill's.")
    finished_date = fields.Datetime(string="Finished")
    folder = fields.Selection(
        string="Current Folder", selection=[('inbox', "Inbox"), ('sentitems', "Sent Items")], default='inbox',
        help="Empty once every page is imported (only the reconciliation is left).")
    next_link = fields.Text(string="Checkpoint", help="Technical: Graph's nextLink, verbatim.", copy=False)
    total = fields.Integer(string="Total", help="Messages in the window in Outlook, when the backfill started.")
    done = fields.Integer(string="Done")
    imported = fields.Integer(string="Imported", help="Messages that were new to Odoo.")
    busy_seconds = fields.Float(string="Working Time (s)", help="Time spent importing, for the rate.")
    rate = fields.Float(string="Messages / s", compute='_compute_rate', digits=(16, 1))
    eta = fields.Datetime(string="Estimated End", compute='_compute_rate')
    progress = fields.Float(string="Progress (%)", compute='_compute_rate')

    # === COMPUTE METHODS === #

    @api.depends('done', 'total', 'busy_seconds', 'state')
    def _compute_rate(self):
        now = fields.Datetime.now()
        for backfill in self:
            rate = backfill.done / backfill.busy_seconds if backfill.busy_seconds else 0.0
            left = max(backfill.total - backfill.done, 0)
            backfill.rate = rate
            backfill.progress = min(100.0, 100.0 * backfill.done / backfill.total) if backfill.total else (
                100.0 if backfill.state == 'done' else 0.0)
            running = backfill.state in ('pending', 'running', 'waiting')
            backfill.eta = now + timedelta(seconds=left / rate) if running and rate and left else False

    # === CRON METHODS === #

    @api.model
    def _cron_outlook_backfill(self):
        """ Import the due backfills a step at a time (a batch of pages), committing after each step. """
        with SANITIZER.held():
            self.env['epilot.outlook.email.address']._outlook_run_due_steps(
                self.sudo(), lambda only=None: self._outlook_due(only).ids,
                lambda backfill: backfill._outlook_run_page())

    @api.model
    def _outlook_due(self, only=None):
        """ The backfills with a step to run now (among the ids ``only`` when given), oldest first. """
        now = fields.Datetime.now()
        return self.sudo().search([
            ('state', 'in', ('pending', 'running', 'waiting')),
            ('address_id.sync_state', '=', 'backfilling'),
            ('address_id.connection_id.state', '=', 'connected'),
            '|', ('retry_at', '=', False), ('retry_at', '<=', now),
            *([('id', 'in', only)] if only is not None else []),
        ], order='id')

    # === BUSINESS METHODS === #

    def _outlook_run_page(self):
        """ Import the next pages (or count the window first, or reconcile last).

        :return: True when it made progress and may go on now; False when it must wait or stopped.
        :rtype: bool
        """
        self.ensure_one()
        started = time.monotonic()
        progressed = self.address_id._outlook_with_reader(self._outlook_step, on_retry=self)
        self.busy_seconds += time.monotonic() - started
        return bool(progressed)

    def _outlook_step(self, reader):
        address = self.address_id
        if self.state == 'pending':
            counts = reader.count_window(self.window_start)
            self.write({'state': 'running', 'total': sum(counts.values()), 'folder': mapping.FOLDERS[0]})
            return True
        if self.state == 'waiting':
            self.state = 'running'
        if not self.folder:   # every page was imported; the reconciliation was interrupted: only it is left
            self._outlook_finish(reader)
            return False
        page, messages, skipped, bodies = self._outlook_read_page(reader)
        if skipped:
            _logger.warning("Microsoft Outlook: address %s: %d messages without id were skipped", address.id, skipped)
        imported = self.env['epilot.outlook.message']._outlook_import(address, messages, bodies)
        if (self.imported + imported).bit_length() > max(self.imported, ANALYZE_FROM - 1).bit_length():
            self.env['epilot.outlook.message']._outlook_analyze()
        values = {'done': self.done + len(page.items), 'imported': self.imported + imported,
                  'next_link': page.next_link or False, 'retry_at': False, 'last_error': False}
        if not page.next_link:
            following = mapping.FOLDERS[mapping.FOLDERS.index(self.folder) + 1:]
            if following:
                values['folder'] = following[0]
            else:
                self.write({**values, 'folder': False})
                self._outlook_finish(reader)
                return False
        self.write(values)
        return True

    def _outlook_read_page(self, reader):
        """ The pages from the checkpoint (one batch, ``MailboxReader.backfill_pages``), mapped, with their bodies
        being sanitized: read ahead by the previous step of this process, else read from Graph now. The batch
        after it is then read in the background while this one is imported, and its bodies are sent to the
        sanitizer's helper process as soon as they arrive.

        :return: ``(page, messages, skipped, bodies)``: the pages as one Graph page (their items, the last
            ``nextLink``), its mapped messages, how many items were left out, and the messages' sanitized bodies
            (:class:`tools.sanitize.SanitizedBodies`; ``None`` for pages read now: the import then sanitizes
            the bodies of its new messages only).
        :rtype: tuple
        """
        Message = self.env['epilot.outlook.message']
        key = (self.env.cr.dbname, self.id, self.folder, self.next_link)
        read = PREFETCHER.take(key) if self.next_link else None
        if read is None:
            page = reader.backfill_pages(self.folder, self.window_start, self.next_link or None)
            read = (page, *mapping.map_messages(page.items, self.folder), None)
        page = read[0]
        if page.next_link:
            connection, mailbox = self.address_id.connection_id, self.address_id.email
            # The background thread must not use this cursor: it gets the token and the sanitizer now, and no
            # retry, no wait (a failed read is read again by the next step, where errors are handled).
            token = connection._outlook_get_access_token()
            client = connection._outlook_graph_client(
                token_provider=lambda: token, max_retries=0, max_wait=0, session=PREFETCHER.sessions)
            folder, since, link = self.folder, self.window_start, page.next_link
            sanitize = Message._outlook_body_sanitizer()

            def read_ahead():
                ahead = MailboxReader(client, mailbox).backfill_pages(folder, since, link)
                messages, skipped = mapping.map_messages(ahead.items, folder)
                bodies = SANITIZER.submit(sanitize, [message.body_html for message in messages])
                return ahead, messages, skipped, bodies

            PREFETCHER.start((self.env.cr.dbname, self.id, folder, link), read_ahead)
        return read

    def _outlook_finish(self, reader):
        """ Last step: reconcile each folder (import what the pages missed), then the address goes live. """
        for folder_sync in self.address_id.folder_sync_ids:
            folder_sync._outlook_reconcile(reader)
        self.write({'state': 'done', 'finished_date': fields.Datetime.now(), 'next_link': False})
        if self.address_id.sync_state == 'backfilling':
            self.address_id.sync_state = 'live'
        _logger.info("Microsoft Outlook: address %s: backfill done (%d messages, %d new)", self.address_id.id,
                     self.done, self.imported)

    # === TOOLING === #

    def _outlook_schedule_retry(self, error, default, **values):
        # A running backfill waits for its retry (the form says so); a cancelled or finished one stays as it is.
        if self.state in ('pending', 'running', 'waiting') and 'state' not in values:
            values['state'] = 'waiting'
        return super()._outlook_schedule_retry(error, default, **values)

    @api.model
    def _outlook_cron(self):
        return self.env.ref('epilot_outlook.ir_cron_outlook_backfill')
