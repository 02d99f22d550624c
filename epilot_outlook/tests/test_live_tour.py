import logging
import threading
import time

from odoo import SUPERUSER_ID, api
from odoo.addons.bus.models.bus import channel_with_db, dispatch, hashable
from odoo.tests import tagged

from .send_common import OutlookSendCase

_logger = logging.getLogger(__name__)

SHOWN_MARK = 'EPILOT_OUTLOOK_LIVE_SHOWN'


class _ShownCatcher(logging.Handler):
    """ Catches the tour's console line saying when the new e-mail showed (the browser's clock, in ms). """

    def __init__(self):
        super().__init__(logging.INFO)
        self.shown_ms = None

    def emit(self, record):
        message = record.getMessage()
        if SHOWN_MARK in message:
            self.shown_ms = int(message.split(SHOWN_MARK, 1)[1].split()[0])


@tagged('post_install', '-at_install')
class TestLiveTour(OutlookSendCase):
    """ Issue 19, "Live", in Chromium: mail delivered in the sandbox while an agent has the conversation open (then
    the list, then the kanban) shows up without a reload, through the bus. The sync runs in a thread of the test
    as soon as the browser read the form (then the list, the kanban), as the delta cron would on the push
    notification.

    Measured, not asserted (no timed tests): from the delivery in the sandbox, and from the import's commit, to
    the e-mail showing in the open conversation (logged, and kept in ``self.latency`` for the report). """

    def setUp(self):
        super().setUp()
        self.conversation, self.first = self.customer_writes(subject='Live tour: my order',
                                                             body_html='<p>Where is my order?</p>')
        self.conversation.state = 'waiting'   # the team answered; the customer's answer reopens it
        self.address_id = self.address.id
        self.latency = {}

    def _sync_in_thread(self, delivery, channel):
        """ Deliver in the sandbox and run the delta cron in a cursor of the test server's (the browser's
        requests wait for it), then wake the agent's websockets: a test cursor's commit runs the pre-commit
        hooks (the bus rows) but not the post-commit NOTIFY that wakes them in production. """
        started = time.time()
        self.deliver(**delivery)
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            env['epilot.outlook.folder.sync'].search([('address_id', '=', self.address_id)]).write(
                {'last_round_date': False, 'retry_at': False})
            env.ref('epilot_outlook.ir_cron_outlook_delta').method_direct_trigger()
        committed = time.time()
        for websocket in list(dispatch._channels_to_ws.get(channel, ())):
            websocket.trigger_notification_dispatching()
        return started, committed

    def test_delivered_mail_shows_in_the_open_conversation_and_the_list(self):
        Conversation = type(self.env['epilot.shared.conversation'])
        form_read, list_read, kanban_read = threading.Event(), threading.Event(), threading.Event()
        web_read, web_search_read = Conversation.web_read, Conversation.web_search_read
        web_read_group = Conversation.web_read_group

        def patched_web_read(records, *args, **kwargs):
            result = web_read(records, *args, **kwargs)
            if self.conversation.id in records.ids:
                form_read.set()
            return result

        @api.model
        def patched_web_search_read(model, *args, **kwargs):
            result = web_search_read(model, *args, **kwargs)
            if form_done.is_set():
                list_read.set()
            return result

        @api.model
        def patched_web_read_group(model, *args, **kwargs):
            result = web_read_group(model, *args, **kwargs)
            if list_done.is_set():
                kanban_read.set()
            return result

        self.patch(Conversation, 'web_read', patched_web_read)
        self.patch(Conversation, 'web_read_group', patched_web_read_group)
        self.patch(Conversation, 'web_search_read', patched_web_search_read)
        form_done, list_done = threading.Event(), threading.Event()
        times, errors = {}, []
        # Computed here: the thread must not use the test's own cursor.
        channel = hashable(channel_with_db(self.env.cr.dbname, self.agent.partner_id))

        def colleague_and_customer():
            try:
                if not form_read.wait(120):
                    return
                # Let the page finish loading (assets, the chatter, the websocket's subscription): the figure is
                # the live path's, not the first page load's. Not an assertion.
                time.sleep(2)
                times['answer'] = self._sync_in_thread({
                    'subject': 'Re: Live tour: my order', 'body_html': '<p>Live tour: the answer</p>',
                    'in_reply_to': self.first['internetMessageId']}, channel)
                form_done.set()
                if not list_read.wait(120):
                    return
                times['new'] = self._sync_in_thread({
                    'subject': 'Live tour: a new customer', 'sender': 'newcomer@fabrikam.com',
                    'body_html': '<p>Hello</p>'}, channel)
                list_done.set()
                if not kanban_read.wait(120):
                    return
                times['third'] = self._sync_in_thread({
                    'subject': 'Live tour: a third customer', 'sender': 'third@fabrikam.com',
                    'body_html': '<p>Hello</p>'}, channel)
            except Exception as error:   # noqa: BLE001 (raised again in the test's thread)
                _logger.exception("the sync thread failed")
                errors.append(error)
            finally:
                form_done.set()
                list_done.set()

        catcher = _ShownCatcher()
        # The browser's console goes to a child of this test's logger (HttpCase's ChromeBrowser).
        _logger.addHandler(catcher)
        self.addCleanup(_logger.removeHandler, catcher)
        thread = threading.Thread(target=colleague_and_customer, name='live-tour-sync')
        thread.start()
        try:
            self.start_tour('/odoo/action-epilot_outlook.epilot_shared_conversation_action/%d' % self.conversation.id,
                            'epilot_outlook_live_tour', login=self.agent.login)
        finally:
            form_read.set()
            form_done.set()
            list_read.set()
            kanban_read.set()
            thread.join(180)
        if errors:
            raise errors[0]
        self.env.invalidate_all()
        self.assertEqual(self.conversation.state, 'open')
        self.assertTrue(catcher.shown_ms, "the tour logged when the e-mail showed")
        started, committed = times['answer']
        shown = catcher.shown_ms / 1000
        self.latency = {'delivery_to_shown': shown - started, 'commit_to_shown': shown - committed,
                        'delivery_to_commit': committed - started}
        _logger.info("Live: delivery in the sandbox -> shown in the open conversation %.3f s (delivery -> import "
                     "committed %.3f s, commit -> shown %.3f s)", self.latency['delivery_to_shown'],
                     self.latency['delivery_to_commit'], self.latency['commit_to_shown'])
