from odoo import models


class CrmLead(models.Model):
    """ A lead or opportunity shows the shared inboxes' conversations about it. """
    _name = 'crm.lead'
    _inherit = ['crm.lead', 'epilot.conversation.linked.mixin']
    _epilot_conversation_link = 'lead_id'
