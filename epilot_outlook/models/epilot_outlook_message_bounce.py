from collections import defaultdict

from odoo import api, fields, models
from odoo.addons.mail.tools.discuss import Store

from ..outlook_core import bounces
from ..tools.explain import explain_bounce

# Odoo's failure type for each reason: the chatter's own words when ours are not shown (mail.notification).
FAILURE_TYPE = {'recipient_unknown': 'mail_email_invalid', 'domain_unknown': 'mail_email_invalid'}


class EpilotOutlookMessage(models.Model):
    """ Non-delivery reports and automatic replies in the import (docs/microsoft-graph.md §3.3.1).

    The plain layer tells them apart (``OutlookItem.kind``). An NDR whose bounced e-mail the inbox shows is not
    an e-mail of its own: that e-mail is marked as not delivered to the refused recipients (Odoo's
    ``mail.notification`` in *bounce*, the red envelope with the reason in the chatter), and the NDR is kept as
    a known, hidden sync record of the same conversation. An NDR Odoo cannot tie is imported as any e-mail. An
    automatic reply is shown, marked, and is never taken for the customer's answer (the conversation's status
    and dates: :meth:`epilot.shared.conversation._outlook_refresh_stats`).
    """
    _inherit = 'epilot.outlook.message'

    kind = fields.Selection(
        string="Kind",
        selection=[('ndr', "Non-Delivery Report"), ('auto_reply', "Automatic Reply")],
        help="Mail no person wrote: a report that an e-mail was not delivered, or an automatic reply "
             "(out of office). Neither reopens a conversation nor counts as the customer's answer.",
    )
    bounced_mail_message_id = fields.Many2one(
        string="Bounced E-mail", comodel_name='mail.message', ondelete='set null', index='btree_not_null',
        help="The e-mail this non-delivery report says was not delivered.",
    )

    # === BUSINESS METHODS - IMPORT === #

    @api.model
    def _outlook_row(self, address, graph_id, folder, **values):
        return {'kind': None, 'bounced_mail_message_id': None,
                **super()._outlook_row(address, graph_id, folder, **values)}

    @api.model
    def _outlook_row_of(self, address, message, **values):
        return super()._outlook_row_of(address, message, **{'kind': message.kind or None, **values})

    @api.model
    def _outlook_import(self, address, messages, bodies=None):
        """ Tie the page's NDRs to the e-mails they report, then import the rest as usual (see the class).

        Costs nothing on a page without NDRs; with some, a few queries for the whole page.
        """
        tied = self._outlook_tie_ndrs(address, messages)
        if not tied:
            return super()._outlook_import(address, messages, bodies)
        keep = [index for index, message in enumerate(messages) if message.graph_id not in tied]
        rest = [messages[index] for index in keep]
        count = super()._outlook_import(address, rest, _BodiesOf(bodies, keep) if bodies is not None else None) \
            if rest else 0
        return count + len(tied)

    @api.model
    def _outlook_tie_ndrs(self, address, messages):
        """ Record the new NDRs of ``messages`` whose bounced e-mail ``address``'s inbox shows, and mark those
        e-mails as not delivered; reports of Odoo's own mail are recorded hidden, as that mail is.

        :return: ``{graph_id: the NDR}`` of the NDRs recorded here.
        :rtype: dict
        """
        ndrs = {message.graph_id: message for message in messages
                if message.kind == 'ndr' and message.bounced_message_id}
        if not ndrs:
            return {}
        inbox = address.shared_inbox_id
        known = self._outlook_known(inbox, ndrs)
        pending = [message for graph_id, message in ndrs.items() if graph_id not in known]
        bounced, own = self._outlook_bounced_mail(inbox, {message.bounced_message_id for message in pending})
        # Reports of mail Odoo sent for itself (a password reset) are kept apart like that mail: known, never shown.
        hidden = [message for message in pending if message.bounced_message_id in own]
        if hidden:
            self._outlook_insert([self._outlook_row_of(address, message, odoo_own_mail=True, subject=None)
                                  for message in hidden])
        tied = {message.graph_id: message for message in pending if message.bounced_message_id in bounced}
        if not tied:
            return {message.graph_id: message for message in hidden}
        Conversation = self.env['epilot.shared.conversation']
        self._outlook_insert([self._outlook_row_of(
            address, message, bounced_mail_message_id=bounced[message.bounced_message_id].id,
            conversation_id=bounced[message.bounced_message_id].res_id
            if bounced[message.bounced_message_id].model == Conversation._name else None,
        ) for message in tied.values()])
        self._outlook_mark_bounced([(message, bounced[message.bounced_message_id]) for message in tied.values()])
        return {**tied, **{message.graph_id: message for message in hidden}}

    @api.model
    def _outlook_bounced_mail(self, inbox, message_ids):
        """ The e-mails ``inbox`` shows under these Message-Ids: synced (a sent copy), sent by Odoo (the outbox
        knows Outlook's Message-Id before the sent copy is synced), or Odoo's own Message-Id.

        :return: ``{Message-Id: mail.message}``, and the Message-Ids of mail Odoo sent for itself.
        :rtype: tuple
        """
        if not message_ids:
            return {}, set()
        found, own = {}, set()
        for record in self.search_fetch([
            ('inbox_id', '=', inbox.id), ('internet_message_id', 'in', list(message_ids)),
            '|', ('mail_message_id', '!=', False), ('odoo_own_mail', '=', True),
        ], ['internet_message_id', 'mail_message_id', 'odoo_own_mail'], order='id'):
            if record.odoo_own_mail:
                own.add(record.internet_message_id)
            else:
                found.setdefault(record.internet_message_id, record.mail_message_id)
        Message = self.env['mail.message'].sudo()
        if missing := message_ids - set(found) - own:
            shown, sent_own = self.env['epilot.outlook.outbox']._outlook_sent_by_odoo(inbox, missing)
            found.update({message_id: Message.browse(values['mail_message_id']) for message_id, values in
                          shown.items()})
            own |= sent_own
        if missing := message_ids - set(found) - own:
            Conversation = self.env['epilot.shared.conversation'].sudo()
            for message in Message.search([
                ('message_id', 'in', list(missing)), ('model', '=', Conversation._name),
                ('res_id', 'in', Conversation._search([('inbox_id', '=', inbox.id)])),
            ], order='id'):
                found.setdefault(message.message_id, message)
        return found, own

    @api.model
    def _outlook_mark_bounced(self, pairs):
        """ Mark e-mails as not delivered, the way Odoo marks a bounce: each refused recipient's
        ``mail.notification`` in *bounce* with the reason (one search, one create for the batch), and the authors
        told through the bus.

        :param list pairs: ``(NDR, bounced mail.message)`` tuples.
        """
        Notification = self.env['mail.notification'].sudo()
        mail_messages = self.env['mail.message'].sudo().browse({message.id for _ndr, message in pairs})
        existing = defaultdict(lambda: Notification)
        for notification in Notification.search([('mail_message_id', 'in', mail_messages.ids)]):
            existing[notification.mail_message_id.id] |= notification
        emails = {email for ndr, _message in pairs for email in ndr.bounce_recipients}
        partners = {}
        if emails:
            for partner in self.env['res.partner'].sudo().search([('email_normalized', 'in', list(emails))],
                                                                  order='id'):
                partners.setdefault(partner.email_normalized, partner)
        to_create = []
        for ndr, message in pairs:
            values = {
                'notification_status': 'bounce',
                'failure_type': FAILURE_TYPE.get(ndr.bounce_reason, 'mail_bounce'),
                'failure_reason': ndr.bounce_status or False,
                'outlook_bounce_reason': ndr.bounce_reason or 'other',
            }
            notifications = existing[message.id]
            if not ndr.bounce_recipients:   # the report names nobody: the e-mail as a whole did not go out
                if email_notifications := notifications.filtered(lambda n: n.notification_type == 'email'):
                    email_notifications.write(values)
                else:
                    to_create.append({'mail_message_id': message.id, 'notification_type': 'email',
                                      'author_id': message.author_id.id, 'is_read': True, **values})
                continue
            taken = set(notifications.res_partner_id.ids)
            for email in ndr.bounce_recipients:
                match = notifications.filtered(lambda n: n.res_partner_id.email_normalized == email
                                               or (n.mail_email_address or '').lower() == email)
                if match:
                    match.write(values)
                    continue
                partner = partners.get(email)
                if partner and partner.id in taken:
                    partner = None
                if partner:
                    taken.add(partner.id)
                to_create.append({
                    'mail_message_id': message.id, 'notification_type': 'email', 'author_id': message.author_id.id,
                    'res_partner_id': partner.id if partner else False,
                    'mail_email_address': False if partner else email, 'is_read': True, **values,
                })
        if to_create:
            Notification.create(to_create)
        mail_messages._notify_message_notification_update()


class MailNotification(models.Model):
    _inherit = 'mail.notification'

    outlook_bounce_reason = fields.Selection(
        string="Outlook Bounce Reason", selection=[(reason, reason) for reason in bounces.REASONS],
        help="Why Microsoft 365 reported the e-mail as not delivered (a code, worded in the chatter).",
    )

    def _to_store_defaults(self, target):
        # The reason in the reader's language, for the chatter's delivery popover (static/src/bounces/).
        return super()._to_store_defaults(target) + [Store.Attr(
            'outlook_bounce_text',
            value=lambda notification: explain_bounce(
                notification.env, notification.outlook_bounce_reason, notification.failure_reason),
            predicate=lambda notification: bool(notification.outlook_bounce_reason),
        )]


class MailMessage(models.Model):
    _inherit = 'mail.message'

    outlook_auto_reply = fields.Boolean(
        string="Automatic Reply", readonly=True,
        help="An automatic reply (out of office) synced from Outlook: shown, marked, never the customer's answer.",
    )

    def _to_store_defaults(self, target):
        return super()._to_store_defaults(target) + ['outlook_auto_reply']


class _BodiesOf:
    """ The bodies of some messages of a page (``keep``: their indexes), from the page's
    :class:`tools.sanitize.SanitizedBodies`. """

    def __init__(self, bodies, keep):
        self._bodies, self._keep = bodies, keep

    def result(self):
        bodies = self._bodies.result()
        return [bodies[index] for index in self._keep]
