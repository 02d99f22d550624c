from markupsafe import Markup

from odoo import api, fields, models
from odoo.exceptions import AccessError


class EpilotSharedConversation(models.Model):
    """ From a conversation to the Odoo record it is about (a lead, a task…): the bridge modules
    (``epilot_outlook_<app>``) add the link field and the button, this file does the work once. """
    _inherit = 'epilot.shared.conversation'

    def _outlook_create_linked(self, model, link_field, values):
        """ Create the ``model`` record this conversation is about, as the current user (their rights on
        ``model`` apply), link it through ``link_field``, say so in both chatters and open the new record.

        :param str model: ``crm.lead``, ``project.task``…
        :param str link_field: The conversation's many2one to ``model``.
        :param dict values: The record's values beyond the conversation's own (:meth:`_outlook_linked_values`).
        :return: The window action of the new record.
        :rtype: dict
        """
        self.ensure_one()
        self.check_access('write')   # the members of the inbox (record rules)
        record = self.env[model].create({**self._outlook_linked_values(), **values})
        self[link_field] = record
        self._outlook_log_link(record)
        return {
            'type': 'ir.actions.act_window',
            'res_model': model,
            'res_id': record.id,
            'views': [(False, 'form')],
            'target': 'current',
        }

    def _outlook_linked_values(self):
        """ What a record made from this conversation starts with: its subject, the customer, and the last
        e-mail the customer sent (the record is usually about it). """
        self.ensure_one()
        last_sudo = self._outlook_last_received().mail_message_id   # _outlook_create_linked checked the access
        return {
            'name': self.name,
            'partner_id': self.partner_id.id,
            'description': last_sudo.body or False,
        }

    def _outlook_log_link(self, record):
        """ Say in both chatters that ``record`` is linked to this conversation (links both ways). """
        self._message_log(body=Markup(self.env._("%(record)s linked to this conversation.")) % {
            'record': record._get_html_link()})
        if hasattr(record, '_message_log'):
            record._message_log(body=Markup(self.env._("Shared inbox conversation %(conversation)s linked.")) % {
                'conversation': self._get_html_link()})


class EpilotConversationLinkedMixin(models.AbstractModel):
    """ A record conversations can be about (a lead, a task…): how many of the shared inboxes' conversations
    link to it, and a button to open them. The model names its conversations' link field in
    ``_epilot_conversation_link``. """
    _name = 'epilot.conversation.linked.mixin'
    _description = "Record Linked to Shared Inbox Conversations"
    _epilot_conversation_link = None

    epilot_conversation_count = fields.Integer(
        string="Shared Inbox Conversation Count", compute='_compute_epilot_conversation_count',
        groups='base.group_user')   # portal users may read contacts, not conversations

    @api.depends_context('uid')
    def _compute_epilot_conversation_count(self):
        # As the user: an agent counts the conversations of their own inboxes only; a user without a shared inbox
        # group (a salesperson, a project user) may read none, and their contact, lead or task form still opens.
        Conversation = self.env['epilot.shared.conversation']
        counts = dict(Conversation._read_group(
            [(self._epilot_conversation_link, 'in', self.ids)], [self._epilot_conversation_link], ['__count'],
        )) if Conversation.has_access('read') else {}
        for record in self:
            record.epilot_conversation_count = counts.get(record, 0)

    def action_view_epilot_conversations(self):
        """ The shared inboxes' conversations about this record (those the user may read: the action is only a
        domain, their rules decide). For internal users who may read the record; portal and public users have no
        shared inboxes.

        :raise AccessError: Otherwise.
        """
        self.ensure_one()
        if not self.env.user._is_internal():
            raise AccessError(self.env._("Only internal users see the shared inboxes' conversations."))
        self.check_access('read')
        action = self.env['ir.actions.act_window']._for_xml_id('epilot_outlook.epilot_shared_conversation_action')
        action['domain'] = [(self._epilot_conversation_link, '=', self.id)]
        action['context'] = {'create': False}
        return action
