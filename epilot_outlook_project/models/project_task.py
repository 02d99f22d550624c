from odoo import models


class ProjectTask(models.Model):
    """ A task shows the shared inboxes' conversations about it. """
    _name = 'project.task'
    _inherit = ['project.task', 'epilot.conversation.linked.mixin']
    _epilot_conversation_link = 'task_id'
