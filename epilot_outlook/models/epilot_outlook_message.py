import html
import logging
import re
import uuid
from urllib.parse import unquote

import psycopg2.errors
from markupsafe import Markup

from odoo import api, fields, models
from odoo.fields import Command, Domain
from odoo.tools import SQL

from ..outlook_core import mapping
from ..tools import bulk
from ..tools.sanitize import SanitizedBodies, field_sanitizer

_logger = logging.getLogger(__name__)

# ``src="cid:…"`` references to inline images, rewritten to the stored attachment.
_CID_SRC_RE = re.compile(r'''(src\s*=\s*["']?)cid:([^"'\s>]+)''', re.IGNORECASE)


class EpilotOutlookMessage(models.Model):
    """ The Outlook facts of one e-mail Odoo imported: its sync record.

    The e-mail itself is a ``mail.message`` on a conversation's chatter; this record keeps what Graph says
    about it (immutable id, folder, read flag, change key, dates) and is the **exactly-once key**: a unique
    index on (shared inbox, immutable id) lets an Outlook item exist once per inbox however it arrives
    (backfill, delta, a replay, a resync, a retry after a crash, two workers at once). The key does not depend
    on the Outlook address record, so removing and re-adding an address imports nothing twice.

    Import goes through :meth:`_outlook_import` only: whole pages at once, one query to find which ids are
    known, batched creates for the rest.
    """
    _name = 'epilot.outlook.message'
    _description = "Outlook Message Sync Record"
    # Technical rows written by the import, with dates of their own; the e-mail has Odoo's creation date. No
    # create_uid/write_uid: two foreign keys fewer to check on each of the thousands of rows a page inserts.
    _log_access = False
    _order = 'date desc, id desc'
    _rec_name = 'subject'

    inbox_id = fields.Many2one(
        string="Shared Inbox", comodel_name='epilot.shared.inbox', required=True, ondelete='cascade', index=True)
    address_id = fields.Many2one(
        string="Outlook Address",
        comodel_name='epilot.outlook.email.address',
        ondelete='set null',   # The mail and its key outlive the address.
        index='btree_not_null',
    )
    mailbox_email = fields.Char(string="Mailbox", required=True)
    conversation_id = fields.Many2one(
        string="Conversation", comodel_name='epilot.shared.conversation', ondelete='set null', index=True)
    mail_message_id = fields.Many2one(
        string="Message", comodel_name='mail.message', ondelete='set null', index='btree_not_null')
    graph_id = fields.Char(string="Outlook Immutable ID", required=True)
    folder = fields.Selection(
        string="Folder", selection=[('inbox', "Inbox"), ('sentitems', "Sent Items")], required=True)
    internet_message_id = fields.Char(string="Message-Id", index='btree_not_null')
    graph_conversation_id = fields.Char(string="Outlook Conversation")
    subject = fields.Char(string="Subject")
    date = fields.Datetime(string="Date", index=True)
    received_date = fields.Datetime(string="Received")
    sent_date = fields.Datetime(string="Sent")
    last_modified_date = fields.Datetime(string="Last Modified in Outlook")
    change_key = fields.Char(string="Change Key")
    is_read = fields.Boolean(string="Read in Outlook")
    sender_email = fields.Char(
        string="Sender", help="Who generated the message, when it differs from From (a delegate).")
    removed_in_outlook = fields.Boolean(
        string="Removed in Outlook",
        help="Deleted or moved out of the synced folders in Outlook. Odoo keeps the e-mail.",
    )
    removed_date = fields.Datetime(string="Removed On")
    odoo_own_mail = fields.Boolean(
        string="Odoo's Own Mail",
        help="A copy of an e-mail Odoo sent for itself through the mailbox (a password reset, an invoice): "
             "known, so that it is never imported, and shown nowhere.",
    )

    _graph_id_uniq = models.UniqueIndex(
        '(inbox_id, graph_id)',
        "An Outlook message is imported once per shared inbox.",
    )

    # === BUSINESS METHODS - IMPORT === #

    @api.model
    def _outlook_known(self, inbox, graph_ids):
        """ The sync records of ``inbox`` among ``graph_ids`` (one query), by immutable id. """
        if not graph_ids:
            return {}
        records = self.search([('inbox_id', '=', inbox.id), ('graph_id', 'in', list(graph_ids))])
        return {record.graph_id: record for record in records}

    @api.model
    def _outlook_import(self, address, messages, bodies=None):
        """ Import a page of mapped Graph messages of one address into its shared inbox, exactly once.

        Known messages get their Outlook facts updated (read flag, change key, subject; back in a synced
        folder); the others become ``mail.message`` records of type e-mail on their conversations, created
        in batches with their attachments, without notifying anyone, following anyone or tracking anything.

        An item whose Message-Id the inbox already shows (the same e-mail in another of its mailboxes, or in
        both folders) gets its own sync record pointing at that e-mail: the inbox shows every e-mail once.

        :param address: The ``epilot.outlook.email.address`` the page was read from (its inbox receives it).
        :param list messages: :class:`outlook_core.mapping.OutlookItem` items.
        :param bodies: Their bodies, sanitized by ``mail.message.body``'s own sanitizer, in the order of
            ``messages`` (:class:`tools.sanitize.SanitizedBodies`, from the backfill's read-ahead); by default the
            bodies of the new messages are sanitized here.

        :return: How many messages were new (sync records created).
        :rtype: int
        """
        inbox = address.shared_inbox_id
        by_id = {message.graph_id: message for message in messages}   # a replayed item counts once
        # One query for both: the sync records of these items, and those of their Message-Ids.
        records = self._outlook_lookup(inbox, by_id.values())
        known = {record.graph_id: record for record in records if record.graph_id in by_id}
        for graph_id, record in known.items():
            record._outlook_apply_facts(by_id[graph_id])
        new = [message for graph_id, message in by_id.items() if graph_id not in known]
        if not new:
            return 0
        # Items the inbox already shows, or shows twice in this page, by Message-Id: copies. Copies of mail Odoo
        # sent for itself (a password reset...) are kept apart: known, never shown.
        shown, own = self._outlook_shown(inbox, new, records)
        fresh, copies, hidden, seen = [], [], [], set()
        for message in new:
            if message.internet_message_id in own:
                hidden.append(message)
            elif message.internet_message_id in shown or message.internet_message_id in seen:
                copies.append(message)
            else:
                fresh.append(message)
                if message.internet_message_id:
                    seen.add(message.internet_message_id)
        new = fresh
        if hidden:
            self._outlook_insert([self._outlook_row_of(address, message, odoo_own_mail=True, subject=None)
                                  for message in hidden])
            if not new and not copies:
                return len(hidden)

        env = self.env(context=dict(
            self.env.context, mail_create_nolog=True, mail_create_nosubscribe=True, mail_notrack=True,
            tracking_disable=True, mail_auto_subscribe_no_notify=True,
        ))
        mailbox = address.email
        # Partners first (authors and correspondents, one search): new conversations link to theirs.
        partners = self._outlook_partners(inbox, [
            address for message in new for address in (message.from_, message.correspondent(mailbox)) if address
        ])
        conversations, created = env['epilot.shared.conversation']._outlook_for_messages(
            inbox, mailbox, new, partners)
        attachments = self._outlook_create_attachments(new, conversations)

        subtype_id = self.env['ir.model.data']._xmlid_to_res_id('mail.mt_comment')
        if bodies is None:
            bodies, messages = self._outlook_bodies(new), new
        sanitized = dict(zip((message.graph_id for message in messages), bodies.result()))
        message_values = []
        for message in new:
            conversation = conversations[message.graph_id]
            files = attachments.get(message.graph_id, [])
            author = partners.get(message.from_.address) if message.from_ and message.from_.address else None
            message_values.append({
                'model': conversation._name,
                'res_id': conversation.id,
                'message_type': 'email',
                'subtype_id': subtype_id,
                'subject': message.subject or False,
                'body': _inline_images(sanitized[message.graph_id], files),
                'author_id': author.id if author else False,
                'email_from': (message.from_ or message.sender).formatted() if (message.from_ or message.sender)
                else False,
                'incoming_email_to': mapping.format_addresses(message.to) or False,
                'incoming_email_cc': mapping.format_addresses(message.cc) or False,
                'reply_to': mapping.format_addresses(message.reply_to) or False,
                'message_id': message.internet_message_id or False,
                'date': message.date or fields.Datetime.now(),
                'attachment_ids': [Command.set([attachment.id for _file, attachment in files])],
                'outlook_auto_reply': message.kind == 'auto_reply',   # marked in the chatter (…_bounce.py)
            })
        mail_messages = self._outlook_create_mail_messages(env['mail.message'], message_values, [
            _inline_images(message.body_html, attachments.get(message.graph_id, []))
            if 'data:image' in message.body_html else '' for message in new])
        shown_by_id = {}   # graph id -> the conversation and e-mail that show it
        for message, mail_message in zip(new, mail_messages, strict=True):
            shown_by_id[message.graph_id] = {
                'conversation_id': conversations[message.graph_id].id, 'mail_message_id': mail_message.id}
            if message.internet_message_id:
                shown[message.internet_message_id] = shown_by_id[message.graph_id]
        for message in copies:
            shown_by_id[message.graph_id] = shown[message.internet_message_id]

        self._outlook_insert([
            self._outlook_row_of(address, message, **shown_by_id[message.graph_id]) for message in new + copies])
        # Conversations created for this page have their figures already, unless a copy joined one of them.
        touched = {values['conversation_id'] for values in shown_by_id.values()}
        complete = set(created.ids) - {shown_by_id[message.graph_id]['conversation_id'] for message in copies}
        self.env['epilot.shared.conversation'].browse(touched - complete)._outlook_refresh_stats()
        return len(new) + len(copies) + len(hidden)

    @api.model
    def _outlook_insert_own_mail(self, address, messages):
        """ Record copies of mail Odoo sent for itself through ``address`` as known and hidden: no e-mail, no
        conversation, nothing of their content (a reset link must not reach an inbox, issue 17).

        :param list messages: ``(graph_id, folder, internet_message_id, date)`` tuples.
        """
        self._outlook_insert([
            self._outlook_row(address, graph_id, folder, internet_message_id=internet_message_id or None, date=date,
                              is_read=True, odoo_own_mail=True)
            for graph_id, folder, internet_message_id, date in messages])

    @api.model
    def _outlook_row(self, address, graph_id, folder, **values):
        """ The column values of a new sync record of ``address``'s inbox, for :meth:`_outlook_insert`: the one
        place that makes them (every row of one insert has the same keys). Unknown facts are ``None``.

        :param str graph_id: The item's immutable id.
        :param str folder: ``inbox`` or ``sentitems``.
        :param values: The facts known (``conversation_id``, ``mail_message_id``, ``subject``, dates…).
        :rtype: dict
        """
        return {
            'inbox_id': address.shared_inbox_id.id, 'address_id': address.id, 'mailbox_email': address.email,
            'graph_id': graph_id, 'folder': folder, 'conversation_id': None, 'mail_message_id': None,
            'internet_message_id': None, 'graph_conversation_id': None, 'subject': None, 'date': None,
            'received_date': None, 'sent_date': None, 'last_modified_date': None, 'change_key': None,
            'is_read': None, 'sender_email': None, 'removed_in_outlook': False, 'odoo_own_mail': False,
            **values,
        }

    @api.model
    def _outlook_row_of(self, address, message, **values):
        """ :meth:`_outlook_row` of a mapped Graph item (:class:`outlook_core.mapping.OutlookItem`), ``values``
        overriding its facts. """
        sender = message.sender.address if message.sender and message.from_ and (
            message.sender.address != message.from_.address) else None
        return {**self._outlook_row(
            address, message.graph_id, message.folder, internet_message_id=message.internet_message_id or None,
            graph_conversation_id=message.conversation_id or None, subject=message.subject or None,
            date=message.date, received_date=message.received_at, sent_date=message.sent_at,
            last_modified_date=message.last_modified, change_key=message.change_key or None,
            is_read=message.is_read, sender_email=sender), **values}

    @api.model
    def _outlook_body_sanitizer(self):
        """ ``mail.message.body``'s own sanitizer, as a picklable callable (:func:`tools.sanitize.field_sanitizer`):
        for a helper process, or for :meth:`_outlook_bodies`. """
        return field_sanitizer(self.env['mail.message']._fields['body'])

    @api.model
    def _outlook_bodies(self, messages):
        """ The bodies of ``messages`` as ``mail.message.body`` stores them, sanitized here when asked for.

        :param list messages: :class:`outlook_core.mapping.OutlookItem` items.
        :rtype: tools.sanitize.SanitizedBodies
        """
        return SanitizedBodies(self._outlook_body_sanitizer(), [message.body_html for message in messages])

    @api.model
    def _outlook_create_mail_messages(self, Message, values_list, raw_bodies):
        """ Create the e-mails of a page in one ``INSERT`` (:func:`tools.bulk.insert_records`), in order.

        The bodies in ``values_list`` are sanitized already (:meth:`_outlook_bodies`). A body with a base64
        image goes through ``create()`` instead, from ``raw_bodies`` (given for those only): ``create()`` turns
        such images into attachments, and sanitizes. A missing Message-Id gets Odoo's own, as ``create()`` would
        give it.
        """
        for values in values_list:
            if not values['message_id']:
                values['message_id'] = Message._get_message_id(values)
        through_create = [index for index, body in enumerate(raw_bodies) if 'data:image' in body]
        records = [None] * len(values_list)
        if through_create:
            created = Message.create([{**values_list[i], 'body': raw_bodies[i]} for i in through_create])
            for index, record in zip(through_create, created):
                records[index] = record.id
        rest = [index for index, record in enumerate(records) if record is None]
        inserted = bulk.insert_records(Message, [values_list[i] for i in rest], sanitized=('body',))
        for index, record in zip(rest, inserted):
            records[index] = record.id
        return Message.browse(records)

    @api.model
    def _outlook_lookup(self, inbox, messages):
        """ The sync records of ``inbox`` for ``messages``: by immutable id, and by Message-Id among those that
        show an e-mail (one query, in id order).

        :param messages: :class:`outlook_core.mapping.OutlookItem` items.
        """
        return self.search_fetch(self._outlook_lookup_domain(inbox, messages), [
            'graph_id', 'internet_message_id', 'conversation_id', 'mail_message_id', 'is_read', 'change_key',
            'last_modified_date', 'subject', 'removed_in_outlook',
        ], order='id')

    @api.model
    def _outlook_lookup_domain(self, inbox, messages):
        # The inbox in each branch: each one is then an index's condition (tests: TestImportPlans).
        domain = Domain([('inbox_id', '=', inbox.id), ('graph_id', 'in', [message.graph_id for message in messages])])
        message_ids = list({message.internet_message_id for message in messages if message.internet_message_id})
        if message_ids:
            domain |= Domain([('inbox_id', '=', inbox.id), ('internet_message_id', 'in', message_ids),
                              ('mail_message_id', '!=', False), ('conversation_id', '!=', False)])
        return domain

    @api.model
    def _outlook_shown(self, inbox, messages, records):
        """ The e-mails ``inbox`` shows already for the Message-Ids of ``messages``.

        :param records: The inbox's sync records for these Message-Ids (:meth:`_outlook_lookup`), in id order.
        :return: ``({internet_message_id: {'conversation_id': id, 'mail_message_id': id}}, {internet_message_id
            of mail Odoo sent for itself})``.
        :rtype: tuple
        """
        message_ids = {message.internet_message_id for message in messages if message.internet_message_id}
        if not message_ids:
            return {}, set()
        shown = {}
        for record in records:
            if record.internet_message_id in message_ids and record.mail_message_id and record.conversation_id:
                shown.setdefault(record.internet_message_id, {
                    'conversation_id': record.conversation_id.id, 'mail_message_id': record.mail_message_id.id})
        # An e-mail Odoo sent whose sent copy is synced before Odoo recorded it as sent (a worker died between),
        # and mail Odoo sent for itself (never shown).
        own = set()
        if missing := message_ids - set(shown):
            sent, own = self.env['epilot.outlook.outbox']._outlook_sent_by_odoo(inbox, missing)
            shown.update(sent)
        return shown, own

    @api.model
    def _outlook_analyze(self):
        """ Refresh PostgreSQL's statistics of the sync records and the conversations (``ANALYZE``).

        A backfill fills an inbox faster than autovacuum analyzes: with statistics from before, the planner
        takes the new inbox for a few rows and looks its messages up by scanning all of the inbox's rows
        (the index's ``inbox_id`` alone, the ids as a filter), so each page cost more than the one before
        (auto_explain on bench/bench_backfill.py: 8,000 rows read to find 50, at 10,000 messages). The
        backfill calls this as the inbox grows. ``ANALYZE`` reads a sample of bounded size; it is skipped
        when another session holds the table (a concurrent ``ANALYZE`` or ``VACUUM``) for more than a second.
        """
        cr = self.env.cr
        tables = [self._table, self.env['epilot.shared.conversation']._table]
        cr.execute("SELECT current_setting('lock_timeout')")
        [lock_timeout] = cr.fetchone()
        try:
            with cr.savepoint(flush=False):
                cr.execute("SELECT set_config('lock_timeout', '1s', true)")
                for table in tables:
                    cr.execute(SQL("ANALYZE %s", SQL.identifier(table)))
        except psycopg2.errors.LockNotAvailable:
            _logger.info("Microsoft Outlook: statistics of %s not refreshed (tables busy)", ', '.join(tables))
        finally:
            cr.execute(SQL("SELECT set_config('lock_timeout', %s, true)", lock_timeout))

    @api.model
    def _outlook_insert(self, rows):
        """ Insert sync records in one statement (:func:`tools.bulk.insert_records`).

        They are technical rows written by the import only, and the ORM's create of them took about a third of
        the time of the ``mail.message`` create itself (profiled with bench/bench_backfill.py). The unique
        index still has the last word.

        :param list rows: Field values; every row has the same keys.
        """
        # In immutable id order, as conversations are created in key order: two workers inserting the same
        # items wait on each other at the first one, never in a cycle.
        bulk.insert_records(self, sorted(rows, key=lambda row: row['graph_id']))

    def _outlook_apply_facts(self, message):
        """ Update the Outlook facts of a known message from a fresh copy (or a delta change). """
        self.ensure_one()
        values = {}
        if message.is_read is not None and message.is_read != self.is_read:
            values['is_read'] = message.is_read
        if message.change_key and message.change_key != self.change_key:
            values['change_key'] = message.change_key
        if message.last_modified and message.last_modified != self.last_modified_date:
            values['last_modified_date'] = message.last_modified
        if message.subject is not None and (message.subject or False) != self.subject:
            values['subject'] = message.subject or False
            if self.mail_message_id:
                self.mail_message_id.sudo().subject = message.subject or False
        if self.removed_in_outlook:
            values.update(removed_in_outlook=False, removed_date=False)   # moved back into the folder
        if values:
            self.write(values)

    @api.model
    def _outlook_apply_delta(self, address, changes):
        """ Apply the items of a delta page to the messages Odoo knows.

        :param list changes: :class:`outlook_core.mapping.DeltaChange` items.
        :return: The changes of messages Odoo does not know yet (to fetch and import).
        :rtype: list
        """
        by_id = {}
        for change in changes:
            by_id[change.graph_id] = change   # the last word of a replayed item wins
        known = self._outlook_known(address.shared_inbox_id, by_id)
        unknown = []
        now = fields.Datetime.now()
        for graph_id, change in by_id.items():
            record = known.get(graph_id)
            if record is None:
                if not change.removed:
                    unknown.append(change)
            elif change.removed:
                if not record.removed_in_outlook:
                    record.write({'removed_in_outlook': True, 'removed_date': now})
            else:
                record._outlook_apply_facts(change)
        return unknown

    # === BUSINESS METHODS - IMPORT HELPERS === #

    @api.model
    def _outlook_partners(self, inbox, addresses):
        """ The partners of ``addresses`` by normalized e-mail (one search); unknown ones are created only
        when the inbox allows it.

        :rtype: dict
        """
        emails = {address.address for address in addresses if address.address}
        if not emails:
            return {}
        Partner = self.env['res.partner'].sudo()
        found = {}
        # Contacts this inbox's company may use: shared ones, or its own (never another company's).
        for partner in Partner.search([('email_normalized', 'in', list(emails)),
                                       ('company_id', 'in', [False, *inbox.company_id.ids])], order='id'):
            found.setdefault(partner.email_normalized, partner)
        if inbox.create_partners:
            names = {}
            for address in addresses:
                if address.address in emails and address.address not in found:
                    names.setdefault(address.address, address.name or address.address)
            if names:
                created = Partner.create([{'name': name, 'email': email} for email, name in names.items()])
                found.update(zip(names, created))
        return found

    @api.model
    def _outlook_create_attachments(self, messages, conversations):
        """ Store the file attachments of ``messages`` on their conversations, in one batched create.

        HTML, XML and SVG files are stored as text (``attachments_mime_plainxml``): an e-mail from outside must
        never serve active content from Odoo's domain. Images are kept as sent (no resizing).

        :return: ``{graph_id: [(mapping.Attachment, ir.attachment)]}``.
        :rtype: dict
        """
        pending, values = [], []
        for message in messages:
            conversation = conversations[message.graph_id]
            for file in message.attachments:
                pending.append((message.graph_id, file))
                values.append({
                    'name': file.name,
                    'raw': file.content,
                    'mimetype': file.content_type,
                    'res_model': conversation._name,
                    'res_id': conversation.id,
                    # Inline images are shown through /web/image with this token, as Odoo's mail gateway does.
                    'access_token': str(uuid.uuid4()) if file.is_inline else False,
                })
        if not values:
            return {}
        created = self.env['ir.attachment'].sudo().with_context(
            attachments_mime_plainxml=True, image_no_postprocess=True,
        ).create(values)
        result = {}
        for (graph_id, file), attachment in zip(pending, created, strict=True):
            result.setdefault(graph_id, []).append((file, attachment))
        return result

    # === TOOLING === #

    @api.model
    def _outlook_window_domain(self, address, folder, since):
        """ The sync records of ``address``'s mailbox and ``folder`` received in the window (for counts). """
        return Domain([
            ('inbox_id', '=', address.shared_inbox_id.id),
            ('mailbox_email', '=', address.email),
            ('folder', '=', folder),
            ('received_date', '>=', since),
            ('removed_in_outlook', '=', False),
        ])


def _inline_images(body_html, files):
    """ Point ``cid:`` image sources at the stored inline attachments (as Odoo's gateway does).

    Works on the raw body and on the sanitized one alike: the sanitizer writes a Content-ID with spaces or
    ``&`` escaped (``cid:a%20b&amp;c``), so both sides are compared unescaped. What is put in is a URL of
    this database with digits and a token, nothing a sanitizer would have to remove.
    """
    if not body_html:
        return Markup('')
    by_cid = {_cid_key(file.content_id): attachment for file, attachment in files if file.content_id}

    def replace(match):
        attachment = by_cid.get(_cid_key(match.group(2)))
        if attachment is None:
            return match.group(0)
        return '%s/web/image/%s?access_token=%s' % (match.group(1), attachment.id, attachment.access_token or '')

    return Markup(_CID_SRC_RE.sub(replace, body_html) if by_cid else body_html)


def _cid_key(content_id):
    return unquote(html.unescape(content_id)).strip().strip('<>')
