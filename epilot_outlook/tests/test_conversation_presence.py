import json
from datetime import timedelta

from markupsafe import Markup

from odoo import Command, fields
from odoo.addons.bus.models.bus import channel_with_db, dispatch, hashable, json_dump
from odoo.addons.bus.tests.common import WebsocketCase
from odoo.exceptions import AccessError, UserError
from odoo.http import serialize_exception
from odoo.tests import HttpCase, new_test_user, tagged
from odoo.tools import mute_logger

from ..models.epilot_shared_conversation_presence import ANYWAY_KEY, PRESENCE_SUBCHANNEL, SEEN_KEY
from ..tools.user_errors import ReplyConflict
from .common import EpilotOutlookCommon
from .mail_sync_common import SUPPORT
from .send_common import OutlookSendCase

CUSTOMER = 'customer@fabrikam.com'


class PresenceMixin:
    """ Two agents of the support inbox, Ann and Bob, a customer's conversation there, and an agent of no inbox. """

    def make_conversation(self, inbox):
        conversation = self.env['epilot.shared.conversation'].create({
            'name': "Meter reading", 'inbox_id': inbox.id, 'correspondent_email': CUSTOMER,
            'partner_id': self.customer.id,
        })
        conversation.message_post(
            body=Markup('<p>My meter reads 4711.</p>'), message_type='email', email_from=CUSTOMER,
            author_id=self.customer.id)
        return conversation

    def setup_people(self, inbox):
        self.ann = new_test_user(self.env, 'eo_presence_ann', groups='epilot_outlook.group_agent', name="Ann Agent")
        self.bob = new_test_user(self.env, 'eo_presence_bob', groups='epilot_outlook.group_agent', name="Bob Agent")
        self.stranger = new_test_user(self.env, 'eo_presence_stranger', groups='epilot_outlook.group_agent')
        inbox.member_user_ids = [Command.link(self.ann.id), Command.link(self.bob.id)]
        self.customer = self.env['res.partner'].create({'name': "Customer", 'email': CUSTOMER})


@tagged('post_install', '-at_install')
class TestNoDoubleAnswers(PresenceMixin, EpilotOutlookCommon):
    """ Sending a reply when someone else's reply went out since the agent opened the conversation asks first
    (models/epilot_shared_conversation_presence.py), checked on the server where the reply is posted. """

    def setUp(self):
        super().setUp()
        self.setup_people(self.inbox_member)
        self.conversation = self.make_conversation(self.inbox_member)

    def open(self, user):
        """ ``user`` opens the conversation; returns the seen marker its screen sends with a reply. """
        return self.conversation.with_user(user).outlook_announce_presence('viewing', hello=True)['seen_message_id']

    def reply(self, user, seen=None, anyway=False, note=False, **context):
        conversation = self.conversation.with_user(user)
        if seen is not None:
            context[SEEN_KEY] = seen
        if anyway:
            context[ANYWAY_KEY] = True
        return conversation.with_context(**context).message_post(
            body=Markup('<p>Reply of %s</p>' % user.name), message_type='comment',
            subtype_xmlid='mail.mt_note' if note else 'mail.mt_comment',
            partner_ids=[] if note else self.customer.ids)

    def test_a_colleague_replied_since_opening_asks_first(self):
        seen = self.open(self.bob)
        ann_reply = self.reply(self.ann, seen=self.open(self.ann))
        before = self.conversation.message_ids
        with self.assertRaises(ReplyConflict) as caught:
            self.reply(self.bob, seen=seen)
        error = caught.exception
        self.assertIn("Ann Agent replied", error.args[0])
        self.assertIn("Ann Agent replied just now", error.args[0], "says how long ago")
        self.assertIn("Send your reply anyway?", error.args[0])
        self.assertEqual(error.context['message_id'], ann_reply.id)
        self.assertEqual(error.context['author'], "Ann Agent")
        # the web client's dialog is chosen and titled by the serialized error
        serialized = serialize_exception(error)
        self.assertEqual(serialized['context']['exception_class'], 'epilot_outlook.reply_conflict')
        self.assertEqual(serialized['context']['title'], "Someone already replied")
        self.env.invalidate_all()
        self.assertEqual(self.conversation.message_ids, before, "nothing was posted")
        # the question before writing in the full composer is the same
        conflict = self.conversation.with_user(self.bob).outlook_reply_conflict(seen)
        self.assertEqual(conflict['message'], error.args[0])
        self.assertEqual(conflict['message_id'], ann_reply.id)
        ann_reply.sudo().date = fields.Datetime.now() - timedelta(minutes=2)
        self.assertIn("Ann Agent replied 2 minutes ago",
                      self.conversation.with_user(self.bob).outlook_reply_conflict(seen)['message'])
        # Bob confirms: the reply goes out, from the shared mailbox
        message = self.reply(self.bob, seen=seen, anyway=True)
        self.assertEqual(message.author_id, self.bob.partner_id)
        self.assertIn('support@contoso.com', message.email_from)
        # and, having answered after Ann, Bob's next reply asks nothing
        self.reply(self.bob, seen=message.id)

    def test_what_does_not_ask(self):
        seen = self.open(self.bob)
        self.assertFalse(self.conversation.with_user(self.bob).outlook_reply_conflict(seen))
        # a colleague's note is no reply to the customer
        self.reply(self.ann, note=True)
        # the customer writing again is no reply of the team
        self.conversation.message_post(body=Markup('<p>Any news?</p>'), message_type='email', email_from=CUSTOMER,
                                       author_id=self.customer.id)
        self.assertFalse(self.conversation.with_user(self.bob).outlook_reply_conflict(seen))
        first = self.reply(self.bob, seen=seen)
        # one's own reply is no conflict
        self.reply(self.bob, seen=seen)
        # a reply Bob's screen knew of when it opened
        ann_reply = self.reply(self.ann)
        self.reply(self.bob, seen=ann_reply.id)
        # a note of Bob's while Ann replied is not refused either: only replies ask
        self.reply(self.bob, seen=first.id, note=True)
        # without the screen's marker (API callers, Odoo itself) nothing changes
        self.reply(self.bob)

    def test_a_reply_sent_from_outlook_asks_first(self):
        """ A reply sent from Outlook comes in from Sent Items (a sync record in ``sentitems``): it counts. """
        seen = self.open(self.bob)
        sent = self.conversation.sudo().message_post(
            body=Markup('<p>Answered from Outlook.</p>'), message_type='email',
            email_from='Support <support@contoso.com>')
        self.env['epilot.outlook.message'].create({
            'inbox_id': self.inbox_member.id, 'mailbox_email': 'support@contoso.com', 'graph_id': 'AAMk-outlook-reply',
            'folder': 'sentitems', 'conversation_id': self.conversation.id, 'mail_message_id': sent.id,
            'internet_message_id': sent.message_id,
        })
        with self.assertRaises(ReplyConflict) as caught:
            self.reply(self.bob, seen=seen)
        self.assertIn("A reply was sent from Outlook", caught.exception.args[0])
        self.assertFalse(caught.exception.context['author'])

    def test_presence_goes_to_the_conversation_presence_channel(self):
        channel = (self.env.cr.dbname, self.conversation._name, self.conversation.id, PRESENCE_SUBCHANNEL)
        self.env.cr.precommit.run()
        self.env['bus.bus'].sudo().search([]).unlink()
        result = self.conversation.with_user(self.ann).outlook_announce_presence('writing')
        self.assertEqual(result['seen_message_id'], self.conversation.message_ids[:1].id)
        self.env.cr.precommit.run()   # the bus writes its notifications before the commit
        [notification] = self.env['bus.bus'].sudo().search([('channel', '=', json_dump(channel))])
        self.assertEqual(json.loads(notification.message), {
            'type': 'epilot_outlook.presence',
            'payload': {'conversation_id': self.conversation.id, 'user_id': self.ann.id,
                        'partner_id': self.ann.partner_id.id, 'name': "Ann Agent", 'state': 'writing', 'hello': False},
        })
        # Bob opens it: who is here comes back at once, read from the bus (Ann's screen answers too)
        present = self.conversation.with_user(self.bob).outlook_announce_presence('viewing', hello=True)['present']
        self.assertEqual([(payload['name'], payload['state']) for payload in present], [("Ann Agent", 'writing')])
        self.assertEqual(self.conversation.with_user(self.bob).outlook_announce_presence('viewing')['present'], [],
                         "only a hello asks")
        self.conversation.with_user(self.ann).outlook_announce_presence('left')
        self.env.cr.precommit.run()
        self.assertEqual(
            self.conversation.with_user(self.bob).outlook_announce_presence('viewing', hello=True)['present'], [],
            "Ann left; Bob is not his own colleague")

    @mute_logger('odoo.addons.base.models.ir_rule')
    def test_outsiders_neither_announce_nor_ask(self):
        self.env.cr.precommit.run()
        self.env['bus.bus'].sudo().search([]).unlink()
        for method, args in (('outlook_announce_presence', ('viewing',)), ('outlook_reply_conflict', (0,))):
            with self.subTest(method=method), self.assertRaises(AccessError):
                getattr(self.conversation.with_user(self.stranger), method)(*args)
        self.env.cr.precommit.run()
        self.assertFalse(self.env['bus.bus'].sudo().search([]), "nothing went on the bus")
        with self.assertRaises(UserError):
            self.conversation.with_user(self.ann).outlook_announce_presence('hacking')


@tagged('post_install', '-at_install')
class TestPresenceChannel(PresenceMixin, WebsocketCase):
    """ Only members of the inbox join a conversation's presence channel: a websocket of anyone else that asks
    for it gets nothing. Real websockets on Odoo's test server. """

    def setUp(self):
        super().setUp()
        self.inbox = self.env['epilot.shared.inbox'].create({'name': "Support", 'email': 'support@contoso.com'})
        self.setup_people(self.inbox)
        self.conversation = self.make_conversation(self.inbox)
        self.channel = hashable(channel_with_db(self.env.cr.dbname, (self.conversation, PRESENCE_SUBCHANNEL)))

    def connect(self, user):
        session = self.authenticate(user.login, user.login)
        websocket = self.websocket_connect(cookie='session_id=%s' % session.sid)
        self.subscribe(websocket, ['epilot.shared.conversation_presence_%d' % self.conversation.id],
                       self.env['bus.bus']._bus_last_id())
        return websocket

    def subscribers(self):
        return len(dispatch._channels_to_ws.get(self.channel, ()))

    def test_members_only(self):
        self.connect(self.stranger)
        self.assertEqual(self.subscribers(), 0, "an agent of another inbox asked for the channel and got nothing")
        bob_ws = self.connect(self.bob)
        self.assertEqual(self.subscribers(), 1, "a member of the inbox gets it")
        self.conversation.with_user(self.ann).outlook_announce_presence('viewing', hello=True)
        self.trigger_notification_dispatching([(self.conversation, PRESENCE_SUBCHANNEL)])
        notifications = json.loads(bob_ws.recv())
        self.assertEqual([n['message']['payload']['name'] for n in notifications
                          if n['message']['type'] == 'epilot_outlook.presence'], ["Ann Agent"])


@tagged('post_install', '-at_install')
class TestReplyConflictTour(PresenceMixin, HttpCase):
    """ In a browser: the "asks first" dialog, then Don't send (the text stays) and Send anyway. """

    def test_reply_asks_first_in_the_browser(self):
        inbox = self.env['epilot.shared.inbox'].create({'name': "Support", 'email': 'support@contoso.com'})
        self.setup_people(inbox)
        conversation = self.make_conversation(inbox)
        opened = conversation.message_ids[:1]
        ann_reply = conversation.with_user(self.ann).message_post(
            body=Markup("<p>Ann's answer.</p>"), message_type='comment', subtype_xmlid='mail.mt_comment',
            partner_ids=self.customer.ids)
        # Bob's screen opened the conversation before Ann's reply went out: one browser holds one user, so the
        # marker his screen gets on opening is the one it had then.
        Conversation = type(self.env['epilot.shared.conversation'])
        self.patch(Conversation, '_outlook_last_message_id', lambda _self: opened.id)
        # Ann has it open too: Bob's screen, subscribing, gets her announcement from the bus.
        conversation.with_user(self.ann).outlook_announce_presence('viewing', hello=True)
        self.env.cr.precommit.run()
        self.start_tour('/odoo/epilot.shared.conversation/%d' % conversation.id,
                        'epilot_outlook_reply_conflict_tour', login=self.bob.login)
        self.env.invalidate_all()
        chat, full = conversation.message_ids.filtered(
            lambda message: message.author_id == self.bob.partner_id).sorted('id')
        self.assertIn("Your meter reading is booked.", str(chat.body), "Don't send sent nothing; Send anyway once")
        self.assertGreater(chat.id, ann_reply.id)
        self.assertIn("The technician comes on Monday.", str(full.body), "the full composer's Send anyway")
        # Bob's screen said what he was doing, on the conversation's presence channel
        channel = json_dump((self.env.cr.dbname, conversation._name, conversation.id, PRESENCE_SUBCHANNEL))
        self.env.cr.precommit.run()
        payloads = [json.loads(notification.message)['payload']
                    for notification in self.env['bus.bus'].sudo().search([('channel', '=', channel)], order='id')]
        bob_states = [payload['state'] for payload in payloads if payload['user_id'] == self.bob.id]
        self.assertEqual(bob_states[0], 'viewing', "opening says hello")
        self.assertIn('writing', bob_states, "writing a reply is announced")
        writing, left = bob_states.index('writing'), bob_states.index('left')
        self.assertIn('viewing', bob_states[writing:left], "and sending ends it: %s" % bob_states)
        self.assertIn('left', bob_states, "reloading the page says he left (then he is back)")


@tagged('post_install', '-at_install')
class TestNoDoubleAnswersWithOutlook(OutlookSendCase):
    """ Against the sandbox: a colleague answers from Outlook while an agent has the conversation open in Odoo;
    the reply comes in from Sent Items, and the agent's reply asks first. """

    def test_a_reply_sent_from_outlook_asks_first(self):
        conversation, delivered = self.customer_writes(subject='Two answers')
        seen = conversation.with_user(self.agent).outlook_announce_presence('viewing', hello=True)['seen_message_id']
        self.graph('POST', '/users/%s/messages/%s/reply' % (SUPPORT, delivered['immutable_id']),
                   {'comment': 'Answered in Outlook.'})
        self.sandbox.control('DELETE', '/mail/sent')
        self.run_delta(self.address)
        with self.assertRaises(ReplyConflict) as caught:
            self.reply(conversation.with_context(**{SEEN_KEY: seen}))
        self.assertIn("A reply was sent from Outlook", caught.exception.args[0])
        self.run_mail_queue()
        self.assertFalse(self.sent(), "nothing left for the customer")
        self.reply(conversation.with_context(**{SEEN_KEY: seen, ANYWAY_KEY: True}))
        self.run_mail_queue()
        self.assertEqual(len(self.sent()), 1, "sent once the agent confirmed")
