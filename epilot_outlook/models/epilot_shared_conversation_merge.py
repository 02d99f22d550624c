from markupsafe import Markup

from odoo import Command, api, fields, models
from odoo.exceptions import AccessError, UserError
from odoo.tools import SQL, email_normalize
from odoo.tools.mail import parse_contact_from_email


class EpilotSharedConversation(models.Model):
    """ Merge and split of conversations (issue 19, item 4).

    **Merge.** The e-mails, notes, files, followers and activities of the merged conversations move to the target;
    the merged ones are archived, each pointing to it (``merged_into_id``). They are kept, not deleted, because
    they are where their Outlook ids live: ``graph_conversation_id`` and ``thread_key`` stay on them under the
    import's own unique indexes, and the import follows ``merged_into_id`` (:meth:`_outlook_for_messages`), so
    new mail of a merged Outlook conversation joins the target, exactly once, with no second key to keep in step.
    Anyone holding a link to a merged conversation finds "Merged into …" in its chatter.

    **Split.** An e-mail (and, if asked, the later ones) moves to a new conversation, with its files and Outlook
    sync records. Outlook's ``conversationId`` stays the original's: new mail of that Outlook conversation keeps
    going to the original, as it does in Outlook, where nothing was split (an agent splits again if need be).
    The new conversation holds no Outlook id of its own, so the import never routes to it by one; a reply without
    a ``conversationId`` still follows the e-mail it answers (``In-Reply-To``), wherever that e-mail now is.

    Both are done by the model with sudo once the user passed :meth:`_outlook_check_can_rearrange`: members of
    the inbox and email settings editors, within one inbox (the synced mail stays read-only to agents otherwise).
    """
    _inherit = 'epilot.shared.conversation'

    # Read-only: archived by a merge only (no Archive action in the views), and never unarchived.
    active = fields.Boolean(string="Active", default=True, readonly=True)
    merged_into_id = fields.Many2one(
        string="Merged Into",
        comodel_name='epilot.shared.conversation',
        readonly=True,
        copy=False,
        index='btree_not_null',
        ondelete='set null',
        help="The conversation this one was merged into: its e-mails are there, and new mail of its Outlook "
             "conversation goes there.",
    )

    # === CRUD METHODS === #

    def write(self, vals):
        if vals.get('active') and any(self.with_context(active_test=False).mapped('merged_into_id')):
            raise UserError(self.env._("A merged conversation stays merged: its e-mails are in the one it was "
                                       "merged into."))
        return super().write(vals)

    def unlink(self):
        """ Override: the conversations merged into these go with them (empty, they only held the Outlook ids
        that routed mail here). """
        merged = self.sudo().with_context(active_test=False).search([('merged_into_id', 'in', self.ids)]) - self
        result = super().unlink()
        if merged:
            merged.exists().unlink()
        return result

    # === MAIL THREAD === #

    def message_post(self, **kwargs):
        """ Override of `mail`: a merged conversation takes no more posts from users (one opened from an old link):
        its mail and its followers are in the one it was merged into, where the answer belongs. Checked for the
        user also under sudo, as Odoo's chatter posts as the superuser. """
        if self and not self.env.user._is_superuser() and (merged := self.sudo().filtered('merged_into_id')):
            raise UserError(self.env._("This conversation was merged into %(conversation)s: write there.",
                                       conversation=merged[0].merged_into_id.display_name))
        return super().message_post(**kwargs)

    # === ACTION METHODS === #

    def action_outlook_open_merge(self):
        """ The merge wizard for these conversations (from the form: this one, to pick the others). """
        self.check_access('read')
        return {
            'type': 'ir.actions.act_window',
            'name': self.env._("Merge Conversations"),
            'res_model': 'epilot.conversation.merge.wizard',
            'view_mode': 'form',
            'views': [(False, 'form')],
            'target': 'new',
            'context': {'default_conversation_ids': self.ids},
        }

    def action_outlook_open_merged_into(self):
        """ The conversation this one was merged into. """
        self.ensure_one()
        target = self.merged_into_id
        target.check_access('read')
        return {'type': 'ir.actions.act_window', 'res_model': self._name, 'res_id': target.id,
                'views': [(False, 'form')], 'target': 'current'}

    # === BUSINESS METHODS - ROUTING === #

    @api.model
    def _outlook_for_messages(self, inbox, mailbox, messages, partners):
        """ Override: mail of a merged conversation's Outlook conversation (or thread key) goes to the one it was
        merged into. The merged conversations are found by the same searches (archived ones included), which read
        where they point too: no query more. """
        result, created = super(EpilotSharedConversation, self.with_context(active_test=False))._outlook_for_messages(
            inbox, mailbox, messages, partners)
        found = self.browse({conversation.id for conversation in result.values()}) - created
        # Read by those searches already (a stored many2one, prefetched with the fields they ask for). A reply found
        # by its sync record (mail without a conversationId) was not read: one query then.
        found.fetch(['merged_into_id'])
        where = {conversation.id: (conversation.merged_into_id or conversation).id for conversation in found}
        result = {graph_id: self.browse(where.get(conversation.id, conversation.id))
                  for graph_id, conversation in result.items()}
        return result, created.with_env(self.env)

    # === BUSINESS METHODS - MERGE AND SPLIT === #

    def _outlook_check_can_rearrange(self):
        """ Merging and splitting move the team's mail: for those who may work the conversations (members of their
        inbox, email settings editors), on live conversations of one inbox. Checked for the user also under sudo
        (as sending is), the superuser aside.

        :raise AccessError: The user may not change one of them, or is no member of its inbox.
        :raise UserError: They are of several inboxes, or one was merged already.
        """
        if len(self.sudo().inbox_id) > 1:
            raise UserError(self.env._(
                "Only conversations of one shared inbox can be merged: each inbox's Outlook mailbox routes its own "
                "mail."))
        if merged := self.sudo().filtered('merged_into_id'):
            raise UserError(self.env._("%(conversation)s was merged already.", conversation=merged[0].display_name))
        if self.env.is_superuser():
            return
        self.check_access('write')
        user = self.env.user
        for inbox in self.sudo().inbox_id:
            if not inbox._outlook_may_send(user):
                raise AccessError(self.env._(
                    "%(user)s is not a member of the shared inbox %(inbox)s, so cannot merge or split its "
                    "conversations.", user=user.name, inbox=inbox.name))

    def _outlook_lock(self):
        """ Lock the rows of ``self`` for this transaction, in id order. The import updates the conversations it
        adds mail to (:meth:`_outlook_refresh_stats`) in its own transaction: whichever of the two commits second
        fails on the row (REPEATABLE READ) and is retried, so no e-mail lands in a conversation merged meanwhile
        and a merge or split never misses one. """
        self.flush_recordset()
        self.env.cr.execute(SQL("SELECT id FROM %s WHERE id IN %s ORDER BY id FOR NO KEY UPDATE",
                                SQL.identifier(self._table), tuple(self.ids)))

    def _outlook_merge_into(self, target):
        """ Merge the conversations of ``self`` into ``target`` (one of them, or another of the same inbox).

        Moves, as the superuser once the user was checked: the messages (e-mails, notes, tracking), the sync
        records, the files, the followers (once each: a partner following both keeps the target's subscription,
        with the subtypes of both) and the activities. The target keeps its fields, taking the assignee and
        contact of a merged one where it has none. The merged ones are archived and point to the target, and so do
        those merged into them before. Both sides say so in their chatter.

        :param target: An ``epilot.shared.conversation``.
        :return: ``target``.
        :raise UserError: Nothing to merge, or see :meth:`_outlook_check_can_rearrange`.
        """
        target.ensure_one()
        (self | target)._outlook_check_can_rearrange()
        sources = self - target
        if not sources:
            raise UserError(self.env._("Pick at least two conversations to merge."))
        everything = (sources | target).sudo()
        everything._outlook_lock()
        target_sudo, sources_sudo = target.sudo(), sources.sudo()
        model = self._name
        self.env['mail.message'].sudo().search([('model', '=', model), ('res_id', 'in', sources.ids)]).write(
            {'res_id': target.id})
        self.env['epilot.outlook.message'].sudo().search([('conversation_id', 'in', sources.ids)]).write(
            {'conversation_id': target.id})
        self.env['ir.attachment'].sudo().search([('res_model', '=', model), ('res_id', 'in', sources.ids)]).write(
            {'res_id': target.id})
        self.env['mail.activity'].sudo().with_context(active_test=False).search([
            ('res_model', '=', model), ('res_id', 'in', sources.ids)]).write({'res_id': target.id})
        target_sudo._outlook_take_followers(sources_sudo)
        values = {}
        if not target_sudo.user_id and (assignee := sources_sudo.filtered('user_id')[:1].user_id):
            values['user_id'] = assignee.id
        if not target_sudo.partner_id and (contact := sources_sudo.filtered('partner_id')[:1]):
            values.update(partner_id=contact.partner_id.id, correspondent_email=contact.correspondent_email,
                          correspondent_name=contact.correspondent_name)
        if values:
            target_sudo.write(values)
        self.sudo().with_context(active_test=False).search([('merged_into_id', 'in', sources.ids)]).write(
            {'merged_into_id': target.id})
        sources_sudo.write({'active': False, 'merged_into_id': target.id})
        (target_sudo | sources_sudo)._outlook_refresh_stats()

        author_id = self.env.user.partner_id.id
        links = Markup(', ').join(source._get_html_link() for source in sources_sudo)
        target_sudo._message_log(author_id=author_id, body=Markup('<p>%s</p>') % self.env._(
            "Merged %(conversations)s into this conversation.", conversations=links))
        sources_sudo._message_log_batch({source.id: Markup('<p>%s</p>') % self.env._(
            "Merged into %(conversation)s.", conversation=target_sudo._get_html_link()) for source in sources_sudo},
            author_id=author_id)
        return target

    def _outlook_take_followers(self, sources):
        """ The followers of ``sources`` follow ``self`` instead: a partner who follows ``self`` already keeps that
        subscription, with the subtypes of the others added. """
        self.ensure_one()
        Followers = self.env['mail.followers'].sudo()
        mine = {follower.partner_id: follower for follower in Followers.search([
            ('res_model', '=', self._name), ('res_id', '=', self.id)])}
        duplicates = Followers
        for follower in Followers.search([('res_model', '=', self._name), ('res_id', 'in', sources.ids)], order='id'):
            if kept := mine.get(follower.partner_id):
                kept.subtype_ids |= follower.subtype_ids
                duplicates |= follower
            else:
                follower.res_id = self.id
                mine[follower.partner_id] = follower
        duplicates.unlink()

    def _outlook_emails(self):
        """ The e-mails of this conversation (synced from Outlook, sent through it, or of type e-mail: one erased
        in Outlook), and their sync records, as the superuser (agents do not read sync records).

        :return: ``(mail.message, epilot.outlook.message)``
        :rtype: tuple
        """
        self.ensure_one()
        records = self.env['epilot.outlook.message'].sudo().search([('conversation_id', '=', self.id)])
        emails = records.mail_message_id | self.env['mail.message'].sudo().search([
            ('model', '=', self._name), ('res_id', '=', self.id), ('message_type', '=', 'email')])
        return emails, records

    def _outlook_split(self, messages):
        """ Move ``messages``, e-mails of this conversation, to a new conversation of the same inbox, with their
        sync records and files. The new conversation is named after the oldest of them, its correspondent is
        that e-mail's sender (the team's own reply aside), and the followers of this one follow it too.

        :param messages: ``mail.message`` records: e-mails of ``self`` (synced from Outlook, or sent through it).
        :return: The new ``epilot.shared.conversation``.
        :raise UserError: A message is not an e-mail of this conversation, or they are all of its e-mails.
        """
        self.ensure_one()
        self._outlook_check_can_rearrange()
        self_sudo = self.sudo()
        self_sudo._outlook_lock()
        messages = messages.sudo()
        emails, records = self_sudo._outlook_emails()
        if not messages or messages - emails:
            raise UserError(self.env._("Only e-mails of this conversation can be split off it."))
        if not emails - messages:
            raise UserError(self.env._("A conversation keeps at least one e-mail: split off fewer e-mails."))
        ordered = messages.sorted(lambda message: (message.date, message.id))
        oldest = ordered[0]
        mailbox = email_normalize(self_sudo.inbox_id.email or '')
        # The correspondent: the sender of the oldest e-mail not sent by the team (from the shared mailbox).
        sender = next((message for message in ordered
                       if email_normalize(message.email_from or '') not in (mailbox, False)), None)
        name, email = parse_contact_from_email(sender.email_from) if sender else (
            self_sudo.correspondent_name, self_sudo.correspondent_email)
        new = self_sudo.with_context(mail_create_nolog=True, mail_create_nosubscribe=True, mail_notrack=True).create({
            'inbox_id': self_sudo.inbox_id.id,
            'name': oldest.subject or self_sudo.name,
            'partner_id': sender.author_id.id if sender else self_sudo.partner_id.id,
            'correspondent_email': email_normalize(email or '') or email,
            'correspondent_name': name or False,
        })
        messages.write({'res_id': new.id})
        records.filtered(lambda record: record.mail_message_id in messages).write({'conversation_id': new.id})
        self.env['ir.attachment'].sudo().search([
            ('res_model', '=', self._name), ('res_id', '=', self.id), ('id', 'in', messages.attachment_ids.ids),
        ]).write({'res_id': new.id})
        self.env['mail.followers'].sudo().create([{
            'res_model': self._name, 'res_id': new.id, 'partner_id': follower.partner_id.id,
            'subtype_ids': [Command.set(follower.subtype_ids.ids)],
        } for follower in self_sudo.message_follower_ids])
        (self_sudo | new)._outlook_refresh_stats()

        author_id = self.env.user.partner_id.id
        count = len(messages)
        self_sudo._message_log(author_id=author_id, body=Markup('<p>%s</p>') % (self.env._(
            "Split %(count)s e-mails off into %(conversation)s.", count=count, conversation=new._get_html_link(),
        ) if count > 1 else self.env._(
            "Split the e-mail “%(subject)s” off into %(conversation)s.", subject=oldest.subject or self_sudo.name,
            conversation=new._get_html_link())))
        new._message_log(author_id=author_id, body=Markup('<p>%s</p>') % self.env._(
            "Split off from %(conversation)s.", conversation=self_sudo._get_html_link()))
        return new.sudo(False)
