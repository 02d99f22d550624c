from odoo import fields, models


class EpilotSharedConversation(models.Model):
    """ A conversation can be about a CRM lead or opportunity: created from it, or linked to one. """
    _inherit = 'epilot.shared.conversation'

    lead_id = fields.Many2one(
        string="Lead/Opportunity", comodel_name='crm.lead', index='btree_not_null', tracking=True,
        ondelete='set null', groups='sales_team.group_sale_salesman')

    def action_outlook_create_lead(self):
        """ Create the lead (or opportunity, as the salesperson's CRM settings say) this conversation is about,
        with the customer, their address and their last e-mail, and open it. Needs Odoo's right to create leads. """
        self.ensure_one()
        return self._outlook_create_linked('crm.lead', 'lead_id', {
            'email_from': self.partner_id.email or self.correspondent_email or False,
            'contact_name': False if self.partner_id else self.correspondent_name or False,
        })
