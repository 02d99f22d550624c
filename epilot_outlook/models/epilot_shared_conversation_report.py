from odoo import fields, models, tools
from odoo.tools import SQL


class EpilotSharedConversationReport(models.Model):
    """ Response times, for the inbox lead's Monday look (issue 19, item 6): one row per conversation a customer
    started or wrote in, with its inbox, agent (the assignee), the day the customer first wrote, the business
    hours to the first response and to the closing, and counts to add up (answered, closed, late, overdue now).

    A view on ``epilot_shared_conversation`` (``_auto = False``, like Odoo's reporting models): nothing is stored
    twice, and what depends on the clock (late while unanswered, overdue) is decided by the query, with the
    database's clock. Who sees which rows mirrors the conversations' record rules
    (``security/epilot_outlook_security.xml``): an agent sees their inboxes' rows only.
    """
    _name = 'epilot.shared.conversation.report'
    _description = "Shared Inbox Response Times"
    _auto = False
    _order = 'date desc, id desc'
    _rec_name = 'name'

    conversation_id = fields.Many2one(
        string="Conversation", comodel_name='epilot.shared.conversation', readonly=True)
    name = fields.Char(string="Subject", readonly=True)
    inbox_id = fields.Many2one(string="Shared Inbox", comodel_name='epilot.shared.inbox', readonly=True)
    company_id = fields.Many2one(string="Company", comodel_name='res.company', readonly=True)
    user_id = fields.Many2one(string="Agent", comodel_name='res.users', readonly=True)
    partner_id = fields.Many2one(string="Correspondent", comodel_name='res.partner', readonly=True)
    state = fields.Selection(
        string="Status", readonly=True,
        selection=lambda self: self.env['epilot.shared.conversation']._fields['state'].selection)
    date = fields.Datetime(string="Received", readonly=True, help="When the customer's first e-mail arrived.")
    first_response_date = fields.Datetime(string="First Response", readonly=True)
    closed_date = fields.Datetime(string="Closed On", readonly=True)
    first_response_hours = fields.Float(
        string="First Response Time", readonly=True, aggregator='avg',
        help="Business hours to the team's first answer (average over the answered conversations).")
    resolution_hours = fields.Float(
        string="Resolution Time", readonly=True, aggregator='avg',
        help="Business hours to the closing (average over the closed conversations).")
    conversation_count = fields.Integer(string="Conversations", readonly=True, aggregator='sum')
    email_count = fields.Integer(string="E-mails", readonly=True, aggregator='sum')
    answered_count = fields.Integer(string="Answered", readonly=True, aggregator='sum')
    closed_count = fields.Integer(string="Closed", readonly=True, aggregator='sum')
    first_response_late_count = fields.Integer(
        string="First Response Late", readonly=True, aggregator='sum',
        help="Answered after the inbox's first response target, or still unanswered past it.")
    resolution_late_count = fields.Integer(
        string="Resolution Late", readonly=True, aggregator='sum',
        help="Closed after the inbox's resolution target, or still open past it.")
    overdue_count = fields.Integer(
        string="Overdue", readonly=True, aggregator='sum', help="Not closed and past a deadline now.")

    def _query(self):
        now = SQL("(NOW() AT TIME ZONE 'UTC')")
        return SQL(
            """SELECT c.id, c.id AS conversation_id, c.name, c.inbox_id, c.company_id, c.user_id, c.partner_id,
                      c.state, c.first_received_date AS date, c.first_response_date, c.closed_date,
                      c.first_response_hours, c.resolution_hours, 1 AS conversation_count, c.email_count,
                      (c.first_response_date IS NOT NULL)::int AS answered_count,
                      (c.state = 'closed')::int AS closed_count,
                      COALESCE(c.first_response_deadline < COALESCE(c.first_response_date, %(now)s), FALSE)::int
                          AS first_response_late_count,
                      COALESCE(c.resolution_deadline < COALESCE(c.closed_date, %(now)s), FALSE)::int
                          AS resolution_late_count,
                      COALESCE(c.state != 'closed' AND (c.first_response_date IS NULL
                                                        AND c.first_response_deadline < %(now)s
                                                        OR c.resolution_deadline < %(now)s), FALSE)::int
                          AS overdue_count
                 FROM epilot_shared_conversation AS c
                WHERE c.first_received_date IS NOT NULL""",
            now=now)

    def init(self):
        tools.drop_view_if_exists(self.env.cr, self._table)
        self.env.cr.execute(SQL("CREATE OR REPLACE VIEW %s AS (%s)", SQL.identifier(self._table), self._query()))
