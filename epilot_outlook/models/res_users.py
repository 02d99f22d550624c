from odoo import models


class ResUsers(models.Model):
    _inherit = 'res.users'

    def _outlook_land_on_conversations(self):
        """ Agents start their day in their inboxes: a user made a member of a shared inbox, who has no home
        action of their own, lands on the conversations after login (Odoo's default is Discuss). A home action
        they chose is kept. """
        action = self.env.ref('epilot_outlook.epilot_shared_conversation_action', raise_if_not_found=False)
        if action:
            self.sudo().filtered(lambda user: not user.action_id and not user.share).action_id = action.id
