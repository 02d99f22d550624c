import json
import re
from datetime import timedelta

from odoo import fields, models
from odoo.addons.bus.models.bus import channel_with_db, json_dump
from odoo.exceptions import AccessError, UserError
from odoo.tools import email_normalize
from odoo.tools.misc import _format_time_ago

from ..tools.user_errors import ReplyConflict

# The bus notification a conversation's presence channel carries, and the subchannel of the conversation it goes
# to: ``(conversation, 'epilot_outlook_presence')``, a channel a client cannot name itself (only strings come from
# the web client; ``_build_bus_channel_list`` turns the string below into it, for members only).
PRESENCE_TYPE = 'epilot_outlook.presence'
PRESENCE_SUBCHANNEL = 'epilot_outlook_presence'
PRESENCE_CHANNEL_RE = re.compile(r'^epilot\.shared\.conversation_presence_(\d+)$')
# viewing: the conversation is open; writing: the reply composer holds text; left: closed.
PRESENCE_STATES = ('viewing', 'writing', 'left')
# A colleague not heard of for this long has gone (the web client announces itself every 30 s).
PRESENCE_FRESH = timedelta(seconds=75)

# Context keys of a reply: the newest mail.message the agent's screen knew when it opened the conversation
# (given by outlook_announce_presence), and the agent's answer to "Send anyway?".
SEEN_KEY = 'epilot_outlook_seen_message_id'
ANYWAY_KEY = 'epilot_outlook_send_anyway'


class EpilotSharedConversation(models.Model):
    """ No double answers (issue 19, item 2): who else has a conversation open or is writing a reply, through
    Odoo's bus as Discuss shows "is typing"; and a reply refused, until the agent confirms, when someone else's
    reply went out since the agent opened the conversation. """
    _inherit = 'epilot.shared.conversation'

    # === PRESENCE === #

    def outlook_announce_presence(self, state, hello=False):
        """ Tell the colleagues who have this conversation open that the current user views it, writes a reply
        in it, or left it (bus notification ``epilot_outlook.presence`` on the conversation's presence channel).

        :param str state: ``viewing``, ``writing`` or ``left``.
        :param bool hello: The user just opened it: the others answer with their own state, and who is here
            already comes back at once.
        :return: ``{'seen_message_id': int, 'present': [payload]}``: the newest e-mail or note of the conversation
            now (the web client sends it with a reply, ``SEEN_KEY``, to learn whether someone else replied since);
            with ``hello``, the others' last announcements of the last ``PRESENCE_FRESH``, but who left.
        :raise AccessError: The user may not read the conversation or is not a member of its inbox.
        """
        self.ensure_one()
        if state not in PRESENCE_STATES:
            raise UserError(self.env._("Unknown presence: %(state)s", state=state))
        self._outlook_check_presence_access()
        user = self.env.user
        self.env['bus.bus']._sendone((self, PRESENCE_SUBCHANNEL), PRESENCE_TYPE, {
            'conversation_id': self.id,
            'user_id': user.id,
            'partner_id': user.partner_id.id,
            'name': user.name,
            'state': state,
            'hello': bool(hello),
        })
        return {
            'seen_message_id': self._outlook_last_message_id(),
            'present': self._outlook_present_others() if hello else [],
        }

    def _outlook_present_others(self):
        """ The other users' last presence on this conversation, read back from the bus's own table (it keeps
        notifications for a few minutes): a newcomer sees at once who is here, whether or not their screens answer
        the hello. """
        self.ensure_one()
        channel = json_dump(channel_with_db(self.env.cr.dbname, (self, PRESENCE_SUBCHANNEL)))
        latest = {}
        for row in self.env['bus.bus'].sudo().search_read([
            ('channel', '=', channel), ('create_date', '>=', fields.Datetime.now() - PRESENCE_FRESH),
        ], ['message'], order='id'):
            payload = json.loads(row['message'])['payload']
            latest[payload['user_id']] = payload
        return [payload for user_id, payload in latest.items()
                if user_id != self.env.uid and payload['state'] != 'left']

    def _outlook_check_presence_access(self):
        """ Only who may read the conversation and is a member of its inbox (or an email settings editor) sees
        or announces its presence.

        :raise AccessError: Otherwise.
        """
        self.check_access('read')
        if not self.sudo().inbox_id._outlook_may_send(self.env.user):
            raise AccessError(self.env._(
                "%(user)s is not a member of the shared inbox %(inbox)s.",
                user=self.env.user.name, inbox=self.sudo().inbox_id.name))

    def _outlook_last_message_id(self):
        self.ensure_one()
        return self.env['mail.message'].sudo().search(
            [('model', '=', self._name), ('res_id', '=', self.id)], order='id desc', limit=1).id or 0

    # === NO DOUBLE ANSWERS === #

    def outlook_reply_conflict(self, seen_message_id):
        """ Ask before writing: the question the server would ask if the user sent a reply now (the full
        composer asks it before sending; the send itself checks again).

        :param int seen_message_id: The newest message id the user's screen knew (``outlook_announce_presence``).
        :return: ``False``, or ``{'message': the question, 'title': its title, 'message_id': the reply}``.
        """
        self.ensure_one()
        self._outlook_check_presence_access()
        reply = self._outlook_reply_since(seen_message_id)
        if not reply:
            return False
        error = self._outlook_reply_conflict_error(reply)
        return {'message': error.args[0], 'title': error.title, 'message_id': reply.id}

    def _outlook_reply_since(self, seen_message_id):
        """ The newest reply to the correspondents that went out from this conversation after ``seen_message_id``
        and that the current user did not write: posted in Odoo (a message to the correspondents, from the
        shared mailbox) or synced from the mailbox's Sent Items (sent from Outlook).

        :rtype: mail.message
        """
        self.ensure_one()
        Message_sudo = self.env['mail.message'].sudo()
        newer = Message_sudo.search([
            ('model', '=', self._name), ('res_id', '=', self.id), ('id', '>', int(seen_message_id or 0)),
            ('message_type', 'in', ('comment', 'email', 'email_outgoing')),
        ], order='id desc')
        newer = newer.filtered(lambda message: message.author_id != self.env.user.partner_id)
        if not newer:
            return Message_sudo
        sent_ids = set(self.env['epilot.outlook.message'].sudo().search([
            ('mail_message_id', 'in', newer.ids), ('folder', '=', 'sentitems')]).mail_message_id.ids)
        comment = self.env['ir.model.data']._xmlid_to_res_id('mail.mt_comment')
        mailbox = email_normalize(self.sudo().inbox_id.email or '')
        for message in newer:
            if message.id in sent_ids or (
                    message.message_type == 'comment' and message.subtype_id.id == comment and mailbox
                    and email_normalize(message.email_from or '') == mailbox):
                return message
        return Message_sudo

    def _outlook_reply_conflict_error(self, reply):
        """ The question for ``reply``: who answered, how long ago. """
        author = reply.author_id
        # Sent from Outlook: the author is the mailbox's contact at best; say where it came from.
        name = author.name if author and author.user_ids.filtered(lambda user: not user.share) else None
        age = fields.Datetime.now() - reply.date
        when = _format_time_ago(self.env, age) if age.total_seconds() >= 60 else self.env._("just now")
        if name:
            message = self.env._(
                "%(name)s replied %(when)s, after you opened this conversation. Send your reply anyway?",
                name=name, when=when)
        else:
            message = self.env._(
                "A reply was sent from Outlook %(when)s, after you opened this conversation. Send your reply "
                "anyway?", when=when)
        return ReplyConflict(message, self.env._("Someone already replied"), message_id=reply.id,
                             author=name or False)

    def message_post(self, **kwargs):
        """ Override: a reply to the correspondents from a screen that says when it opened the conversation
        (``SEEN_KEY`` in the context) is refused while someone else's reply went out since, until the agent
        confirms (``ANYWAY_KEY``). Without the key (API callers, Odoo itself) nothing changes.

        :raise ReplyConflict: With the question to ask.
        """
        seen = self.env.context.get(SEEN_KEY)
        if (self and seen is not None and not self.env.context.get(ANYWAY_KEY) and self._outlook_is_reply(kwargs)):
            self.ensure_one()
            if reply := self._outlook_reply_since(seen):
                raise self._outlook_reply_conflict_error(reply)
        return super().message_post(**kwargs)


class IrWebsocket(models.AbstractModel):
    """ The presence channel of a conversation: the web client subscribes to the string
    ``epilot.shared.conversation_presence_<id>``; members of its inbox (and email settings editors) who may read
    it get the conversation's presence subchannel, anyone else nothing. """
    _inherit = 'ir.websocket'

    def _build_bus_channel_list(self, channels):
        channels = list(channels)   # the caller's list stays as it was
        ids = []
        for channel in list(channels):
            if isinstance(channel, str) and (match := PRESENCE_CHANNEL_RE.match(channel)):
                channels.remove(channel)
                ids.append(int(match[1]))
        if ids and self.env.uid and not self.env.user.share:
            Conversation = self.env['epilot.shared.conversation']
            for conversation in Conversation.browse(ids).exists()._filtered_access('read'):
                if conversation.sudo().inbox_id._outlook_may_send(self.env.user):
                    channels.append((conversation, PRESENCE_SUBCHANNEL))
        return super()._build_bus_channel_list(channels)

