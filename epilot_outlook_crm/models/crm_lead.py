from odoo import fields, models


class CrmLead(models.Model):
    """ A lead or opportunity shows the shared inboxes' conversations about it. """
    _inherit = ['crm.lead', 'epilot.conversation.linked.mixin']
    _epilot_conversation_link = 'lead_id'

    epilot_conversation_ids = fields.One2many(
        string="Shared Inbox Conversations", comodel_name='epilot.shared.conversation', inverse_name='lead_id',
        groups='base.group_user')
