from odoo import api, fields, models
from odoo.exceptions import AccessError
from odoo.fields import Domain
from odoo.tools import SQL, email_normalize, formataddr

from ..tools import bulk

# What agents (not email settings editors) may write on a conversation: its work fields. The rest (its inbox, its
# company, the Outlook facts and figures the import keeps) is the team's record, for editors only.
AGENT_WRITABLE_FIELDS = frozenset({
    'user_id', 'state', 'partner_id', 'name',
    # what Odoo's chatter and activities write on the document itself
    'message_main_attachment_id', 'activity_ids', 'message_follower_ids',
})


class EpilotSharedConversation(models.Model):
    """ One conversation of a shared inbox: the e-mails Outlook groups under one ``conversationId``.

    Its chatter holds the e-mails (``mail.message`` of type ``email``), each imported once and tied to its
    Outlook item by an ``epilot.outlook.message`` sync record. Who may read it follows the inbox: agents see
    the conversations of the inboxes they are a member of, and Odoo's message access follows the document,
    so the same rule covers the e-mails and their attachments.
    """
    _name = 'epilot.shared.conversation'
    _description = "Shared Inbox Conversation"
    _inherit = ['mail.thread']
    _order = 'last_message_date desc, id desc'
    _mail_post_access = 'read'   # Agents answer conversations they can read; writing is for assignment.

    name = fields.Char(string="Subject", required=True, default="(no subject)")
    inbox_id = fields.Many2one(
        string="Shared Inbox",
        comodel_name='epilot.shared.inbox',
        required=True,
        ondelete='cascade',
        index=True,
    )
    # The inbox's company by construction, so there is nothing to check (a company check per created
    # conversation was about 5 % of the import's time).
    company_id = fields.Many2one(related='inbox_id.company_id', store=True, index=True, precompute=True)
    graph_conversation_id = fields.Char(
        string="Outlook Conversation",
        help="Technical: Outlook's conversationId, which groups the e-mails of this conversation.",
        readonly=True,
        copy=False,
    )
    thread_key = fields.Char(
        string="Thread Key",
        help="Technical: the subject and correspondent that group e-mails Outlook gave no conversationId.",
        readonly=True,
        copy=False,
    )
    partner_id = fields.Many2one(string="Correspondent", comodel_name='res.partner', index='btree_not_null')
    correspondent_email = fields.Char(string="Correspondent Email", index='trigram')
    # The name the correspondent gave in their e-mail: who the customer is, also without a contact (issue 19).
    correspondent_name = fields.Char(string="Correspondent Name", readonly=True)
    user_id = fields.Many2one(
        string="Assigned To",
        comodel_name='res.users',
        domain=[('share', '=', False)],
        index='btree_not_null',
        tracking=True,
    )
    state = fields.Selection(
        string="Status",
        selection=[
            ('new', "New"),
            ('open', "Open"),
            ('waiting', "Waiting"),
            ('closed', "Closed"),
        ],
        required=True,
        default='new',
        tracking=True,
        group_expand=True,   # the kanban shows every status as a column
    )
    first_message_date = fields.Datetime(string="First Message", readonly=True)
    last_message_date = fields.Datetime(string="Last Message", readonly=True, index=True)
    email_count = fields.Integer(string="E-mails", readonly=True, default=0)
    # Read state is the shared mailbox's, as in Outlook: one agent reading a conversation reads it for the team.
    unread_count = fields.Integer(
        string="Unread", readonly=True, default=0,
        help="Received e-mails nobody has read yet, in Odoo or in Outlook.")
    is_unread = fields.Boolean(string="Is Unread", readonly=True, default=False, index=True)
    last_inbound_date = fields.Datetime(string="Last Received", readonly=True)
    last_outbound_date = fields.Datetime(string="Last Sent", readonly=True)
    body_search = fields.Char(
        string="E-mail Text", compute='_compute_body_search', search='_search_body_search',
        help="Technical: searches the bodies of the conversation's e-mails.")
    outlook_message_ids = fields.One2many(
        string="Outlook Messages",
        comodel_name='epilot.outlook.message',
        inverse_name='conversation_id',
        readonly=True,
    )

    _graph_conversation_uniq = models.UniqueIndex(
        '(inbox_id, graph_conversation_id) WHERE graph_conversation_id IS NOT NULL',
        "An Outlook conversation appears once per shared inbox.",
    )
    _thread_key_uniq = models.UniqueIndex(
        '(inbox_id, thread_key) WHERE graph_conversation_id IS NULL AND thread_key IS NOT NULL',
        "A subject and correspondent without an Outlook conversation appear once per shared inbox.",
    )

    def init(self):
        """ A trigram index on the bodies of the conversations' e-mails only, for the body search. """
        super().init()
        if self.env.registry.has_trigram:
            self.env.cr.execute(SQL(
                "CREATE INDEX IF NOT EXISTS epilot_shared_conversation_body_trgm_idx ON mail_message "
                "USING gin (body gin_trgm_ops) WHERE model = %s", self._name))

    # === COMPUTE METHODS === #

    def _compute_body_search(self):
        self.body_search = False

    def _search_body_search(self, operator, value):
        """ The conversations with an e-mail whose body contains ``value``: one query on ``mail_message``, served
        by the partial trigram index of :meth:`init` (bench/bench_inbox.py measures it). Which of them the user
        may see is the outer search's business (record rules). """
        if operator != 'ilike' or not isinstance(value, str):
            return NotImplemented   # the ORM turns 'not ilike' into the negation of this one
        pattern = '%%%s%%' % value.replace('\\', '\\\\').replace('%', '\\%').replace('_', '\\_')
        # Run apart, in the one shape the index serves: inside the list's query (its order, limit and record
        # rules) PostgreSQL may prefer walking the conversations and scanning every body (bench: 2 ms vs 0.6 s).
        rows = self.env.execute_query(SQL(
            "SELECT DISTINCT res_id FROM mail_message WHERE model = %s AND body ILIKE %s", self._name, pattern))
        return [('id', 'in', [res_id for (res_id,) in rows])]

    # === CRUD METHODS === #

    def _mail_get_operation_for_mail_message_operation(self, message_operation):
        """ Override of `mail`: deleting a conversation's e-mails takes the right to delete the conversation
        (email settings editors; retention and erasure), not the right to write it that agents have for
        assigning: the synced mail is the team's record of what was said. """
        if message_operation == 'unlink':
            return dict.fromkeys(self, 'unlink')
        return super()._mail_get_operation_for_mail_message_operation(message_operation)

    def write(self, vals):
        self._outlook_check_write(vals)
        # Taking a new conversation opens it.
        if vals.get('user_id') and 'state' not in vals:
            new = self.filtered(lambda conversation: conversation.state == 'new')
            if new:
                super(EpilotSharedConversation, new).write({'state': 'open'})
        return super().write(vals)

    @api.model
    def _outlook_agent_writable_fields(self):
        """ The fields agents may write: ``AGENT_WRITABLE_FIELDS``, and the links to other apps' records. """
        return AGENT_WRITABLE_FIELDS | self._outlook_link_fields()

    @api.model
    def _outlook_link_fields(self):
        """ The links the bridges to other apps add: a many2one to a record conversations can be about, whose
        model names it in ``_epilot_conversation_link`` (``epilot.conversation.linked.mixin``). """
        return {name for name, field in self._fields.items() if field.type == 'many2one'
                and getattr(self.env[field.comodel_name], '_epilot_conversation_link', None) == name}

    def _outlook_check_write(self, vals):
        """ Agents write a conversation's work fields only (``AGENT_WRITABLE_FIELDS``): moving it to another
        inbox, or rewriting what sync keeps, is for email settings editors. An assignee must be able to read it.

        :raise AccessError: Otherwise.
        """
        if self.env.su:
            return
        editor = self.env.user.has_group('epilot_outlook.group_email_setting_edit')
        if not editor and (refused := sorted(set(vals) - self._outlook_agent_writable_fields())):
            raise AccessError(self.env._(
                "Only email settings editors can change %(fields)s of a shared inbox's conversation.",
                fields=', '.join(self._fields[name].get_description(self.env)['string'] if name in self._fields
                                 else name for name in refused)))
        # A link names a record the user may read (a lead, a task...): the conversation would show its name.
        for name in self._outlook_link_fields() & {name for name, value in vals.items() if value}:
            self.env[self._fields[name].comodel_name].browse(vals[name]).check_access('read')
        if vals.get('user_id'):
            user = self.env['res.users'].sudo().browse(vals['user_id'])
            for conversation in self:
                if not conversation.inbox_id._outlook_may_send(user):
                    raise AccessError(self.env._(
                        "%(user)s is not a member of the shared inbox %(inbox)s: assign the conversation to one of "
                        "its members.", user=user.name, inbox=conversation.inbox_id.sudo().name))

    # === ACTION METHODS === #

    def action_outlook_mark_read(self):
        """ Mark the conversations read, in Odoo and in Outlook (for the whole team, as in the mailbox).

        Outlook is told later, by a cron woken now (``PATCH isRead`` in batches): opening a conversation never
        waits for Graph, and a Graph outage only delays the flag.
        """
        self.check_access('read')
        records_sudo = self.env['epilot.outlook.message'].sudo().search([
            ('conversation_id', 'in', self.ids), ('folder', '=', 'inbox'), ('is_read', '=', False),
            ('mail_message_id', '!=', False),
        ])
        records_sudo._outlook_set_read(True)
        return True

    def action_outlook_assign_to_me(self):
        """ Take the conversations: assigned to the current user (a new one opens). """
        self.write({'user_id': self.env.uid})
        return True

    def action_outlook_mark_unread(self):
        """ Mark the last received e-mail of each conversation unread, in Odoo and in Outlook. """
        self.check_access('read')
        records_sudo = self.env['epilot.outlook.message'].sudo()
        for conversation in self:
            records_sudo |= conversation._outlook_last_received()
        records_sudo._outlook_set_read(False)
        return True

    def _outlook_last_received(self):
        """ The sync record (sudo) of the last e-mail this conversation received that it shows, or none: the
        caller has checked the user's access. """
        self.ensure_one()
        return self.env['epilot.outlook.message'].sudo().search([
            ('conversation_id', '=', self.id), ('folder', '=', 'inbox'), ('mail_message_id', '!=', False),
        ], order='date desc, id desc', limit=1)

    # === MAIL THREAD: SENDING AS THE SHARED MAILBOX === #

    def message_post(self, **kwargs):
        """ Override of `mail`: whatever leaves a conversation by e-mail (a message to the correspondents, and
        any post that names recipients, a note's or a notification's included) comes from the shared mailbox,
        which only its members may send from; its author stays the agent (the audit trail: Graph only sees the
        service account). Odoo's mail queue then sends it through the address's Outlook server, which checks
        the same rule again where the mail leaves (``epilot.outlook.email.address._outlook_send_refusal``): this
        is the early answer, not the guard. No other server is ever forced onto it. """
        # Checked for the user even under sudo: Odoo's chatter posts as the superuser once it checked that the user
        # may read the conversation (``_get_thread_with_access``), which says nothing of membership. The inbox is
        # read as the superuser: a user may read a conversation without its inbox (another rule).
        if self and self.sudo().inbox_id.email and self._outlook_is_outgoing(kwargs):
            self.ensure_one()
            self._outlook_check_can_send()
            inbox = self.sudo().inbox_id
            kwargs.setdefault('author_id', self.env.user.partner_id.id)
            # Always the shared mailbox (the full composer proposes the agent's own address; an API call may
            # name any): its Outlook server sends it, as the mailbox.
            kwargs['email_from'] = formataddr((inbox.name, inbox.email))
            kwargs.setdefault('reply_to', inbox.email)
            kwargs.pop('mail_server_id', None)
        return super().message_post(**kwargs)

    def _outlook_is_outgoing(self, post_values):
        """ Whether a post may e-mail someone: a comment (it notifies the followers), or any post that names
        recipients or a mail server. """
        return self._outlook_is_reply(post_values) or bool(
            post_values.get('partner_ids') or post_values.get('mail_server_id'))

    def _outlook_is_reply(self, post_values):
        """ Whether a post is a message to the correspondents (Odoo's "Send message": a comment of subtype
        ``mail.mt_comment``), not a note. """
        comment = self.env['ir.model.data']._xmlid_to_res_id('mail.mt_comment')
        subtype_id = post_values.get('subtype_id') or (
            comment if post_values.get('subtype_xmlid') == 'mail.mt_comment' else None)
        return post_values.get('message_type', 'notification') == 'comment' and subtype_id == comment

    def _outlook_check_can_send(self):
        """ Only the inbox's members (and email settings editors, and Odoo itself) send from it; checked on the
        server for the user, also under sudo, whatever the screens offer.

        :raise AccessError: Otherwise.
        """
        user = self.env.user
        if self.sudo().inbox_id._outlook_may_send(user):
            return
        raise AccessError(self.env._(
            "%(user)s is not a member of the shared inbox %(inbox)s, so cannot send from it. Ask an email settings "
            "editor to add you to its members.", user=user.name, inbox=self.inbox_id.sudo().name))

    def _partner_find_from_emails_single(self, emails, avoid_alias=True, ban_emails=None, filter_found=None,
                                         additional_values=None, no_create=False):
        """ Override of `mail`: the chatter's composer asks for contacts of the addresses an agent writes to
        without creating any when the agent may not create contacts, and the e-mail then goes to nobody, without
        a word. On a conversation the user may send from, the missing contacts are made (as the superuser), as
        the import makes them for an inbox that allows it: writing to an address is the agent's decision.

        The contacts taken are those the user may read (their rules), shared or of the conversation's company: the
        answer names them, so a contact the user may not see is never told by its address (another company's
        included); for an address without one, a new contact is made. """
        if no_create and emails and len(self) == 1 and self.inbox_id.email and self._outlook_user_can_send():
            # The composer proposes the shared mailbox itself too (it is the thread's address): never a recipient.
            mailbox = email_normalize(self.inbox_id.email)
            emails = [email for email in emails if email_normalize(email or '') != mailbox]
            if not emails:
                return self.env['res.partner']
            company = self.sudo().company_id

            def usable(partner):
                return partner.company_id in (company, self.env['res.company']) and (
                    not filter_found or filter_found(partner))

            # Looked up as the user (the chatter calls this under sudo), then made as the superuser where the
            # user sees none: the superuser's lookup keeps only what the user's found.
            visible = super(EpilotSharedConversation, self.sudo(False))._partner_find_from_emails_single(
                emails, avoid_alias=avoid_alias, filter_found=usable, no_create=True)
            return super(EpilotSharedConversation, self.sudo())._partner_find_from_emails_single(
                emails, avoid_alias=avoid_alias, ban_emails=ban_emails, filter_found=lambda partner: partner in visible,
                additional_values=additional_values, no_create=False,
            ).sudo(False)
        return super()._partner_find_from_emails_single(
            emails, avoid_alias=avoid_alias, ban_emails=ban_emails, filter_found=filter_found,
            additional_values=additional_values, no_create=no_create)

    def _outlook_user_can_send(self):
        try:
            self._outlook_check_can_send()
        except AccessError:
            return False
        return True

    def message_subscribe(self, partner_ids=None, subtype_ids=None):
        """ Override of `mail`: Odoo's users follow a conversation only when they may read it (members of its
        inbox, email settings editors): a follower gets every reply of the team, body and files included. """
        if partner_ids and self:
            partner_ids = self._outlook_allowed_partner_ids(partner_ids)
        return super().message_subscribe(partner_ids=partner_ids, subtype_ids=subtype_ids)

    def _message_subscribe(self, partner_ids=None, subtype_ids=None, customer_ids=None):
        # The ORM's own door too (auto-subscription of authors and assignees, the import's followers).
        if partner_ids and self:
            partner_ids = self._outlook_allowed_partner_ids(partner_ids)
        return super()._message_subscribe(partner_ids=partner_ids, subtype_ids=subtype_ids, customer_ids=customer_ids)

    def _outlook_allowed_partner_ids(self, partner_ids):
        """ ``partner_ids`` without the partners of internal users who may not read every conversation of
        ``self`` (not members of its inbox, not editors). Customers' partners stay: they are the recipients. """
        partners = self.env['res.partner'].sudo().browse(partner_ids)
        refused = set()
        for user in partners.user_ids.filtered(lambda user: not user.share):
            if not all(inbox._outlook_may_send(user) for inbox in self.sudo().inbox_id):
                refused.add(user.partner_id.id)
        return [partner_id for partner_id in partner_ids if partner_id not in refused]

    def _notify_get_recipients(self, message, msg_vals=False, **kwargs):
        """ Override of `mail`:

        - Odoo's users who may not read the conversation (not members of its inbox: one just removed, a
          colleague named in a note) are never notified: a notification carries the body and the files;
        - an e-mail from the shared mailbox goes to the correspondents only; agents following the conversation
          read it in Odoo (an e-mail to them would leave from the shared mailbox);
        - but the recipients an agent names in an e-mail (not a note) get it by e-mail, colleagues too: a forward
          to a colleague is an e-mail to their mailbox, as to anyone else (it carries what the agent chose to send,
          and gives no access to the conversation).
        """
        recipients = super()._notify_get_recipients(message, msg_vals=msg_vals, **kwargs)
        inbox = self.inbox_id.sudo()[:1]
        from_mailbox = self._outlook_from_mailbox(message, msg_vals)
        addressed = set()
        if from_mailbox:
            values = msg_vals or {}
            subtype_id = values['subtype_id'] if 'subtype_id' in values else message.subtype_id.id
            if subtype_id == self.env['ir.model.data']._xmlid_to_res_id('mail.mt_comment'):
                addressed = set(values['partner_ids'] if 'partner_ids' in values else message.partner_ids.ids)
        users = self.env['res.users'].sudo().browse([
            recipient['uid'] for recipient in recipients if recipient.get('uid') and not recipient.get('ushare')])
        refused = {user.id for user in users if inbox and not inbox._outlook_may_send(user)}
        recipients = [recipient for recipient in recipients
                      if recipient.get('uid') not in refused or recipient['id'] in addressed]
        if from_mailbox:
            for recipient in recipients:
                if recipient['id'] in addressed:
                    recipient['notif'] = 'email'
                elif recipient.get('notif') == 'email' and not recipient.get('share'):
                    recipient['notif'] = 'inbox'
        return recipients

    # === BUSINESS METHODS === #

    @api.model
    def _outlook_for_messages(self, inbox, mailbox, messages, partners):
        """ Find or create the conversation of each message of a page, in a few queries.

        Outlook's ``conversationId`` decides. Without one, a reply joins the conversation of the message it
        answers (``In-Reply-To``/``References`` known in this inbox), and anything else groups by subject
        (without ``Re:``/``Fwd:``) and correspondent.

        :param inbox: The ``epilot.shared.inbox``.
        :param str mailbox: The shared mailbox's address (to tell the correspondent from the mailbox).
        :param list messages: :class:`outlook_core.mapping.OutlookItem` items not imported yet.
        :param dict partners: The known partners by normalized e-mail (the correspondents' among them).
        :return: ``{graph_id: conversation}``, and the conversations created here: they hold only these
            messages, and were created with the dates, counts and status :meth:`_outlook_refresh_stats` would
            give them for these messages alone (so they need no refresh unless more mail joins them).
        :rtype: tuple
        """
        by_graph_conversation = {message.conversation_id for message in messages if message.conversation_id}
        found = {
            conversation.graph_conversation_id: conversation
            for conversation in self.search_fetch([
                ('inbox_id', '=', inbox.id), ('graph_conversation_id', 'in', list(by_graph_conversation)),
            ], ['graph_conversation_id'])
        } if by_graph_conversation else {}

        # Without a conversationId: first the message it answers, then the subject and correspondent.
        orphans = [message for message in messages if not message.conversation_id]
        replied = {}
        references = {ref for message in orphans for ref in (message.in_reply_to, *message.references) if ref}
        if references:
            for record in self.env['epilot.outlook.message'].search_fetch([
                ('inbox_id', '=', inbox.id), ('internet_message_id', 'in', list(references)),
                ('conversation_id', '!=', False),
            ], ['internet_message_id', 'conversation_id']):
                replied[record.internet_message_id] = record.conversation_id
        keys = {message.thread_key(mailbox) for message in orphans}
        by_key = {
            conversation.thread_key: conversation
            for conversation in self.search_fetch(Domain([
                ('inbox_id', '=', inbox.id), ('graph_conversation_id', '=', False), ('thread_key', 'in', list(keys)),
            ]), ['thread_key'])
        } if keys else {}

        # Create what is missing, one conversation per Outlook conversation or key, named after its oldest message.
        to_create = {}
        for message in sorted(messages, key=lambda message: message.date or fields.Datetime.now()):
            if message.conversation_id:
                if message.conversation_id not in found:
                    to_create.setdefault(('graph', message.conversation_id), []).append(message)
            elif not any(ref in replied for ref in (message.in_reply_to, *message.references) if ref):
                key = message.thread_key(mailbox)
                if key not in by_key:
                    to_create.setdefault(('key', key), []).append(message)
        created = self.browse()
        if to_create:
            # In key order: two workers importing the same mail then meet on the first conversation they share,
            # and the one that waits gets the unique violation; in any other order they could each hold a key
            # the other needs (a deadlock, seen with mail received in the same second, CI of 2026-12-06).
            to_create = dict(sorted(to_create.items()))
            values = []
            for (kind, key), group in to_create.items():
                message = group[0]
                correspondent = message.correspondent(mailbox)
                values.append({
                    **self._outlook_stats_of_new(group),
                    'inbox_id': inbox.id,
                    'company_id': inbox.company_id.id,   # its related value, given: no UPDATE after the INSERT
                    'name': message.subject or self.env._("(no subject)"),
                    'graph_conversation_id': key if kind == 'graph' else False,
                    'thread_key': key if kind == 'key' else False,
                    'correspondent_email': correspondent.address if correspondent else False,
                    'correspondent_name': correspondent.name or False if correspondent else False,
                    'partner_id': partners[correspondent.address].id
                    if correspondent and correspondent.address in partners else False,
                })
            # One INSERT (tools/bulk.py): a backfill creates about one conversation per two messages, and
            # create() spent more on each than the e-mail's own insert. Nothing to track, follow or log here.
            created = bulk.insert_records(self, values)
            for (kind, key), conversation in zip(to_create, created, strict=True):
                (found if kind == 'graph' else by_key)[key] = conversation

        result = {}
        for message in messages:
            if message.conversation_id:
                result[message.graph_id] = found[message.conversation_id]
                continue
            refs = [ref for ref in (message.in_reply_to, *message.references) if ref in replied]
            result[message.graph_id] = replied[refs[0]] if refs else by_key[message.thread_key(mailbox)]
        return result, created

    @api.model
    def _outlook_stats_of_new(self, messages):
        """ The values :meth:`_outlook_refresh_stats` gives a new conversation holding ``messages`` only (each
        its own e-mail): dates, counts and status. Creating a page's new conversations with them spares an
        ``UPDATE`` of each right after its ``INSERT`` (bench/bench_backfill.py); the tests compare the two.

        :param list messages: :class:`outlook_core.mapping.OutlookItem` items.
        :rtype: dict
        """
        dates = [message.date for message in messages if message.date]
        # Automatic replies and bounce reports are no answer of the customer's (models/…_message_bounce.py).
        received = [message.date for message in messages if message.date and message.folder == 'inbox'
                    and not message.kind]
        sent = [message.date for message in messages if message.date and message.folder == 'sentitems']
        unread = sum(1 for message in messages if message.folder == 'inbox' and not message.is_read)
        last_in, last_out = max(received, default=False), max(sent, default=False)
        return {
            'first_message_date': min(dates, default=False),
            'last_message_date': max(dates, default=False),
            'email_count': len(messages),
            'unread_count': unread,
            'is_unread': unread > 0,
            'last_inbound_date': last_in,
            'last_outbound_date': last_out,
            # Mail sent after the last received (or none received) waits for the customer.
            'state': 'waiting' if last_out and (not last_in or last_out >= last_in) else 'new',
        }

    def _outlook_refresh_stats(self):
        """ Recompute first/last e-mail dates, the e-mail count, the unread count and the last received and sent
        dates from the sync records, and move the status along, in one UPDATE.

        A page touches about one conversation per message: one ORM write each cost more than the import of
        the message itself (bench/bench_backfill.py). These are plain stored fields that nothing computes
        from, so their cache is invalidated instead of going through ``write``; ``write_date`` and
        ``write_uid`` are set as ``write`` would.

        The status follows the mail (its changes are returned, for the chatter's tracking and the screens, see
        ``models/epilot_shared_conversation_live.py``):

        - mail received after the last one known reopens a *waiting* or *closed* conversation (an automatic reply
          or a bounce report does not: neither is the customer's answer, nor a received date);
        - mail sent (Sent Items: from Odoo or from Outlook) after the last received one, and after the last one
          sent known, puts a *new* or *open* conversation in *waiting* (for the customer).

        Mail imported late (a backfill of older mail) moves nothing: only dates after the stored ones count.
        Read state is the shared mailbox's, that of the received copies (Inbox); an erased e-mail counts for
        nothing.

        :return: ``{conversation id: (old status, new status)}`` for the conversations whose status changed.
        :rtype: dict
        """
        if not self:
            return {}
        self.env['epilot.outlook.message'].flush_model(
            ['conversation_id', 'mail_message_id', 'date', 'folder', 'is_read', 'kind'])
        stats = ['first_message_date', 'last_message_date', 'email_count', 'unread_count', 'is_unread',
                 'last_inbound_date', 'last_outbound_date', 'state']
        self.flush_recordset(stats)
        self.env.cr.execute(SQL(
            """UPDATE %(table)s AS conversation
                  SET first_message_date = stats.first, last_message_date = stats.last, email_count = stats.count,
                      unread_count = stats.unread, is_unread = stats.unread > 0,
                      last_inbound_date = stats.last_in, last_outbound_date = stats.last_out,
                      state = CASE
                          WHEN stats.last_in > COALESCE(conversation.last_inbound_date, '-infinity')
                               AND conversation.state IN ('waiting', 'closed') THEN 'open'
                          WHEN stats.last_out > COALESCE(conversation.last_outbound_date, '-infinity')
                               AND stats.last_out >= COALESCE(stats.last_in, '-infinity')
                               AND conversation.state IN ('new', 'open') THEN 'waiting'
                          ELSE conversation.state END,
                      write_date = %(now)s, write_uid = %(uid)s
                 FROM (SELECT conversation.id, conversation.state AS old_state,
                              MIN(message.date) AS first, MAX(message.date) AS last,
                              COUNT(DISTINCT message.mail_message_id) AS count,
                              MAX(message.date) FILTER (WHERE message.folder = 'inbox' AND message.kind IS NULL)
                                  AS last_in,
                              MAX(message.date) FILTER (WHERE message.folder = 'sentitems') AS last_out,
                              COUNT(DISTINCT message.mail_message_id)
                                  FILTER (WHERE message.folder = 'inbox' AND NOT COALESCE(message.is_read, FALSE))
                                  AS unread
                         FROM %(table)s AS conversation
                    LEFT JOIN %(messages)s AS message
                           ON message.conversation_id = conversation.id AND message.mail_message_id IS NOT NULL
                        WHERE conversation.id IN %(ids)s
                     GROUP BY conversation.id) AS stats
                WHERE conversation.id = stats.id
            RETURNING conversation.id, stats.old_state, conversation.state""",
            table=SQL.identifier(self._table), messages=SQL.identifier(self.env['epilot.outlook.message']._table),
            now=self.env.cr.now(), uid=self.env.uid, ids=tuple(self.ids),
        ))
        changes = {id_: (old, new) for id_, old, new in self.env.cr.fetchall() if old != new}
        self.invalidate_recordset([*stats, 'write_date', 'write_uid'])
        return changes
