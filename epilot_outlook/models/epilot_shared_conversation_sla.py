from datetime import timedelta

from odoo import api, fields, models
from odoo.fields import Domain
from odoo.tools import SQL

from ..tools.business_hours import BusinessHours

# Conversations whose response times are recomputed per statement when an inbox's working hours or targets change.
SLA_RECOMPUTE_BATCH = 1000
# The stored response-time fields of a conversation, as :meth:`_outlook_sla_refresh` writes them.
SLA_FIELDS = ('first_received_date', 'first_response_date', 'first_response_hours', 'first_response_deadline',
              'closed_date', 'resolution_hours', 'resolution_deadline')


class EpilotSharedInbox(models.Model):
    """ Response-time targets per inbox (issue 19, item 6): the inbox's working hours and how many of them the
    team gives itself to answer a customer's first e-mail and to close the conversation. """
    _inherit = 'epilot.shared.inbox'

    resource_calendar_id = fields.Many2one(
        string="Working Hours",
        comodel_name='resource.calendar',
        default=lambda self: self.env.company.resource_calendar_id,
        domain="[('flexible_hours', '=', False), ('company_id', 'in', [company_id, False])]",
        help="The team's business hours (in the calendar's time zone, public holidays included): response times "
             "and deadlines count only these hours. Empty: the company's working hours.",
    )
    first_response_target_hours = fields.Float(
        string="First Response Target",
        tracking=True,
        help="Business hours within which the team answers a customer's first e-mail. Conversations still "
             "unanswered after it are overdue. 0: no target.",
    )
    resolution_target_hours = fields.Float(
        string="Resolution Target",
        tracking=True,
        help="Business hours within which a conversation is closed, counted from the customer's first e-mail. "
             "Conversations still open after it are overdue. 0: no target.",
    )

    _response_targets_positive = models.Constraint(
        'CHECK (first_response_target_hours >= 0 AND resolution_target_hours >= 0)',
        "A response-time target cannot be negative (0: no target).")

    def write(self, vals):
        result = super().write(vals)
        if {'resource_calendar_id', 'first_response_target_hours', 'resolution_target_hours', 'company_id'} & set(vals):
            # Times and deadlines of the inbox's conversations now count other hours: all of them, in batches.
            Conversation_sudo = self.env['epilot.shared.conversation'].sudo()
            ids = Conversation_sudo._search([('inbox_id', 'in', self.ids), ('first_received_date', '!=', False)])
            ids = list(ids)
            for start in range(0, len(ids), SLA_RECOMPUTE_BATCH):
                Conversation_sudo.browse(ids[start:start + SLA_RECOMPUTE_BATCH])._outlook_sla_refresh(force=True)
        return result

    def _outlook_business_hours(self):
        """ The working-hours calendar of the inbox: its own, else its company's, else the current company's
        (none at all: every hour counts). """
        self.ensure_one()
        return self.resource_calendar_id or self.company_id.resource_calendar_id \
            or self.env.company.resource_calendar_id


class EpilotSharedConversation(models.Model):
    """ Response times (issue 19, item 6): when the customer first wrote, when the team first answered, when the
    conversation was closed, the business hours each took, and the inbox's deadlines.

    - *First received*: the first e-mail received in the inbox (Inbox folder) that a person wrote: an automatic
      reply (out of office) or a non-delivery report (``kind``, models/epilot_outlook_message_bounce.py) is not
      the customer writing.
    - *First response*: the first e-mail the team sent after it, from Odoo or from Outlook (its copy in Sent
      Items, synced back: both are sync records of folder ``sentitems``), automatic replies left out; dates are
      whole seconds, so an answer sent within the second of the e-mail counts (a reply from Odoo has its post's
      date). Notes and
      Odoo's notifications send nothing and are no sync record; Odoo's own mail (a password reset) shows on no
      conversation.
    - *Closed*: when the status became *Closed*; mail that reopens it (or an agent) clears it.
    - Times are business hours of the inbox's working-hours calendar (:class:`tools.business_hours.BusinessHours`).

    These are plain stored fields written in batches where the sync writes the conversations' figures (the
    conversations a page creates: :meth:`_outlook_for_messages`; the others: :meth:`_outlook_refresh_stats`) and
    when the status changes, never one query per imported e-mail. *Overdue* changes with the clock alone, so it
    is not stored: it compares the stored deadlines with now when read, and searches as a domain on them.
    """
    _inherit = 'epilot.shared.conversation'

    first_received_date = fields.Datetime(
        string="First Received", readonly=True, copy=False, help="When the customer's first e-mail arrived.")
    first_response_date = fields.Datetime(
        string="First Response", readonly=True, copy=False,
        help="When the team's first e-mail after the customer's first one was sent (from Odoo or Outlook).")
    first_response_hours = fields.Float(
        string="First Response Time", readonly=True, copy=False, aggregator='avg',
        help="Business hours (the inbox's working hours) from the customer's first e-mail to the team's answer.")
    first_response_deadline = fields.Datetime(
        string="First Response Due", readonly=True, copy=False, index='btree_not_null',
        help="The customer's first e-mail plus the inbox's first response target, in business hours.")
    closed_date = fields.Datetime(
        string="Closed On", readonly=True, copy=False, help="When the conversation was closed (reopening clears it).")
    resolution_hours = fields.Float(
        string="Resolution Time", readonly=True, copy=False, aggregator='avg',
        help="Business hours from the customer's first e-mail to the closing of the conversation.")
    resolution_deadline = fields.Datetime(
        string="Resolution Due", readonly=True, copy=False, index='btree_not_null',
        help="The customer's first e-mail plus the inbox's resolution target, in business hours.")
    is_overdue = fields.Boolean(
        string="Overdue", compute='_compute_is_overdue', search='_search_is_overdue',
        help="Not closed, and past a deadline of its inbox: no answer yet after the first response target, or "
             "not closed after the resolution target.")

    # === COMPUTE METHODS === #

    @api.depends('state', 'first_response_date', 'first_response_deadline', 'resolution_deadline')
    def _compute_is_overdue(self):
        now = fields.Datetime.now()
        for conversation in self:
            conversation.is_overdue = conversation.state != 'closed' and bool(
                (not conversation.first_response_date and conversation.first_response_deadline
                 and conversation.first_response_deadline < now)
                or (conversation.resolution_deadline and conversation.resolution_deadline < now))

    def _search_is_overdue(self, operator, value):
        """ The overdue conversations, by their stored deadlines and now (the ORM negates it for "not overdue"). """
        if operator != 'in' or True not in value:
            return NotImplemented
        now = fields.Datetime.now()
        return Domain('state', '!=', 'closed') & (
            Domain([('first_response_date', '=', False), ('first_response_deadline', '<', now)])
            | Domain('resolution_deadline', '<', now))

    # === CRUD METHODS === #

    def write(self, vals):
        result = super().write(vals)
        if 'state' in vals:
            self._outlook_sla_refresh()   # closed now, or reopened
        return result

    # === BUSINESS METHODS - IMPORT === #

    @api.model
    def _outlook_stats_of_new(self, messages):
        """ Override: the first received and first response dates of a new conversation's ``messages``, as
        :meth:`_outlook_sla_refresh` finds them from the sync records. """
        return {**super()._outlook_stats_of_new(messages), **self._outlook_sla_dates(messages)}

    @api.model
    def _outlook_sla_dates(self, messages):
        """ The first received e-mail's date and the first sent after it.

        :param list messages: :class:`outlook_core.mapping.OutlookItem` items.
        :rtype: dict
        """
        first_in = min((message.date for message in messages
                        if message.date and message.folder == 'inbox' and not message.kind), default=False)
        first_out = min((message.date for message in messages if first_in and message.date and not message.kind
                         and message.folder == 'sentitems' and message.date >= first_in), default=False)
        return {'first_received_date': first_in, 'first_response_date': first_out}

    @api.model
    def _outlook_for_messages(self, inbox, mailbox, messages, partners):
        """ Override: the conversations a page creates get their response times and deadlines (one ``UPDATE``
        for the page; their dates came with their creation, :meth:`_outlook_stats_of_new`). """
        result, created = super()._outlook_for_messages(inbox, mailbox, messages, partners)
        if created:
            by_conversation = {}
            for message in messages:
                by_conversation.setdefault(result[message.graph_id].id, []).append(message)
            rows = []
            for conversation in created:
                dates = self._outlook_sla_dates(by_conversation.get(conversation.id, []))
                if dates['first_received_date']:
                    rows.append({
                        'id': conversation.id, 'inbox_id': inbox.id, 'state': 'new', 'closed_date': None,
                        'first_in': dates['first_received_date'], 'first_out': dates['first_response_date'],
                        **dict.fromkeys(SLA_FIELDS),
                        'first_received_date': dates['first_received_date'],
                        'first_response_date': dates['first_response_date'],
                    })
            created._outlook_sla_write(rows, force=True)
        return result, created

    def _outlook_refresh_stats(self):
        """ Override: the response times follow the figures (:meth:`_outlook_sla_refresh`). """
        changes = super()._outlook_refresh_stats()
        self._outlook_sla_refresh()
        return changes

    # === BUSINESS METHODS - RESPONSE TIMES === #

    def _outlook_sla_refresh(self, force=False):
        """ Recompute the response times of these conversations from their sync records and status: one query
        reads the dates, and the conversations whose dates or status moved (or all with ``force``: their inbox's
        hours or targets changed) get new times and deadlines in one ``UPDATE``.

        :param bool force: Recompute times and deadlines even where the dates did not move.
        """
        if not self:
            return
        Message = self.env['epilot.outlook.message']
        Message.flush_model(['conversation_id', 'mail_message_id', 'date', 'folder', 'kind'])
        self.flush_recordset(['state', 'inbox_id', *SLA_FIELDS])
        rows = self.env.execute_query_dict(SQL(
            """SELECT conversation.id, conversation.inbox_id, conversation.state, %(columns)s,
                      received.first_in,
                      (SELECT MIN(sent.date) FROM %(messages)s AS sent
                        WHERE sent.conversation_id = conversation.id AND sent.mail_message_id IS NOT NULL
                          AND sent.folder = 'sentitems' AND sent.kind IS NULL
                          AND sent.date >= received.first_in) AS first_out
                 FROM %(table)s AS conversation
            LEFT JOIN LATERAL (SELECT MIN(message.date) AS first_in FROM %(messages)s AS message
                                WHERE message.conversation_id = conversation.id
                                  AND message.mail_message_id IS NOT NULL AND message.folder = 'inbox'
                                  AND message.kind IS NULL) AS received
                   ON TRUE
                WHERE conversation.id IN %(ids)s""",
            columns=SQL(', ').join(SQL('conversation.%s', SQL.identifier(name)) for name in SLA_FIELDS),
            table=SQL.identifier(self._table), messages=SQL.identifier(Message._table), ids=tuple(self.ids),
        ))
        self._outlook_sla_write(rows, force=force)

    @api.model
    def _outlook_sla_fill_missing(self):
        """ Give the conversations imported before response times existed theirs (run at each install or upgrade:
        those without a first received date, in batches; conversations the team started stay without). """
        Conversation_sudo = self.sudo()
        ids = list(Conversation_sudo._search([('first_received_date', '=', False)]))
        for start in range(0, len(ids), SLA_RECOMPUTE_BATCH):
            Conversation_sudo.browse(ids[start:start + SLA_RECOMPUTE_BATCH])._outlook_sla_refresh()

    def _outlook_sla_write(self, rows, force=False):
        """ Compute and store the response times of ``rows``.

        :param list rows: One dict per conversation: ``id``, ``inbox_id``, ``state``, the stored ``SLA_FIELDS``,
            and the dates found: ``first_in`` (first received), ``first_out`` (first sent after it).
        :param bool force: Recompute the business hours and deadlines even where no date or status moved.
        """
        now = fields.Datetime.now()   # when the status changed: now
        inboxes = {inbox.id: inbox for inbox in self.env['epilot.shared.inbox'].sudo().browse(
            list({row['inbox_id'] for row in rows}))}
        clocks = {}   # one per calendar for the whole batch: a few queries per 4 weeks of mail, not per e-mail
        updates = []
        for row in rows:
            row = {name: value if value is not False else None for name, value in row.items()}   # SQL's NULL
            closed = row['closed_date'] or now if row['state'] == 'closed' else None
            moved = (row['first_in'], row['first_out'], closed) != (
                row['first_received_date'], row['first_response_date'], row['closed_date'])
            if not (moved or force):
                continue
            values = dict.fromkeys(SLA_FIELDS)
            values.update(first_received_date=row['first_in'], first_response_date=row['first_out'],
                          closed_date=closed)
            if first_in := row['first_in']:
                inbox = inboxes[row['inbox_id']]
                calendar = inbox._outlook_business_hours()
                clock = clocks.setdefault(calendar.id, BusinessHours(calendar))
                if row['first_out']:
                    values['first_response_hours'] = round(clock.hours_between(first_in, row['first_out']), 4)
                if closed:
                    values['resolution_hours'] = round(clock.hours_between(first_in, closed), 4)
                for target, deadline in (('first_response_target_hours', 'first_response_deadline'),
                                         ('resolution_target_hours', 'resolution_deadline')):
                    if hours := inbox[target]:
                        due = clock.add_hours(first_in, hours)
                        values[deadline] = due and due.replace(microsecond=0) + timedelta(
                            seconds=1 if due.microsecond else 0)
            if force or any(values[name] != row[name] for name in SLA_FIELDS):
                updates.append((row['id'], *(values[name] for name in SLA_FIELDS)))
        if not updates:
            return
        types = {'first_response_hours': 'float8', 'resolution_hours': 'float8'}
        self.env.cr.execute(SQL(
            """UPDATE %(table)s AS conversation SET %(assignments)s
                 FROM (VALUES %(values)s) AS sla (id, %(names)s)
                WHERE conversation.id = sla.id""",
            table=SQL.identifier(self._table),
            assignments=SQL(', ').join(
                SQL('%s = sla.%s::%s', SQL.identifier(name), SQL.identifier(name), SQL(types.get(name, 'timestamp')))
                for name in SLA_FIELDS),
            values=SQL(', ').join(SQL('(%s)', SQL(', ').join(SQL('%s', value) for value in update))
                                  for update in updates),
            names=SQL(', ').join(SQL.identifier(name) for name in SLA_FIELDS),
        ))
        self.browse([update[0] for update in updates]).invalidate_recordset(list(SLA_FIELDS))
