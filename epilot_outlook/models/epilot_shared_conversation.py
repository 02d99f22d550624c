from odoo import api, fields, models
from odoo.fields import Domain


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
    _check_company_auto = True

    name = fields.Char(string="Subject", required=True, default="(no subject)")
    inbox_id = fields.Many2one(
        string="Shared Inbox",
        comodel_name='epilot.shared.inbox',
        required=True,
        ondelete='cascade',
        index=True,
        check_company=True,
    )
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
    )
    first_message_date = fields.Datetime(string="First Message", readonly=True)
    last_message_date = fields.Datetime(string="Last Message", readonly=True, index=True)
    email_count = fields.Integer(string="E-mails", readonly=True, default=0)
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

    # === BUSINESS METHODS === #

    @api.model
    def _outlook_for_messages(self, inbox, mailbox, messages):
        """ Find or create the conversation of each message of a page, in a few queries.

        Outlook's ``conversationId`` decides. Without one, a reply joins the conversation of the message it
        answers (``In-Reply-To``/``References`` known in this inbox), and anything else groups by subject
        (without ``Re:``/``Fwd:``) and correspondent.

        :param inbox: The ``epilot.shared.inbox``.
        :param str mailbox: The shared mailbox's address (to tell the correspondent from the mailbox).
        :param list messages: :class:`outlook_core.mapping.Message` items not imported yet.
        :return: ``{graph_id: conversation}``.
        :rtype: dict
        """
        by_graph_conversation = {message.conversation_id for message in messages if message.conversation_id}
        found = {
            conversation.graph_conversation_id: conversation
            for conversation in self.search([
                ('inbox_id', '=', inbox.id), ('graph_conversation_id', 'in', list(by_graph_conversation)),
            ])
        } if by_graph_conversation else {}

        # Without a conversationId: first the message it answers, then the subject and correspondent.
        orphans = [message for message in messages if not message.conversation_id]
        replied = {}
        references = {ref for message in orphans for ref in (message.in_reply_to, *message.references) if ref}
        if references:
            for record in self.env['epilot.outlook.message'].search([
                ('inbox_id', '=', inbox.id), ('internet_message_id', 'in', list(references)),
                ('conversation_id', '!=', False),
            ]):
                replied[record.internet_message_id] = record.conversation_id
        keys = {message.thread_key(mailbox) for message in orphans}
        by_key = {
            conversation.thread_key: conversation
            for conversation in self.search(Domain([
                ('inbox_id', '=', inbox.id), ('graph_conversation_id', '=', False), ('thread_key', 'in', list(keys)),
            ]))
        } if keys else {}

        # Create what is missing, one conversation per Outlook conversation or key, oldest message first.
        to_create = {}
        for message in sorted(messages, key=lambda message: message.date or fields.Datetime.now()):
            if message.conversation_id:
                if message.conversation_id not in found:
                    to_create.setdefault(('graph', message.conversation_id), message)
            elif not any(ref in replied for ref in (message.in_reply_to, *message.references) if ref):
                key = message.thread_key(mailbox)
                if key not in by_key:
                    to_create.setdefault(('key', key), message)
        if to_create:
            values = []
            for (kind, key), message in to_create.items():
                correspondent = message.correspondent(mailbox)
                values.append({
                    'inbox_id': inbox.id,
                    'name': message.subject or self.env._("(no subject)"),
                    'graph_conversation_id': key if kind == 'graph' else False,
                    'thread_key': key if kind == 'key' else False,
                    'correspondent_email': correspondent.address if correspondent else False,
                })
            created = self.create(values)
            for ((kind, key), _message), conversation in zip(to_create.items(), created, strict=True):
                (found if kind == 'graph' else by_key)[key] = conversation

        result = {}
        for message in messages:
            if message.conversation_id:
                result[message.graph_id] = found[message.conversation_id]
                continue
            refs = [ref for ref in (message.in_reply_to, *message.references) if ref in replied]
            result[message.graph_id] = replied[refs[0]] if refs else by_key[message.thread_key(mailbox)]
        self._outlook_link_partners(set(result.values()))
        return result

    def _outlook_link_partners(self, conversations):
        """ Link conversations without a correspondent partner to the partner of their address, if any. """
        todo = [conversation for conversation in conversations
                if not conversation.partner_id and conversation.correspondent_email]
        if not todo:
            return
        partners = {}
        for partner in self.env['res.partner'].sudo().search(
                [('email_normalized', 'in', list({conversation.correspondent_email for conversation in todo}))],
                order='id'):
            partners.setdefault(partner.email_normalized, partner)
        for conversation in todo:
            if partner := partners.get(conversation.correspondent_email):
                conversation.partner_id = partner


    def _outlook_refresh_stats(self):
        """ Recompute first/last e-mail dates and the e-mail count from the sync records (one grouped query,
        then one write per conversation of the page). """
        if not self:
            return
        groups = self.env['epilot.outlook.message']._read_group(
            [('conversation_id', 'in', self.ids), ('mail_message_id', '!=', False)],
            ['conversation_id'], ['date:min', 'date:max', 'mail_message_id:count_distinct'],
        )
        stats = {conversation.id: (first, last, count) for conversation, first, last, count in groups}
        for conversation in self:
            first, last, count = stats.get(conversation.id, (False, False, 0))
            conversation.write({'first_message_date': first, 'last_message_date': last, 'email_count': count})
