import time
from contextlib import contextmanager

from odoo import api, fields, models
from odoo.fields import Command
from odoo.tools import SQL

# The bus notification that tells the web client some conversations changed (issue 19, "Live"). Its payload names
# them and their inboxes, nothing of their content: the client reads what changed through the ORM, with the
# user's rights, like any reload.
LIVE_NOTIFICATION = 'epilot_outlook/conversations'
# The same for the Outlook setup of an address (backfill progress, push), to its editors.
ADDRESS_NOTIFICATION = 'epilot_outlook/addresses'
# Where a transaction keeps what it changed until its commit (``cr.precommit.data``).
_LIVE_KEY = 'epilot_outlook.live.conversations'
_ADDRESS_KEY = 'epilot_outlook.live.addresses'
# While a loop commits after each item (Odoo's mail queue: each e-mail), the conversations it touches are told to the
# screens at most this often (seconds), not at each commit: each notification wakes the websockets through a new
# connection to PostgreSQL's ``postgres`` database (Odoo's bus does not pool those), 2 ms per e-mail sent
# (bench/bench_send.py), while a screen a second late looks live all the same.
LIVE_COALESCE_S = 1.0
# The cursor attribute that holds a coalescing loop's ids (:meth:`EpilotSharedConversation._outlook_live_coalesced`).
_COALESCED_ATTR = '_epilot_outlook_live_coalesced'


def _mark_for_commit(records, key):
    """ Add ``records`` to what this transaction changed under ``key``; the first time, register their model's
    ``_outlook_live_send`` to run before the commit (once, whatever the number of changes). """
    if not records:
        return
    data = records.env.cr.precommit.data
    if key not in data:
        data[key] = set()
        records.env.cr.precommit.add(records.browse().sudo()._outlook_live_send)
    data[key].update(records.ids)


class EpilotSharedConversation(models.Model):
    """ Live screens: every change of a conversation reaches the screens of those who may read it through Odoo's
    bus, once per transaction, when it commits.

    A change only marks the conversation (:meth:`_outlook_live_touch`); a pre-commit hook then sends one bus
    notification to each member of the touched conversations' inboxes and to each email settings editor of
    their company, naming the conversations that user may read. An import batch (a backfill step, a delta
    turn: one transaction each) therefore sends one notification per person, however many e-mails it held.
    Recipients are decided at commit, so someone who just left the inbox hears nothing more; the notification
    goes to each user's own bus channel, which only that user's sessions subscribe to.
    """
    _inherit = 'epilot.shared.conversation'

    # === LIVE: MARKING AND SENDING === #

    def _outlook_live_touch(self):
        """ Tell the screens, at this transaction's commit, that these conversations changed. """
        _mark_for_commit(self, _LIVE_KEY)

    @api.model
    def _outlook_live_send(self):
        """ Pre-commit hook: one bus notification per recipient for everything the transaction touched.

        Runs before the commit, so a notification and the data it announces commit together: ``bus.bus`` rows
        are written by the bus's own pre-commit hook and the websockets are woken after the commit.
        """
        ids = self.env.cr.precommit.data.pop(_LIVE_KEY, set())
        coalesced = getattr(self.env.cr, _COALESCED_ATTR, None)
        if coalesced is not None:   # see _outlook_live_coalesced
            coalesced['ids'].update(ids)
            if time.monotonic() - coalesced['since'] < LIVE_COALESCE_S:
                return
            ids, coalesced['ids'], coalesced['since'] = coalesced['ids'], set(), time.monotonic()
        recipients = self.env['epilot.shared.inbox']._outlook_live_recipients(ids)
        for partner, (inbox_ids, conversation_ids) in recipients.items():
            partner._bus_send(LIVE_NOTIFICATION, {'inbox_ids': inbox_ids, 'conversation_ids': conversation_ids})

    @api.model
    @contextmanager
    def _outlook_live_coalesced(self):
        """ Within this block, a loop that commits after each item (the mail queue sending e-mails one by one)
        tells the screens what its commits touched at most every :data:`LIVE_COALESCE_S`, each time with its
        commit; what is left at the end (or after an error) is told in a transaction of its own. """
        cr = self.env.cr
        if getattr(cr, _COALESCED_ATTR, None) is not None:   # an outer block already coalesces
            yield
            return
        setattr(cr, _COALESCED_ATTR, {'ids': set(), 'since': time.monotonic()})
        try:
            yield
        finally:
            left = getattr(cr, _COALESCED_ATTR)['ids']   # what is not committed yet goes with its commit
            delattr(cr, _COALESCED_ATTR)
            if left:
                with self.env.registry.cursor() as own_cr:
                    _mark_for_commit(self.with_env(self.env(cr=own_cr)).sudo().browse(sorted(left)), _LIVE_KEY)

    # === LIVE: WHAT TOUCHES A CONVERSATION === #

    def write(self, vals):
        result = super().write(vals)
        self._outlook_live_touch()
        return result

    def _message_post_after_hook(self, message, msg_values):
        """ Override of `mail`: a reply or a note is news for the lists (its last date) and the open forms. """
        self._outlook_live_touch()
        return super()._message_post_after_hook(message, msg_values)

    @api.model
    def _outlook_for_messages(self, inbox, mailbox, messages, partners):
        """ Override: the conversations of an imported page are news (the new ones are not refreshed after). """
        result, created = super()._outlook_for_messages(inbox, mailbox, messages, partners)
        created._outlook_live_touch()
        return result, created

    def _outlook_refresh_stats(self):
        """ Override: the figures changed (the screens are told), and every change of status the mail made is
        in the chatter, as an agent's change is, whoever made it: a reply sent (*Waiting*), the customer's
        answer (*Open* again). """
        changes = super()._outlook_refresh_stats()
        if changes:
            self._outlook_track_states(changes)
        self._outlook_live_touch()
        return changes

    def _outlook_track_states(self, changes):
        """ Log status changes in the conversations' chatters as Odoo's tracking does (an internal note with a
        tracking value, by the current user: OdooBot for the sync's crons), in one batched create.

        :param dict changes: ``{conversation id: (old status, new status)}``.
        """
        col_info = self.fields_get(['state'], attributes=('string', 'type', 'selection'))['state']
        Tracking = self.env['mail.tracking.value']
        author = self.env.user.partner_id
        email_from = author.email_formatted or False
        note = self.env['ir.model.data']._xmlid_to_res_id('mail.mt_note')
        # The reply-to of Odoo's tracking notes (``mail.thread._message_log_batch``): a note sends nothing, so no
        # alias is looked up for it (one query per e-mail the mail queue sends, issue 18).
        reply_to = self.env['mail.thread']._notify_get_reply_to(default=email_from, author_id=author.id)[False]
        self.env['mail.message'].sudo().create([{
            'model': self._name,
            'res_id': conversation.id,
            'message_type': 'notification',
            'subtype_id': note,
            'is_internal': True,
            'author_id': author.id,
            'email_from': email_from,
            'reply_to': reply_to,
            'body': '',
            'tracking_value_ids': [Command.create(Tracking._create_tracking_values(
                changes[conversation.id][0], changes[conversation.id][1], 'state', col_info, conversation))],
        } for conversation in self.browse(sorted(changes))])


class EpilotSharedInbox(models.Model):
    _inherit = 'epilot.shared.inbox'

    @api.model
    def _outlook_live_recipients(self, conversation_ids):
        """ Who hears of changes in these conversations: the members of their inboxes and the email settings
        editors of the inboxes' companies (those who may read them), active internal users only; and which of
        them each may read. Conversations no longer there (one created then rolled back to a savepoint) are left
        out; archived ones are in.

        One query, whatever the number of conversations, inboxes and users: it runs at every commit that touched
        a conversation (each e-mail the mail queue sends is one), where finding the conversations and reading
        the group, the members and the users' companies through the ORM took eleven (issue 18,
        bench/bench_send.py). The editors are the users of the group or of a group implying it, as
        ``res.groups.all_user_ids`` says.

        :param conversation_ids: ``epilot.shared.conversation`` ids (any iterable).
        :return: ``{res.partner of the user (their bus channel): (sorted inbox ids, sorted conversation ids)}``.
        :rtype: dict
        """
        if not conversation_ids:
            return {}
        Conversation = self.env['epilot.shared.conversation']
        editor_group = self.env['res.groups'].browse(
            self.env['ir.model.data']._xmlid_to_res_id('epilot_outlook.group_email_setting_edit'))
        editor_groups = tuple(editor_group.all_implied_by_ids.ids)   # Odoo's cached group definitions: no query
        Conversation.flush_model(['inbox_id'])
        self.flush_model(['member_user_ids', 'company_id'])
        self.env['res.users'].flush_model(['active', 'share', 'partner_id', 'group_ids', 'company_ids'])
        rows = self.env.execute_query(SQL(
            """WITH touched AS (SELECT inbox_id, ARRAY_AGG(id ORDER BY id) AS ids FROM %(conversations)s
                                 WHERE id IN %(ids)s AND inbox_id IS NOT NULL GROUP BY inbox_id)
               SELECT users.partner_id, inbox.id, touched.ids
                 FROM touched
                 JOIN %(inboxes)s AS inbox ON inbox.id = touched.inbox_id
                 JOIN %(users)s AS users ON users.active AND NOT users.share AND (
                      EXISTS (SELECT FROM %(members)s AS member
                               WHERE member.inbox_id = inbox.id AND member.user_id = users.id)
                      OR (EXISTS (SELECT FROM res_groups_users_rel AS user_group
                                   WHERE user_group.uid = users.id AND user_group.gid IN %(editor_groups)s)
                          AND EXISTS (SELECT FROM res_company_users_rel AS user_company
                                       WHERE user_company.user_id = users.id
                                         AND user_company.cid = inbox.company_id)))
             ORDER BY users.id, inbox.id""",
            conversations=SQL.identifier(Conversation._table), inboxes=SQL.identifier(self._table),
            users=SQL.identifier(self.env['res.users']._table),
            members=SQL.identifier(self._fields['member_user_ids'].relation),
            editor_groups=editor_groups, ids=tuple(conversation_ids),
        ))
        recipients = {}
        for partner_id, inbox_id, ids in rows:
            inbox_ids, ids_read = recipients.setdefault(self.env['res.partner'].browse(partner_id), ([], []))
            inbox_ids.append(inbox_id)
            ids_read.extend(ids)
        return {partner: (inbox_ids, sorted(ids)) for partner, (inbox_ids, ids) in recipients.items()}


class EpilotOutlookEmailAddress(models.Model):
    """ Live screens for the Outlook setup: an address's form follows its backfill and push as they progress. """
    _inherit = 'epilot.outlook.email.address'

    push_status = fields.Selection(
        string="Push Status",
        selection=[
            ('off', "Off"),
            ('setting_up', "Setting Up"),
            ('active', "Active"),
            ('failed', "Failed"),
        ],
        compute='_compute_push_status',
        help="Setting Up: Odoo is creating the change-notification subscriptions (the address polls meanwhile). "
             "Failed: Microsoft refused or removed them, or their creation failed; Retry Push asks again.",
    )

    @api.depends('sync_state', 'sync_mode', 'subscription_ids.state')
    def _compute_push_status(self):
        """ What push is doing, as the subscriptions say: a subscription still to create is being set up (the
        subscription cron creates it within moments), not a failure to retry. """
        for address in self:
            states = set(address.sudo().subscription_ids.mapped('state'))
            if address.sync_state not in ('backfilling', 'live'):
                address.push_status = 'off'
            elif states & {'refused', 'removed', 'error'}:
                address.push_status = 'failed'
            elif not states or 'pending' in states:
                # Without any subscription yet, the cron subscribes the address at its next run.
                address.push_status = 'setting_up'
            else:
                address.push_status = 'active' if address.sync_mode == 'webhook' else 'setting_up'

    def _outlook_live_touch(self):
        """ Tell the editors' screens, at this transaction's commit, that these addresses changed. """
        _mark_for_commit(self, _ADDRESS_KEY)

    @api.model
    def _outlook_live_send(self):
        """ Pre-commit hook: one bus notification per email settings editor of the addresses' companies. """
        ids = self.env.cr.precommit.data.pop(_ADDRESS_KEY, set())
        addresses = self.sudo().browse(sorted(ids)).exists()
        if not addresses:
            return
        editors = self.env.ref('epilot_outlook.group_email_setting_edit').sudo().all_user_ids.filtered(
            lambda user: user.active and not user.share)
        for user in editors:
            visible = addresses.filtered(lambda address, user=user: address.company_id in user.company_ids)
            if visible:
                user._bus_send(ADDRESS_NOTIFICATION, {'address_ids': visible.ids})

    def write(self, vals):
        result = super().write(vals)
        self._outlook_live_touch()
        return result


class EpilotOutlookBackfill(models.Model):
    _inherit = 'epilot.outlook.backfill'

    def write(self, vals):
        result = super().write(vals)
        self.address_id._outlook_live_touch()
        return result


class EpilotOutlookSubscription(models.Model):
    _inherit = 'epilot.outlook.subscription'

    @api.model_create_multi
    def create(self, vals_list):
        records = super().create(vals_list)
        records.address_id._outlook_live_touch()
        return records

    def write(self, vals):
        result = super().write(vals)
        self.address_id._outlook_live_touch()
        return result
