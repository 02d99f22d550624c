import logging
import random
from collections import Counter
from datetime import timedelta

import psycopg2.errors

from odoo import api, fields, models
from odoo.exceptions import UserError, ValidationError
from odoo.tools import SQL, email_normalize

from ..outlook_core import const
from ..outlook_core.errors import ConnectionUnusable, Forbidden, NotFound, OutlookError, Throttled, TransientError
from ..outlook_core.mailbox import MailboxReader
from ..outlook_core.mapping import FOLDERS
from ..tools.explain import explain
from ..tools.user_errors import TitledUserError

_logger = logging.getLogger(__name__)

# Bounds of the backfill window, in days. Kept in one place: the SQL CHECK and the Python constraint both use them.
BACKFILL_DAYS_MIN = 1
BACKFILL_DAYS_MAX = 3650
BACKFILL_DAYS_DEFAULT = 30
# A sync step waits no longer than this for a Retry-After or for one of the mailbox's 4 request slots: past it,
# it reschedules itself with ir.cron._trigger(at=...) instead of holding a cron worker.
SYNC_MAX_WAIT_S = 2
# Steps one cron run gives an item that does not finish (a round of many pages, 20 per step), between the others'.
MAX_IDLE_STEPS_PER_RUN = 50
# Mail received this long before the backfill started is the backfill's to import, not delta's: Graph's clock and
# Odoo's may differ by this much. Both importing it is harmless (the exactly-once key).
CLOCK_MARGIN = timedelta(minutes=5)
# Another worker imported the same messages at the same moment (the unique keys refused the second), or wrote the
# same rows: the step is rolled back to its savepoint and retried soon, in a new transaction that sees the first.
DB_CONFLICTS = (
    psycopg2.errors.UniqueViolation, psycopg2.errors.SerializationFailure, psycopg2.errors.DeadlockDetected,
)


class EpilotOutlookEmailAddress(models.Model):
    """ A Microsoft 365 shared mailbox address that a connection syncs into a shared inbox.

    The address belongs to its connection and is deleted with it. The shared inbox it feeds does not: the
    inbox, its conversations and their history outlive the Outlook address.
    """
    _name = 'epilot.outlook.email.address'
    _description = "Outlook Email Address"
    _inherit = ['epilot.outlook.address.mixin']
    _order = 'email, id'
    _rec_name = 'email'
    _check_company_auto = True

    email = fields.Char(required=True)
    name = fields.Char(string="Mailbox Name", help="The display name of the shared mailbox in Outlook.")
    connection_id = fields.Many2one(
        string="Connection",
        comodel_name='epilot.outlook.connection',
        required=True,
        default=lambda self: self._default_connection_id(),
        ondelete='cascade',  # Disconnecting a tenant removes its addresses, never the inboxes they fed.
        index=True,
    )
    company_id = fields.Many2one(related='connection_id.company_id', store=True, index=True, precompute=True)
    shared_inbox_id = fields.Many2one(
        string="Shared Inbox",
        comodel_name='epilot.shared.inbox',
        ondelete='restrict',  # An inbox still fed by an address must not vanish under it; archive it instead.
        index='btree_not_null',
        check_company=True,
    )
    backfill_days = fields.Integer(
        string="Backfill Window (Days)",
        help="How many days of past mail to import when the address is first synced.",
        required=True,
        default=BACKFILL_DAYS_DEFAULT,
    )
    sync_mode = fields.Selection(
        string="Sync Mode",
        selection=[
            ('webhook', "Push (webhook)"),
            ('polling', "Delta Polling"),
        ],
        help="Push: Graph notifies Odoo of every change within seconds, and Odoo fetches it with a delta round "
             "(plus a round every 15 minutes as a safety net). Delta polling: Odoo asks Graph for changes on a "
             "schedule, for mailboxes where Graph refuses a subscription.",
        required=True,
        default='polling',
    )
    sync_state = fields.Selection(
        string="Sync Status",
        selection=[
            ('pending', "Pending"),
            ('backfilling', "Backfilling"),
            ('live', "Live"),
            ('polling', "Polling"),
            ('paused', "Paused"),
            ('error', "Error"),
        ],
        required=True,
        default='pending',
        copy=False,
    )
    last_sync_date = fields.Datetime(string="Last Sync", compute='_compute_sync_facts')
    last_error = fields.Text(string="Last Error", copy=False)
    poll_interval_minutes = fields.Integer(related='connection_id.poll_interval_minutes')
    window_start = fields.Datetime(
        string="Window Start", help="Mail received since then is synced (set when sync starts).", copy=False)
    folder_sync_ids = fields.One2many(
        string="Folders", comodel_name='epilot.outlook.folder.sync', inverse_name='address_id')
    backfill_ids = fields.One2many(
        string="Backfills", comodel_name='epilot.outlook.backfill', inverse_name='address_id')
    backfill_id = fields.Many2one(
        string="Current Backfill", comodel_name='epilot.outlook.backfill', readonly=True, copy=False,
        ondelete='set null')
    backfill_state = fields.Selection(related='backfill_id.state', string="Backfill Status")
    backfill_done = fields.Integer(related='backfill_id.done', string="Backfilled")
    backfill_total = fields.Integer(related='backfill_id.total', string="To Backfill")
    backfill_progress = fields.Float(related='backfill_id.progress', string="Backfill Progress")
    backfill_rate = fields.Float(related='backfill_id.rate', string="Messages / s")
    backfill_eta = fields.Datetime(related='backfill_id.eta', string="Backfill ETA")
    outlook_count = fields.Integer(string="In Outlook", compute='_compute_sync_facts')
    odoo_count = fields.Integer(string="In Odoo", compute='_compute_sync_facts')
    gap_count = fields.Integer(string="Gaps", compute='_compute_sync_facts')
    send_mode = fields.Selection(
        string="Send As",
        selection=[
            ('send_as', "Send As"),
            ('send_on_behalf', "Send on Behalf"),
        ],
        help="How the service account sends this mailbox's e-mails. Send As: they come from the shared mailbox "
             "and nothing shows the service account; the copy is in the shared mailbox's Sent Items. Send on "
             "Behalf: recipients see \"service account on behalf of the mailbox\"; the copy is in the service "
             "account's Sent Items. Exchange must grant the service account the matching right on the mailbox. "
             "Empty means Send As.",
        default='send_as',
    )
    send_odoo_mail = fields.Boolean(
        string="Send Odoo's Other Mail",
        help="Off (the default), this mailbox sends only the e-mails of its shared inbox's conversations, written "
             "by the inbox's members. On, Odoo's other e-mails from this address (quotations, invoices, password "
             "resets, invitations) leave through it too. Their copies in Sent Items are never shown in the inbox, "
             "but Outlook users of the mailbox can read them, links and tokens included.",
        copy=False,
    )
    odoo_mail_warning = fields.Text(
        string="Odoo's Own Mail Warning", compute='_compute_odoo_mail_warning',
        help="This address is one Odoo sends its own mail from.")
    mail_server_ids = fields.One2many(
        string="Outgoing Mail Server", comodel_name='ir.mail_server', inverse_name='epilot_outlook_address_id',
        context={'active_test': False})
    subscription_ids = fields.One2many(
        string="Change Notifications", comodel_name='epilot.outlook.subscription', inverse_name='address_id')
    push_reason = fields.Text(
        string="Why Polling", help="Why Odoo polls this mailbox instead of receiving change notifications.",
        compute='_compute_push_reason')
    sync_problem = fields.Text(
        string="Sync Problem",
        help="A folder whose live sync failed at its last attempt: Odoo retries by itself.",
        compute='_compute_sync_problem')
    paused_from_state = fields.Char(
        string="Sync Status Before Pause",
        help="Technical: where sync stood when the connection stopped, to resume there after a reconnect.",
        copy=False,
    )

    _email_connection_uniq = models.UniqueIndex(
        '(connection_id, lower(email))',
        "This email address is already configured on this Outlook connection.",
    )
    _backfill_days_range = models.Constraint(
        f'CHECK (backfill_days BETWEEN {BACKFILL_DAYS_MIN} AND {BACKFILL_DAYS_MAX})',
        "The backfill window must be between 1 and 3650 days.",
    )

    # === DEFAULT METHODS === #

    @api.model
    def _default_connection_id(self):
        """ Return the connection of the current company: there is at most one. """
        return self.env['epilot.outlook.connection'].search([('company_id', '=', self.env.company.id)], limit=1)

    # === COMPUTE METHODS === #

    @api.depends('folder_sync_ids.last_round_date', 'folder_sync_ids.outlook_count', 'folder_sync_ids.odoo_count',
                 'folder_sync_ids.gap_count')
    def _compute_sync_facts(self):
        for address in self:
            syncs = address.folder_sync_ids
            dates = [date for date in syncs.mapped('last_round_date') if date]
            address.last_sync_date = max(dates) if dates else False
            address.outlook_count = sum(syncs.mapped('outlook_count'))
            address.odoo_count = sum(syncs.mapped('odoo_count'))
            address.gap_count = sum(syncs.mapped('gap_count'))

    @api.depends('sync_state', 'folder_sync_ids.last_error', 'folder_sync_ids.folder')
    def _compute_sync_problem(self):
        # A live address whose delta fails (throttling, Graph down, an expired sync state) is not in error: it
        # retries. But it is not quite "Live" either, and the list and form say so.
        folders = dict(self.env['epilot.outlook.folder.sync']._fields['folder']._description_selection(self.env))
        for address in self:
            failing = address.folder_sync_ids.filtered('last_error') if address.sync_state in (
                'backfilling', 'live') else []
            address.sync_problem = '\n'.join(
                '%s: %s' % (folders[sync.folder], sync.last_error) for sync in failing) or False

    @api.depends('email', 'company_id')
    def _compute_odoo_mail_warning(self):
        for address in self:
            address.odoo_mail_warning = self._outlook_odoo_mail_warning(address.email, address.company_id)

    @api.model
    def _outlook_odoo_mail_warning(self, email, company):
        """ Words for an email settings editor adding ``email`` when Odoo sends its own mail from it (the
        company's e-mail, or the default From address): or ``False``. """
        email = email_normalize(email or '')
        if not email:
            return False
        company = company or self.env.company
        own = {email_normalize(company.email or ''), email_normalize(
            self.env['ir.mail_server'].with_company(company)._get_default_from_address() or '')}
        if email not in own:
            return False
        return self.env._(
            "Odoo sends its own e-mails from %(email)s: password resets, invitations, quotations and invoices, "
            "with their links and tokens. This mailbox sends only its inbox's conversations, so those e-mails will "
            "fail unless you turn on \"Send Odoo's Other Mail\"; and if you do, anyone who opens the mailbox in "
            "Outlook can read them (Odoo never shows them in the inbox). Better: give Odoo another sender "
            "address (the company's e-mail, or an outgoing mail server of its own).", email=email)

    @api.depends('sync_mode', 'subscription_ids.state', 'subscription_ids.last_error')
    def _compute_push_reason(self):
        for address in self:
            subscriptions = address.subscription_ids
            errors = subscriptions.filtered(lambda sub: sub.state in ('refused', 'removed', 'error') and sub.last_error)
            if address.sync_mode == 'polling' and errors:
                address.push_reason = errors[0].last_error
            elif address.sync_mode == 'polling' and subscriptions.filtered(lambda sub: sub.state == 'pending'):
                address.push_reason = self.env._(
                    "Odoo is subscribing to change notifications for this mailbox; it polls meanwhile.")
            else:
                address.push_reason = False

    # === CONSTRAINT METHODS === #

    @api.constrains('backfill_days')
    def _check_backfill_days(self):
        """ Check that the backfill window is within bounds.

        The SQL CHECK `_backfill_days_range` guards the table; this gives the user the bounds and the value
        before the database is reached on write.

        :return: None
        :raise ValidationError: If a window is out of bounds.
        """
        for address in self:
            if not BACKFILL_DAYS_MIN <= address.backfill_days <= BACKFILL_DAYS_MAX:
                raise ValidationError(self.env._(
                    "The backfill window of %(email)s is %(days)s days; it must be between %(min)s and "
                    "%(max)s days.",
                    email=address.email, days=address.backfill_days,
                    min=BACKFILL_DAYS_MIN, max=BACKFILL_DAYS_MAX,
                ))

    # === CRUD METHODS === #

    def unlink(self):
        """ Override of `base` to delete the addresses' Graph subscriptions in Graph first (best effort: a
        subscription Odoo cannot delete expires within 7 days, and its notifications are ignored). """
        if not self.env.context.get('outlook_subscriptions_deleted'):
            self.sudo().subscription_ids._outlook_delete_in_graph()
        return super().unlink()

    # === BUSINESS METHODS - PUSH === #

    def _outlook_push_healthy(self):
        """ Whether Graph notifies Odoo of this address's changes: every folder's subscription is active. """
        self.ensure_one()
        now = fields.Datetime.now()
        subscriptions = self.sudo().subscription_ids
        return self.sync_mode == 'webhook' and bool(subscriptions) and all(
            sub.state == 'active' and sub.expiration and sub.expiration > now for sub in subscriptions)

    def _outlook_update_push_mode(self):
        """ Push when every folder's subscription is active, delta polling otherwise. """
        for address in self:
            subscriptions = address.sudo().subscription_ids
            mode = 'webhook' if subscriptions and all(sub.state == 'active' for sub in subscriptions) else 'polling'
            if address.sync_mode != mode:
                address.sync_mode = mode

    def _outlook_subscribe(self):
        """ (Re)create the change-notification subscriptions of these addresses, one per folder, in the
        subscription cron (Graph calls Odoo's webhook back before it answers, so not in this request). """
        Subscription = self.env['epilot.outlook.subscription'].sudo()
        for address in self:
            existing = address.sudo().subscription_ids
            existing.write({'state': 'pending', 'retry_at': False, 'needs_reauthorization': False,
                            'last_error': False})
            Subscription.create([{'address_id': address.id, 'folder': folder}
                                 for folder in FOLDERS if folder not in existing.mapped('folder')])
        if self:
            Subscription._outlook_cron()._trigger()

    def _outlook_after_reconnect(self):
        """ The connection was connected again: resume sync where it stood, and subscribe again (the
        subscriptions lapsed or were paused by Microsoft while the connection could not renew them). """
        self._outlook_resume()
        self.filtered(lambda address: address.sync_state in ('backfilling', 'live'))._outlook_subscribe()

    def action_outlook_retry_push(self):
        """ Ask Graph again for change notifications on these addresses (after a refusal or a failure). """
        self.check_access('write')
        self.filtered(lambda address: address.sync_state in ('backfilling', 'live'))._outlook_subscribe()
        return {
            'type': 'ir.actions.client',
            'tag': 'display_notification',
            'params': {
                'type': 'info',
                'message': self.env._("Odoo asks Microsoft 365 for change notifications again; the address "
                                      "shows the answer in a moment."),
                'next': {'type': 'ir.actions.client', 'tag': 'soft_reload'},
            },
        }

    # === BUSINESS METHODS - PAUSE AND RESUME === #

    def _outlook_pause(self):
        """ Pause sync while the connection needs a reconnect, remembering where each address stood. """
        for address in self.filtered(lambda address: address.sync_state != 'paused'):
            address.write({'paused_from_state': address.sync_state, 'sync_state': 'paused'})

    def _outlook_resume(self):
        """ Resume the addresses paused by :meth:`_outlook_pause` where they stood: the backfill at its
        checkpoint, delta at its link. """
        resumed = self.filtered(lambda address: address.sync_state == 'paused')
        for address in resumed:
            address.write({'sync_state': address.paused_from_state or 'pending', 'paused_from_state': False})
        if resumed:
            # The sync's own records: only the sync writes them (the editor reconnecting has no access).
            resumed_sudo = resumed.sudo()
            resumed_sudo.folder_sync_ids.write({'retry_at': False})
            resumed_sudo.backfill_ids.filtered(lambda backfill: backfill.state == 'waiting').write(
                {'retry_at': False})
            resumed._outlook_wake_crons()

    # === ACTION METHODS === #

    def action_outlook_start_sync(self):
        """ Check access and start (or restart, after an error) the sync of these addresses. """
        for address in self:
            address._outlook_start_sync()
        return True

    def action_outlook_cancel_backfill(self):
        """ Stop the backfill where it is; live sync goes on. """
        self.check_access('write')
        for address in self.sudo():
            backfill = address.backfill_id
            if backfill and backfill.state in ('pending', 'running', 'waiting'):
                backfill.write({'state': 'cancelled', 'finished_date': fields.Datetime.now()})
            if address.sync_state == 'backfilling':
                address.sync_state = 'live'
        return True

    def action_outlook_reconcile(self):
        """ Compare Outlook's messages of the window with Odoo's now, and import what is missing. """
        self.ensure_one()
        self.check_access('write')
        address_sudo = self.sudo()
        imported = address_sudo._outlook_with_reader(
            lambda reader: sum(sync._outlook_reconcile(reader) for sync in address_sudo.folder_sync_ids),
            on_retry=address_sudo.folder_sync_ids, raise_errors=True)
        return {
            'type': 'ir.actions.client',
            'tag': 'display_notification',
            'params': {
                'type': 'warning' if self.gap_count else 'success',
                'message': self.env._(
                    "Reconciled: %(outlook)s messages in Outlook, %(odoo)s in Odoo, %(imported)s imported now, "
                    "%(gaps)s gaps.", outlook=self.outlook_count, odoo=self.odoo_count, imported=imported or 0,
                    gaps=self.gap_count),
                'next': {'type': 'ir.actions.act_window_close'},
            },
        }

    def action_outlook_sync_now(self):
        """ Run a delta round of every folder soon (the delta cron, now). """
        self.check_access('write')
        self.sudo().folder_sync_ids.write({'retry_at': False, 'last_round_date': False})
        self.env['epilot.outlook.folder.sync']._outlook_cron()._trigger()
        return True

    # === BUSINESS METHODS - START SYNC === #

    def _outlook_start_sync(self):
        """ Check that the service account can read the mailbox (one Graph request), link the shared inbox
        (an inbox already holding this address is re-linked; else one is created and named after the mailbox),
        then start the backfill and the live sync of Inbox and Sent Items.

        :raise UserError: With the reason in words (no access, no such mailbox, connection not connected).
        """
        self.ensure_one()
        self.check_access('write')
        connection = self.connection_id
        if connection.state != 'connected':
            raise UserError(self.env._(
                "The Outlook connection is not connected. Open Email Settings → Connections → Outlook and click "
                "Connect first, then add the mailbox."))
        try:
            probe = connection._outlook_call_graph(lambda client: MailboxReader(client, self.email).probe())
        except Forbidden as error:
            # The account Odoo signed in as, else the one it is set up for: the command is then ready to paste.
            account = email_normalize(connection._outlook_connected_account() or '') or connection.service_account
            raise TitledUserError(self.env._(
                "The service account cannot open %(mailbox)s (Microsoft answered: %(code)s). In Exchange, give "
                "the service account Full Access to the shared mailbox, for example in PowerShell:\n"
                "Add-MailboxPermission -Identity %(mailbox)s -User %(account)s -AccessRights FullAccess "
                "-InheritanceType All -AutoMapping $false\nChanges can take up to an hour to apply.",
                mailbox=self.email, code=error.code or error.status,
                account=account or self.env._("<service account>")),
                self.env._("Odoo may not open this mailbox")) from None
        except NotFound as error:
            raise TitledUserError(self.env._(
                "Microsoft 365 has no mailbox %(mailbox)s that Odoo can reach in this tenant (%(code)s): check the "
                "address. A mailbox that is inactive, soft-deleted or hosted on-premises cannot be synced.",
                mailbox=self.email, code=error.code or error.status), self.env._("No such mailbox")) from None
        except OutlookError as error:
            raise UserError(explain(self.env, error)) from None

        inbox = self.shared_inbox_id or self.env['epilot.shared.inbox'].with_context(active_test=False).search([
            ('email', '=', self.email), ('company_id', 'in', (self.company_id.id, False)),
        ], order='active desc, id', limit=1)
        display_name = probe.display_name or self.name or self.email.split('@')[0].replace('.', ' ').title()
        if not inbox:
            inbox = self.env['epilot.shared.inbox'].create({
                'name': display_name, 'email': self.email, 'company_id': self.company_id.id,
            })
        elif not inbox.active:
            inbox.active = True
        now = fields.Datetime.now()
        window_start = now - timedelta(days=self.backfill_days)
        self.write({
            'shared_inbox_id': inbox.id,
            'name': self.name or probe.display_name or False,
            'sync_state': 'backfilling',
            'sync_mode': 'polling',
            'window_start': window_start,
            'last_error': False,
        })
        # The sync state is technical: editors read it, only the sync itself writes it.
        address_sudo = self.sudo()
        address_sudo.folder_sync_ids.unlink()
        address_sudo.env['epilot.outlook.folder.sync'].create([
            {'address_id': self.id, 'folder': folder} for folder in FOLDERS])
        address_sudo.backfill_ids.filtered(lambda backfill: backfill.state in ('pending', 'running', 'waiting')).write(
            {'state': 'cancelled'})
        address_sudo.backfill_id = address_sudo.env['epilot.outlook.backfill'].create({
            'address_id': self.id, 'window_start': window_start, 'started_date': now})
        self._outlook_wake_crons()
        self._outlook_ensure_mail_server()
        self._outlook_subscribe()
        _logger.info("Microsoft Outlook: address %s: sync started (window of %s days)", self.id, self.backfill_days)

    def _outlook_wake_crons(self):
        self.env['epilot.outlook.backfill']._outlook_cron()._trigger()
        self.env['epilot.outlook.folder.sync']._outlook_cron()._trigger()

    # === BUSINESS METHODS - SYNC STEPS === #

    @api.model
    def _outlook_run_due_steps(self, records, due_ids, step):
        """ The loop of the sync crons, run by every lane of every Odoo server at once: take the due work in
        order (one query), then for each item lock it, skipping it when another worker holds it (``SKIP
        LOCKED``), check that it is still due (another lane may have just done it), run one step, and commit with
        progress; then look at the due work again; until nothing is due or the cron's time budget is spent.
        Nothing is queued but the rows themselves, and no item runs twice at once.

        Fair: a step is bounded (a backfill batch, a few delta pages), and each look at the due work gives every
        due item one step before any gets a second, so a storm in one mailbox (a round of many pages) goes on
        between the others' turns, never ahead of them. An item that waits has a ``retry_at`` and is not due.

        :param records: The model of the work items (sudo).
        :param callable due_ids: ``due_ids(only=None)``: the ids of the due items, in order (those of ``only``
            when given), in one query.
        :param callable step: Runs one step on a locked item; returns True when it made progress.
        :return: False when the cron's time budget is spent.
        :rtype: bool
        """
        cron = self.env['ir.cron']
        set_aside = set()   # held by another worker, no longer due, or stuck: not again in this run
        idle_steps = Counter()
        while queue := [record_id for record_id in due_ids() if record_id not in set_aside]:
            for position, record_id in enumerate(queue):
                record = _try_lock(records.browse(record_id))
                if not record or not due_ids(only=[record_id]):
                    set_aside.add(record_id)
                    continue
                if not step(record):
                    # Not done (more pages after the others' turn), or it stopped without a retry time: bounded,
                    # so that an item that stays due without moving cannot hold a run forever.
                    idle_steps[record_id] += 1
                    if idle_steps[record_id] >= MAX_IDLE_STEPS_PER_RUN:
                        set_aside.add(record_id)
                if not cron._commit_progress(1, remaining=len(queue) - position - 1):
                    return False
        return True

    def _outlook_backfill_covers(self, received_at):
        """ Whether mail received at ``received_at`` is the backfill's business, not delta's: it arrived
        before the backfill started, and the backfill has not finished. A running backfill imports it; a
        cancelled one was told not to, and delta must not import it behind the user's back. """
        self.ensure_one()
        backfill = self.backfill_id
        return bool(received_at and backfill and backfill.state != 'done'
                    and received_at < backfill.started_date - CLOCK_MARGIN)

    def _outlook_with_reader(self, operation, on_retry, raise_errors=False):
        """ Run ``operation(reader)`` with this address's :class:`MailboxReader`, as a sync step.

        A step never sleeps on throttling: ``Retry-After`` (or a backoff) goes to ``on_retry.retry_at`` and
        its cron is triggered for then. A lost mailbox right puts the address in error. A connection that
        needs a reconnect was already recorded on the connection (sync pauses there); the step just stops.
        A database conflict (another worker imported the same messages) retries soon: the unique key made
        sure nothing was imported twice.

        :param on_retry: The record(s) whose step this is (``epilot.outlook.backfill`` or folder syncs).
        :param bool raise_errors: Raise a ``UserError`` instead (for buttons).
        :return: What ``operation`` returned, or ``None`` when the step did not complete.
        """
        self.ensure_one()
        try:
            return self._outlook_in_savepoint(lambda: self.connection_id._outlook_call_graph(
                lambda client: operation(MailboxReader(client, self.email)), max_wait=SYNC_MAX_WAIT_S,
                slot_wait=SYNC_MAX_WAIT_S))
        except (Throttled, TransientError) as error:
            on_retry._outlook_schedule_retry(error, const.BACKOFF_MAX_S)
            if raise_errors:
                raise UserError(explain(self.env, error)) from None
        except (Forbidden, NotFound) as error:
            _logger.warning("Microsoft Outlook: address %s lost access to its mailbox (%s)", self.id, error.code)
            text = explain(self.env, error)
            self.write({'sync_state': 'error', 'last_error': text})
            on_retry.write({'last_error': text})
            if raise_errors:
                raise UserError(text) from None
        except (ConnectionUnusable, UserError) as error:
            if raise_errors:
                raise UserError(explain(self.env, error)) from None
            _logger.info("Microsoft Outlook: address %s: sync step stopped, the connection is not usable", self.id)
        except DB_CONFLICTS as error:
            # Which backstop serialized the two workers (a unique index, and which one, or a serialization
            # failure): the exactly-once guarantee rests on them, so the log says which held.
            _logger.info("Microsoft Outlook: address %s: another worker imported the same messages (%s%s); retrying",
                         self.id, type(error).__name__,
                         " on %s" % error.diag.constraint_name if error.diag.constraint_name else "")
            on_retry._outlook_schedule_retry(None, 1)
        except OutlookError as error:
            _logger.warning("Microsoft Outlook: address %s: sync step failed: %s", self.id, error)
            on_retry._outlook_schedule_retry(error, random.uniform(*const.TRANSIENT_BACKOFF_S))
            if raise_errors:
                raise UserError(explain(self.env, error)) from None
        return None

    def _outlook_in_savepoint(self, operation):
        """ Run ``operation()`` in a savepoint that a database error rolls back, so that after a conflict with
        another worker the transaction is still usable to schedule the retry. After any other error what the
        step wrote is kept: each page is written together with its checkpoint. """
        savepoint = self.env.cr.savepoint()
        try:
            result = operation()
        except psycopg2.Error:
            savepoint.close(rollback=True)
            raise
        except Exception:
            savepoint.close(rollback=False)
            raise
        savepoint.close(rollback=False)   # flushes: a conflict may only show now (and is then rolled back)
        return result

    # === BUSINESS METHODS - SENDING === #

    def _outlook_ensure_mail_server(self):
        """ Give each address its outgoing mail server: Odoo's mail queue sends every e-mail from the address
        through it, that is through Graph (see ``ir_mail_server.py``). An archived one is restored. """
        for address in self:
            server = address.sudo().mail_server_ids[:1]
            values = {
                'name': self.env._("Outlook: %(email)s", email=address.email),
                'from_filter': address.email,
                'smtp_authentication': 'epilot_outlook',
                'smtp_host': False,
                'smtp_encryption': 'none',
                'active': True,
            }
            if server:
                server.write(values)
            else:
                self.env['ir.mail_server'].sudo().create({**values, 'epilot_outlook_address_id': address.id})

    def _outlook_send_verdict(self, mail, conversations=None):
        """ Whether this address's Outlook server may send ``mail``: why not, in words, or ``False``; and
        whether it is Odoo's own mail (of no conversation of the address's inbox: its sent copy is never shown).

        The rule, checked where the e-mail leaves (the mail queue's Graph session), whatever screen, API or
        server field made it: the shared mailbox sends

        - the e-mails of its own inbox's conversations, asked for by a member of the inbox or an email settings
          editor (the ``mail.mail``'s creator: the author can be anyone's partner), or by Odoo itself (the
          superuser: a cron, a template it runs);
        - Odoo's other e-mails (of no conversation: quotations, invoices, password resets) only when an email
          settings editor turned on ``send_odoo_mail`` for this address.

        Always From the mailbox: the Graph request says so (``outlook_core.sending``), whatever From the e-mail
        had.

        :param mail: The ``mail.mail``, or an empty recordset (an e-mail handed to ``send_email`` without one).
        :param dict conversations: ``{id: epilot.shared.conversation}`` for a batch of mails, with their inbox
            (``search_fetch``, one query for the batch instead of one per mail): an id that is not in it is of no
            conversation that is there. ``None``: looked up here.
        :return: ``(refusal or False, odoo_own)``.
        :rtype: tuple
        """
        self.ensure_one()
        mail = mail.sudo()
        inbox = self.sudo().shared_inbox_id
        message = mail.mail_message_id
        if message.model == 'epilot.shared.conversation' and message.res_id:
            if conversations is None:
                conversations = self._outlook_mail_conversations(mail)
            conversation = conversations.get(message.res_id, self.env['epilot.shared.conversation'])
            if not inbox or conversation.inbox_id != inbox:
                return self.env._(
                    "%(address)s sends only the e-mails of the conversations of its shared inbox %(inbox)s; this "
                    "one is of another inbox's conversation. Nothing was sent.",
                    address=self.email, inbox=inbox.name or '-'), False
            requester = mail.create_uid
            if not inbox._outlook_may_send(requester):
                return self.env._(
                    "%(user)s is not a member of the shared inbox %(inbox)s, so cannot send from %(address)s. "
                    "Nothing was sent.", user=requester.name or '-', inbox=inbox.name, address=self.email), False
            return False, False
        if self.sudo().send_odoo_mail:
            return False, True
        return self.env._(
            "%(address)s is a shared mailbox: it sends only the e-mails of its inbox's conversations, and this one "
            "(%(subject)s) is Odoo's own mail. Nothing was sent. Send it from another address, or ask an email "
            "settings editor to turn on \"Send Odoo's Other Mail\" on the Outlook address.",
            address=self.email, subject=(message.subject or mail.subject or '-')), True

    @api.model
    def _outlook_mail_conversations(self, mails):
        """ The conversations ``mails`` are of, with their inbox, in one query (none for a deleted one), for
        :meth:`_outlook_send_verdict`.

        :rtype: dict
        :return: ``{id: epilot.shared.conversation}``.
        """
        ids = {mail.mail_message_id.res_id for mail in mails.sudo()
               if mail.mail_message_id.model == 'epilot.shared.conversation' and mail.mail_message_id.res_id}
        Conversation = self.env['epilot.shared.conversation'].sudo()
        found = Conversation.search_fetch([('id', 'in', list(ids))], ['inbox_id']) if ids else Conversation
        return {conversation.id: conversation for conversation in found}

    def _outlook_reply_parent(self, mail_message):
        """ The Outlook item an outgoing e-mail of a conversation answers: its parent's, when Outlook holds
        it, else the conversation's latest e-mail Outlook holds (this mailbox's first).

        :param mail_message: The ``mail.message`` being sent (may be empty).
        :return: An ``epilot.outlook.message`` (sync record), or an empty one for a new e-mail.
        """
        self.ensure_one()
        Sync = self.env['epilot.outlook.message'].sudo()
        if not mail_message or mail_message.model != 'epilot.shared.conversation' or not self.shared_inbox_id:
            return Sync
        # With what the choice and the sending read: one query per e-mail sent
        candidates = Sync.search_fetch([
            ('inbox_id', '=', self.shared_inbox_id.id), ('conversation_id', '=', mail_message.res_id),
            ('mail_message_id', '!=', False), ('mail_message_id', '!=', mail_message.id),
            ('removed_in_outlook', '=', False),
        ], ['mailbox_email', 'mail_message_id', 'graph_id', 'internet_message_id'], order='date desc, id desc',
            limit=50)
        own = candidates.filtered(lambda record: record.mailbox_email == self.email)
        for records in (own, candidates):
            parent = records.filtered(lambda record: record.mail_message_id == mail_message.parent_id)[:1]
            if parent or records:
                return parent or records[:1]
        return Sync

    def _outlook_record_sent(self, mail_message, draft, odoo_own=False):
        """ Tie the e-mail Graph sent to its ``mail.message``: the sent item's sync record (so that delta finds
        the copy in Sent Items known, and imports nothing), and the conversation's Outlook conversation. The copy
        of Odoo's own mail (``odoo_own``: of no conversation of the inbox) is recorded as known and hidden.

        :param mail_message: The ``mail.message`` sent (may be empty).
        :param outlook_core.sending.Draft draft: The sent item.
        :param bool odoo_own: Whether it is Odoo's own mail.
        """
        self.ensure_one()
        if not self.shared_inbox_id or draft.mailbox == 'me':
            return   # Send on Behalf: the copy is in the service account's Sent Items, which is not synced
        if odoo_own:
            Sync = self.env['epilot.outlook.message'].sudo()
            if not Sync._outlook_known(self.shared_inbox_id, [draft.graph_id]):
                Sync._outlook_insert_own_mail(self, [(
                    draft.graph_id, 'sentitems', draft.internet_message_id, fields.Datetime.now())])
            return
        if not mail_message or mail_message.model != 'epilot.shared.conversation':
            return
        conversation = self.env['epilot.shared.conversation'].sudo().browse(mail_message.res_id)
        inbox = self.shared_inbox_id
        # Archived conversations too: one merged into another keeps its Outlook conversation (routing to it).
        if draft.conversation_id and not conversation.graph_conversation_id and not conversation.with_context(
                active_test=False).search_count([
                ('inbox_id', '=', inbox.id), ('graph_conversation_id', '=', draft.conversation_id)]):
            conversation.graph_conversation_id = draft.conversation_id
        Sync = self.env['epilot.outlook.message'].sudo()
        # A draft this transaction just sent (``is_draft``: as it was before ``send``) is known to no import this
        # transaction can see: its copy reached Sent Items after this transaction's snapshot (one query less per
        # e-mail, issue 18). One an earlier attempt sent (Graph's status of the stored draft) may be.
        if not draft.is_draft and Sync._outlook_known(inbox, [draft.graph_id]):
            return
        now = fields.Datetime.now()
        Sync._outlook_insert([Sync._outlook_row(
            self, draft.graph_id, 'sentitems', conversation_id=conversation.id, mail_message_id=mail_message.id,
            internet_message_id=draft.internet_message_id or None, graph_conversation_id=draft.conversation_id or None,
            subject=mail_message.subject or None, date=mail_message.date or now, received_date=now, sent_date=now,
            is_read=True)])
        conversation._outlook_refresh_stats()


def _try_lock_many(records):
    """ Those of ``records`` no other worker holds, locked for this transaction in one statement (``SKIP LOCKED``),
    in their order; row by row (:func:`_try_lock`) when one of them changed since this transaction's snapshot. A
    step of the batched delta pass locks its 160 folders so: a savepoint and a ``SELECT`` for each took as long
    as the step's Graph answers on a busy server (bench_scale). """
    if not records:
        return records
    cr = records.env.cr
    try:
        with cr.savepoint(flush=False):
            cr.execute(SQL("SELECT id FROM %s WHERE id IN %s FOR NO KEY UPDATE SKIP LOCKED",
                           SQL.identifier(records._table), tuple(records.ids)), log_exceptions=False)
            locked = {row[0] for row in cr.fetchall()}
    except psycopg2.errors.SerializationFailure:
        return records.browse([record.id for record in records if _try_lock(record)])
    return records.browse([record_id for record_id in records.ids if record_id in locked])


def _try_lock(record):
    """ ``record`` locked for this transaction, or an empty recordset when another worker holds it, or changed it
    since this transaction's snapshot (REPEATABLE READ refuses to lock a row a concurrent transaction updated:
    that worker just ran its step). """
    cr = record.env.cr
    try:
        with cr.savepoint(flush=False):
            cr.execute(SQL("SELECT id FROM %s WHERE id = %s FOR NO KEY UPDATE SKIP LOCKED",
                           SQL.identifier(record._table), record.id), log_exceptions=False)
            return record if cr.fetchone() else record.browse()
    except psycopg2.errors.SerializationFailure:
        return record.browse()
