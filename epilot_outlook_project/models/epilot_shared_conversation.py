from odoo import Command, fields, models


class EpilotSharedConversation(models.Model):
    """ A conversation can be about a project task: created from it, or linked to one. """
    _inherit = 'epilot.shared.conversation'

    task_id = fields.Many2one(
        string="Task", comodel_name='project.task', index='btree_not_null', tracking=True,
        ondelete='set null', groups='project.group_project_user')

    def action_outlook_create_task(self):
        """ Create the task this conversation is about, in the inbox's project for tasks (else a private task
        of the agent), with the customer and their last e-mail, and open it. Needs Odoo's right to create
        tasks in that project. """
        self.ensure_one()
        project = self.inbox_id.task_project_id
        return self._outlook_create_linked('project.task', 'task_id', {
            'project_id': project.id or False,
            'user_ids': [Command.link(self.env.uid)] if not project else [],
        })
