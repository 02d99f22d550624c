from odoo import fields, models


class ProjectTask(models.Model):
    """ A task shows the shared inboxes' conversations about it. """
    _inherit = ['project.task', 'epilot.conversation.linked.mixin']
    _epilot_conversation_link = 'task_id'

    epilot_conversation_ids = fields.One2many(
        string="Shared Inbox Conversations", comodel_name='epilot.shared.conversation', inverse_name='task_id',
        groups='base.group_user')
