from odoo import fields, models


class EpilotSharedInbox(models.Model):
    _inherit = 'epilot.shared.inbox'

    task_project_id = fields.Many2one(
        string="Project for Tasks", comodel_name='project.project', ondelete='set null',
        help="The project of the tasks agents create from this inbox's conversations. Without one, a task is "
             "a private task of the agent who creates it, to be moved to a project.")
