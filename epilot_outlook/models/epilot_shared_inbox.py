from datetime import timedelta

from odoo import api, fields, models
from odoo.fields import Domain


# E-mails erased per step of the retention cron (each step commits).
ERASE_BATCH = 500


class EpilotSharedInbox(models.Model):
    """ A team inbox that agents work from.

    It is fed by Outlook email addresses but does not depend on them: removing an address, or the whole
    Outlook connection, leaves the inbox and its history in place. Agents see only the inboxes they are a
    member of (see `security/epilot_outlook_security.xml`).
    """
    _name = 'epilot.shared.inbox'
    _description = "Shared Inbox"
    _inherit = ['epilot.outlook.address.mixin', 'mail.thread', 'mail.activity.mixin']
    _order = 'name, id'

    name = fields.Char(string="Name", required=True, tracking=True)
    email = fields.Char(tracking=True)
    active = fields.Boolean(string="Active", default=True, tracking=True)
    company_id = fields.Many2one(
        string="Company",
        comodel_name='res.company',
        default=lambda self: self.env.company,
        index=True,
    )
    member_user_ids = fields.Many2many(
        string="Members",
        comodel_name='res.users',
        relation='epilot_shared_inbox_res_users_rel',
        column1='inbox_id',
        column2='user_id',
        domain=[('share', '=', False)],
        help="The agents who work in this inbox. Agents only see the inboxes they are a member of.",
    )
    outlook_address_ids = fields.One2many(
        string="Outlook Addresses",
        comodel_name='epilot.outlook.email.address',
        inverse_name='shared_inbox_id',
        groups='epilot_outlook.group_email_setting_edit',  # Agents have no access to the Outlook setup.
    )
    create_partners = fields.Boolean(
        string="Create Contacts",
        help="Create a contact for every unknown correspondent of this inbox. When off, e-mails from unknown "
             "addresses show the address and no contact is created.",
    )
    conversation_ids = fields.One2many(
        string="Conversations",
        comodel_name='epilot.shared.conversation',
        inverse_name='inbox_id',
    )
    conversation_count = fields.Integer(string="Conversation Count", compute='_compute_conversation_count')
    unread_conversation_count = fields.Integer(
        string="Unread Conversations", compute='_compute_unread_conversation_count')
    retention_days = fields.Integer(
        string="Delete Mail Older Than (Days)",
        default=0,
        tracking=True,
        help="Synced e-mails older than this many days are deleted from Odoo every night (never from Outlook), "
             "with their attachments; conversations left empty go too. 0 keeps mail forever.",
    )
    # One menu entry per inbox, shown to its members only (see ir.ui.menu's _load_menus_blacklist).
    menu_id = fields.Many2one(
        string="Menu", comodel_name='ir.ui.menu', readonly=True, copy=False, ondelete='set null')
    menu_action_id = fields.Many2one(
        string="Menu Action", comodel_name='ir.actions.act_window', readonly=True, copy=False, ondelete='set null')

    _retention_days_positive = models.Constraint(
        'CHECK (retention_days >= 0)', "The retention period cannot be negative (0 keeps mail forever).")

    # === COMPUTE METHODS === #

    def _compute_conversation_count(self):
        counts = dict(self.env['epilot.shared.conversation']._read_group(
            [('inbox_id', 'in', self.ids)], ['inbox_id'], ['__count']))
        for inbox in self:
            inbox.conversation_count = counts.get(inbox, 0)

    def _compute_unread_conversation_count(self):
        counts = dict(self.env['epilot.shared.conversation']._read_group(
            [('inbox_id', 'in', self.ids), ('is_unread', '=', True)], ['inbox_id'], ['__count']))
        for inbox in self:
            inbox.unread_conversation_count = counts.get(inbox, 0)

    # === CRUD METHODS === #

    @api.model_create_multi
    def create(self, vals_list):
        inboxes = super().create(vals_list)
        inboxes._outlook_sync_menus()
        inboxes.member_user_ids._outlook_land_on_conversations()
        return inboxes

    def write(self, vals):
        members_before = {inbox: inbox.member_user_ids for inbox in self} if 'member_user_ids' in vals else {}
        result = super().write(vals)
        if {'name', 'active', 'member_user_ids'} & set(vals):
            self._outlook_sync_menus()
        for inbox, before in members_before.items():
            if removed := before - inbox.member_user_ids:
                inbox._outlook_unsubscribe(removed)
            (inbox.member_user_ids - before)._outlook_land_on_conversations()
        return result

    def unlink(self):
        menus_sudo, actions_sudo = self.sudo().menu_id, self.sudo().menu_action_id
        result = super().unlink()
        menus_sudo.unlink()
        actions_sudo.unlink()
        return result

    # === ACTION METHODS === #

    def action_open_conversations(self):
        self.ensure_one()
        return self._outlook_conversations_action_values()

    # === BUSINESS METHODS - MEMBERS === #

    def _outlook_may_send(self, user):
        """ Whether ``user`` may make mail leave as this inbox's mailbox: its members, email settings editors,
        and Odoo itself (the superuser). The one rule the composer, ``message_post`` and the mail queue apply.

        :param user: A ``res.users`` record (possibly empty: nobody).
        :rtype: bool
        """
        self.ensure_one()
        if not user:
            return False
        return user._is_superuser() or user in self.sudo().member_user_ids \
            or user.has_group('epilot_outlook.group_email_setting_edit')

    def _outlook_unsubscribe(self, users):
        """ ``users`` left the inbox: they stop following its conversations, so no reply of the team (body and
        files) reaches them any more (they could no longer read them in Odoo either). """
        partners = users.partner_id
        if partners:
            conversations = self.env['epilot.shared.conversation'].sudo()._search([('inbox_id', 'in', self.ids)])
            self.env['mail.followers'].sudo().search([
                ('res_model', '=', 'epilot.shared.conversation'), ('partner_id', 'in', partners.ids),
                ('res_id', 'in', conversations),
            ]).unlink()

    # === BUSINESS METHODS - MENUS === #

    def _outlook_conversations_action_values(self):
        self.ensure_one()
        return {
            'type': 'ir.actions.act_window',
            'name': self.name,
            'res_model': 'epilot.shared.conversation',
            'view_mode': 'list,kanban,form',
            'domain': [('inbox_id', '=', self.id)],
            'context': {'default_inbox_id': self.id, 'search_default_filter_not_closed': 1},
        }

    def _outlook_sync_menus(self):
        """ Keep one menu entry per active inbox under *Inboxes*, opening its conversations.

        Menus are static records: each inbox owns one (and its window action), named after it. Who sees it is
        decided per user in ``ir.ui.menu._load_menus_blacklist`` (members only); the web client's menu cache
        is per user and is cleared here when the membership changes. The unread counts are not in the menu's
        name (menus are cached): the web client asks :meth:`get_inbox_menu_counters` for them.
        """
        parent = self.env.ref('epilot_outlook.epilot_shared_inbox_menu_inboxes', raise_if_not_found=False)
        if not parent:
            return   # the module's data is still loading; the menus are made at the end of the install
        for inbox in self.sudo().with_context(active_test=False):
            values = inbox._outlook_conversations_action_values()
            action_values = {
                'name': inbox.name, 'res_model': values['res_model'], 'view_mode': values['view_mode'],
                'domain': str(values['domain']), 'context': str(values['context']),
            }
            made = []
            if inbox.menu_action_id:
                inbox.menu_action_id.write(action_values)
            else:
                inbox.menu_action_id = self.env['ir.actions.act_window'].sudo().create(action_values)
                made.append(('epilot_outlook.shared_inbox_%d_action' % inbox.id, inbox.menu_action_id))
            menu_values = {'name': inbox.name, 'active': inbox.active}
            if inbox.menu_id:
                inbox.menu_id.write(menu_values)
            else:
                inbox.menu_id = self.env['ir.ui.menu'].sudo().create({
                    **menu_values, 'parent_id': parent.id, 'sequence': 10,
                    'action': 'ir.actions.act_window,%d' % inbox.menu_action_id.id,
                })
                made.append(('epilot_outlook.shared_inbox_%d_menu' % inbox.id, inbox.menu_id))
            # Owned by the module (noupdate: an upgrade keeps them), so that uninstalling it removes them.
            self.env['ir.model.data'].sudo()._update_xmlids([
                {'xml_id': xml_id, 'record': record, 'noupdate': True} for xml_id, record in made])
        self.env.registry.clear_cache()   # load_menus is cached per user

    @api.model
    def _outlook_sync_all_menus(self):
        self.sudo().with_context(active_test=False).search([])._outlook_sync_menus()

    @api.model
    def _outlook_menu_hidden_ids(self):
        """ The inbox menus the current user must not see: those of inboxes they are not a member of. """
        inboxes_sudo = self.sudo().with_context(active_test=False).search([('menu_id', '!=', False)])
        hidden = inboxes_sudo.filtered(lambda inbox: self.env.user not in inbox.member_user_ids).menu_id
        if not inboxes_sudo.filtered('active').menu_id - hidden:
            # A member of no inbox: no empty "Inboxes" menu (Conversations says what to do next).
            hidden |= self.env.ref('epilot_outlook.epilot_shared_inbox_menu_inboxes')
        return hidden.ids

    @api.model
    def get_inbox_menu_counters(self):
        """ The unread conversations of each inbox menu the user sees: ``{menu_id: count}`` (for the web
        client's menu badges).

        :rtype: dict
        """
        inboxes = self.search([('member_user_ids', 'in', self.env.uid), ('menu_id', '!=', False)])
        return {inbox.menu_id.id: inbox.unread_conversation_count for inbox in inboxes}

    # === CRON METHODS === #

    @api.model
    def _cron_outlook_apply_retention(self):
        """ Erase synced mail older than each inbox's retention period, in batches, committing after each.

        Erased e-mails keep a tombstone (their Outlook id), so backfill, delta and reconciliation do not import
        them again while they are still in Outlook's window.
        """
        Message_sudo = self.env['epilot.outlook.message'].sudo()
        cron = self.env['ir.cron']
        for inbox in self.sudo().search([('retention_days', '>', 0)]):
            domain = Domain([
                ('inbox_id', '=', inbox.id), ('erased', '=', False), ('mail_message_id', '!=', False),
                ('date', '<', fields.Datetime.now() - timedelta(days=inbox.retention_days)),
            ])
            while records := Message_sudo.search(domain, order='date, id', limit=ERASE_BATCH):
                records._outlook_erase()
                if not cron._commit_progress(len(records), remaining=Message_sudo.search_count(domain)):
                    return

