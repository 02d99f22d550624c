import json
from datetime import timedelta
from unittest.mock import patch

from odoo import fields
from odoo.tests import tagged

from ..outlook_core import const
from ..outlook_core.graph import GraphClient
from .mail_sync_common import BILLING, SUPPORT, OutlookMailSyncCase


class OutlookPushCase(OutlookMailSyncCase):
    """ A connected connection whose sandbox accepts subscriptions on shared mailboxes (its lenient mode) and
    delivers notifications to the Odoo test server. Every test ends with :meth:`assertInSync`. """

    lenient = True

    def setUp(self):
        super().setUp()
        self.sandbox.control('POST', '/subscriptions/faults', {'settings': {
            'shared_mailbox_subscriptions': 'lenient' if self.lenient else 'documented',
            'delivery_batch_window_s': 0.1, 'delivery_backoff_base_s': 0.2, 'delivery_max_attempts': 3,
        }})
        self.subscription_cron = self.env.ref('epilot_outlook.ir_cron_outlook_subscriptions')

    # --- acting -----------------------------------------------------------------------------------------

    def live_address(self, email=SUPPORT):
        """ An address backfilled and subscribed (the subscription cron ran, Graph called the webhook back). """
        address = self.add_address(email)
        self.run_backfill(address)
        self.run_subscriptions()
        return address

    def run_subscriptions(self):
        """ The subscription cron's steps, in the test's own transaction: Graph validates the webhook while Odoo
        waits for its answer, and the test server answers it with the test's cursor, which a cron job run here
        (``method_direct_trigger``, a cursor of its own) would hold until Graph gave up. """
        Subscription = self.env['epilot.outlook.subscription']
        with self.allow_requests(all_requests=True):
            for _step in range(20):
                due = Subscription._outlook_due()
                if not due:
                    break
                for subscription in due:
                    subscription._outlook_maintain()
                if all(sub.retry_at and sub.retry_at > fields.Datetime.now() for sub in Subscription._outlook_due()):
                    break
        self.env.invalidate_all()

    def drain(self):
        """ Wait until the sandbox delivered everything it queued (to Odoo's test server). """
        with self.allow_requests(all_requests=True):
            answer = self.sandbox.control('POST', '/subscriptions/drain', {'timeout': 20})
        self.assertTrue(answer['drained'], answer)
        self.env.invalidate_all()

    def run_push_round(self):
        """ What the woken delta cron does: collect the notifications and run the rounds they ask for (no
        polling interval is reset here, unlike :meth:`run_delta`). """
        self.run_cron(self.delta_cron)

    def sandbox_subscriptions(self, live_only=True):
        subs = self.sandbox.control('GET', '/subscriptions')['subscriptions']
        return [sub for sub in subs if not live_only or sub['status'] in ('active', 'paused')]

    def deliveries(self, kind=None):
        path = '/subscriptions/deliveries' + ('?kind=%s' % kind if kind else '')
        return self.sandbox.control('GET', path)

    def subscription(self, address, folder='inbox'):
        return address.subscription_ids.filtered(lambda sub: sub.folder == folder)

    def post_webhook(self, payload, path=const.WEBHOOK_NOTIFY_PATH, **kwargs):
        data = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
        return self.url_open(path, data=data, headers=kwargs.pop('headers', {'Content-Type': 'application/json'}),
                             **kwargs)

    def notification(self, subscription, client_state=None, tenant=None, change_type='created', **extra):
        item = {
            'subscriptionId': subscription.graph_id,
            'clientState': client_state if client_state is not None else
            subscription._outlook_decrypt_secrets('client_state')['client_state'],
            'tenantId': tenant or self.demo['tenant_id'],
            'changeType': change_type,
            'resource': 'Users/x/Messages/y',
            'resourceData': {'id': 'y'},
            **extra,
        }
        if 'lifecycleEvent' in extra:
            item.pop('changeType')
        return item

    def push_events(self):
        return self.env['epilot.outlook.push.event'].sudo().search([])


@tagged('post_install', '-at_install')
class TestPushSubscriptions(OutlookPushCase):

    def test_subscribed_notified_and_in_sync(self):
        address = self.live_address()
        subs = address.subscription_ids
        self.assertEqual(sorted(subs.mapped('folder')), ['inbox', 'sentitems'])
        self.assertEqual(set(subs.mapped('state')), {'active'})
        self.assertEqual(address.sync_mode, 'webhook')
        self.assertFalse(address.push_reason)
        remote = {sub['id']: sub for sub in self.sandbox_subscriptions()}
        self.assertEqual(set(remote), set(subs.mapped('graph_id')))
        for sub in subs:
            stored = remote[sub.graph_id]
            # The clientState: ≥ 32 random bytes, stored encrypted (the column holds ciphertext, not the value).
            client_state = sub._outlook_decrypt_secrets('client_state')['client_state']
            self.assertEqual(stored['clientState'], client_state)
            self.assertGreaterEqual(len(client_state), 43)
            ciphertext = sub._outlook_load_secrets('client_state')['client_state']
            self.assertNotIn(client_state.encode(), ciphertext)
            self.assertEqual(stored['changeType'], 'created,updated,deleted')
            self.assertTrue(stored['immutableIds'])
            self.assertEqual(stored['notificationUrl'], self.base_url() + const.WEBHOOK_NOTIFY_PATH)
            self.assertEqual(stored['lifecycleNotificationUrl'], self.base_url() + const.WEBHOOK_LIFECYCLE_PATH)
            # The expiry Graph returned, the longest it allows (10,070 minutes).
            graph_expiry = fields.Datetime.to_datetime(stored['expirationDateTime'][:19].replace('T', ' '))
            self.assertEqual(sub.expiration, graph_expiry)
            self.assertGreater(sub.expiration, fields.Datetime.now() + timedelta(days=6, hours=23))
        # The handshake passed on both URLs: decoded token, text/plain, 200.
        validations = self.deliveries('validation')['deliveries']
        self.assertEqual(len(validations), 4)
        self.assertEqual({entry['outcome'] for entry in validations}, {'delivered'})

        self.run_push_round()   # the round the (re)creation asked for
        rounds = address.folder_sync_ids.mapped('round_count')
        self.deliver(subject="Pushed")
        self.drain()
        self.assertTrue(self.push_events(), "the webhook queued the notification")
        self.run_push_round()
        inbox_sync = address.folder_sync_ids.filtered(lambda sync: sync.folder == 'inbox')
        self.assertEqual(inbox_sync.round_count, rounds[0] + 1, "the notification started a round of Inbox")
        self.assertFalse(self.push_events())
        self.assertEqual(self.subscription(address).notification_count, 1)
        self.assertTrue(self.subscription(address).last_notification_date)
        self.assertIn("Pushed", self.odoo_records(address, 'inbox').mapped('subject'))
        self.assertInSync(address)

    def test_refused_falls_back_to_polling_with_the_reason_then_retry(self):
        self.sandbox.control('POST', '/subscriptions/faults', {'settings': {
            'shared_mailbox_subscriptions': 'documented'}})
        address = self.live_address()
        self.assertEqual(set(address.subscription_ids.mapped('state')), {'refused'})
        self.assertEqual(address.sync_mode, 'polling')
        self.assertIn('refused change notifications', address.push_reason)
        self.assertIn('ExtensionError', address.push_reason)
        self.assertEqual(self.sandbox_subscriptions(), [])
        self.assertNotIn(address.folder_sync_ids[0], self.env['epilot.outlook.folder.sync']._outlook_due()
                         .filtered(lambda sync: sync.push_pending_since), "polling goes on")
        # Nothing retries a refusal on its own (the cron leaves it)...
        self.run_subscriptions()
        self.assertEqual(self.deliveries('validation')['deliveries'], [])
        # ...until the editor clicks Retry Push (Graph now accepts it).
        self.sandbox.control('POST', '/subscriptions/faults', {'settings': {
            'shared_mailbox_subscriptions': 'lenient'}})
        address.with_user(self.odoo_admin).action_outlook_retry_push()
        self.run_subscriptions()
        self.assertEqual(set(address.subscription_ids.mapped('state')), {'active'})
        self.assertEqual(address.sync_mode, 'webhook')
        self.deliver(subject="After retry")
        self.run_delta(address)
        self.assertInSync(address)

    def test_renewal_patches_and_404_recreates(self):
        address = self.live_address()
        sub = self.subscription(address)
        old_id = sub.graph_id
        # Due for renewal: PATCH, and the expiry Graph returned is stored.
        sub.expiration = fields.Datetime.now() + timedelta(hours=5)
        self.run_subscriptions()
        self.assertEqual(sub.graph_id, old_id)
        self.assertGreater(sub.expiration, fields.Datetime.now() + timedelta(days=6))
        self.assertTrue(sub.last_renewed_date)
        # Graph lost it: the PATCH answers 404, Odoo creates a new one.
        self.sandbox.control('POST', '/subscriptions/%s/expire' % old_id)
        sub.expiration = fields.Datetime.now() + timedelta(hours=5)
        self.run_subscriptions()
        self.assertEqual(sub.state, 'active')
        self.assertNotEqual(sub.graph_id, old_id)
        self.assertEqual(len(self.sandbox_subscriptions()), 2)
        self.deliver(subject="To the new one")
        self.drain()
        self.run_push_round()
        self.assertIn("To the new one", self.odoo_records(address, 'inbox').mapped('subject'))
        self.assertEqual(self.sandbox.control('GET', '/subscriptions/client-bugs')['client_bugs'], [])
        self.assertInSync(address)

    def test_disconnect_address_deletes_its_subscriptions(self):
        support = self.live_address()
        billing = self.live_address(BILLING)
        self.assertEqual(len(self.sandbox_subscriptions()), 4)
        support.unlink()
        remaining = self.sandbox_subscriptions()
        self.assertEqual(len(remaining), 2)
        self.assertEqual({sub['mailbox'] for sub in remaining}, {BILLING})
        self.assertInSync(billing)
        self.connection.with_user(self.odoo_admin).action_outlook_disconnect()
        self.assertEqual(self.sandbox_subscriptions(), [])
        self.assertFalse(self.env['epilot.outlook.subscription'].search([]))
        self.assertIn('Deleted Graph subscriptions: 2', self.connection.message_ids[0].body)


@tagged('post_install', '-at_install')
class TestPushLifecycle(OutlookPushCase):

    def lifecycle(self, sub, event, pause=True):
        self.sandbox.control('POST', '/subscriptions/%s/lifecycle' % sub.graph_id, {'event': event, 'pause': pause})
        self.drain()

    def test_reauthorization_required_reauthorizes_and_catches_up(self):
        address = self.live_address()
        self.run_push_round()
        sub = self.subscription(address)
        self.lifecycle(sub, 'reauthorizationRequired')
        # Delivery is paused at Microsoft until Odoo reacts: this mail is not notified.
        self.deliver(subject="While paused")
        self.drain()
        self.run_push_round()   # collects the lifecycle event, wakes the subscription cron
        self.assertTrue(sub.needs_reauthorization)
        self.assertEqual(sub.last_lifecycle_event, 'reauthorizationRequired')
        self.run_subscriptions()
        self.assertFalse(sub.needs_reauthorization)
        self.assertTrue(sub.last_reauthorized_date)
        self.assertFalse(sub.last_renewed_date, "reauthorized, not PATCHed")
        remote = {s['id']: s for s in self.sandbox_subscriptions()}[sub.graph_id]
        self.assertFalse(remote['paused'])
        # A second reminder within 10 minutes needs no call at all (and never a PATCH).
        self.lifecycle(sub, 'reauthorizationRequired', pause=False)
        self.run_push_round()
        sub.expiration = fields.Datetime.now() + timedelta(hours=5)   # a renewal due too: it waits the 10 minutes
        self.run_subscriptions()
        self.assertFalse(sub.last_renewed_date)
        self.assertTrue(sub.retry_at)
        self.assertEqual(self.sandbox.control('GET', '/subscriptions/client-bugs')['client_bugs'], [])
        self.run_push_round()   # the round the reauthorization asked for
        self.assertIn("While paused", self.odoo_records(address, 'inbox').mapped('subject'))
        self.assertInSync(address)

    def test_subscription_removed_recreates_then_delta(self):
        address = self.live_address()
        self.run_push_round()
        sub = self.subscription(address)
        old_id = sub.graph_id
        self.sandbox.control('POST', '/subscriptions/%s/remove' % old_id)
        self.deliver(subject="While removed")
        self.drain()
        self.run_push_round()
        self.assertEqual(sub.state, 'removed')
        self.assertEqual(address.sync_mode, 'polling')
        self.run_subscriptions()
        self.assertEqual(sub.state, 'removed', "recreated only once a token refresh confirmed the sign-in")
        self.connection._outlook_refresh_tokens(force=True)
        self.run_subscriptions()
        self.assertEqual(sub.state, 'active')
        self.assertNotEqual(sub.graph_id, old_id)
        self.run_push_round()
        self.assertIn("While removed", self.odoo_records(address, 'inbox').mapped('subject'))
        self.assertInSync(address)

    def test_missed_runs_a_delta_round(self):
        address = self.live_address()
        self.run_push_round()
        sub = self.subscription(address)
        # Mail Graph never notified (its notification dropped), then a missed event.
        self.sandbox.control('POST', '/subscriptions/faults', {'faults': {'delivery_drop': 1}})
        self.deliver(subject="Dropped")
        self.drain()
        self.assertEqual(len(self.deliveries()['dropped']), 1)
        self.lifecycle(sub, 'missed')
        self.run_push_round()
        self.assertEqual(sub.last_lifecycle_event, 'missed')
        self.assertIn("Dropped", self.odoo_records(address, 'inbox').mapped('subject'))
        self.assertInSync(address)

    def test_dropped_notifications_caught_up_by_the_safety_round(self):
        address = self.live_address()
        self.run_push_round()
        self.sandbox.control('POST', '/subscriptions/faults', {'faults': {'delivery_drop': 3}})
        for number in range(3):
            self.deliver(subject="Lost %d" % number)
        self.drain()
        self.run_push_round()
        self.assertFalse(self.odoo_records(address, 'inbox').filtered(lambda r: r.subject.startswith('Lost')),
                         "nothing notified, nothing fetched yet")
        # The safety net: with push healthy, delta still runs every 15 minutes.
        address.folder_sync_ids.write({'last_round_date': fields.Datetime.now() - timedelta(minutes=16)})
        self.run_push_round()
        self.assertInSync(address)

    def test_delivery_during_needs_reconnect_then_reconnect(self):
        address = self.live_address()
        self.run_push_round()
        self.sandbox.control('POST', '/users/%s/revoke-sessions' % self.demo['service_account']['id'])
        with self.assertRaisesKeepingCommits(Exception):
            self.connection._outlook_refresh_tokens(force=True)
        self.connection.invalidate_recordset()
        self.assertEqual(self.connection.state, 'needs_reconnect')
        self.deliver(subject="During reconnect")
        self.drain()
        self.run_push_round()   # the notification is kept, no round runs while paused
        self.assertFalse(self.odoo_records(address, 'inbox').filtered(lambda r: r.subject == "During reconnect"))
        self.run_subscriptions()   # nothing renewed or created for a connection that needs a reconnect
        url = self.click_connect()
        self.odoo_callback(self.microsoft_pages(url, 'service_account'))
        self.connection.invalidate_recordset()
        self.assertEqual(self.connection.state, 'connected')
        self.assertEqual(set(address.subscription_ids.mapped('state')), {'pending'}, "subscribed again")
        self.run_subscriptions()
        self.assertEqual(set(address.subscription_ids.mapped('state')), {'active'})
        self.run_push_round()
        self.assertIn("During reconnect", self.odoo_records(address, 'inbox').mapped('subject'))
        self.graph_token = self.sandbox_token()
        self.assertInSync(address)


@tagged('post_install', '-at_install')
class TestPushFaults(OutlookPushCase):
    """ 401, 429 and 503 from Graph on subscription create, renew and delete. """

    def fault(self, status, count=1):
        self.sandbox.control('POST', '/faults', {'graph': {status: count, 'retry_after': 1}})

    def test_create_401_429_503(self):
        address = self.add_address(SUPPORT)
        self.run_backfill(address)
        self.fault('401')   # absorbed by one token refresh
        self.run_subscriptions()
        self.assertEqual(set(address.subscription_ids.mapped('state')), {'active'})
        for status in ('429', '503'):
            sub = self.subscription(address)
            sub.state = 'pending'
            self.fault(status, 8)   # more than the request helper's retries: the cron reschedules
            self.run_subscriptions()
            self.assertTrue(sub.retry_at, status)
            self.assertEqual(sub.state, 'pending')
            self.sandbox.control('POST', '/faults', {'graph': {}})
            sub.retry_at = fields.Datetime.now() - timedelta(seconds=1)
            self.run_subscriptions()
            self.assertEqual(sub.state, 'active', status)
        self.assertEqual(len(self.sandbox_subscriptions()), 2, "the old one deleted, none twice")
        self.deliver(subject="After faults")
        self.drain()
        self.run_push_round()
        self.assertInSync(address)

    def test_renew_401_429_503(self):
        address = self.live_address()
        sub = self.subscription(address)
        for status in ('401', '429', '503'):
            sub.write({'expiration': fields.Datetime.now() + timedelta(hours=5), 'retry_at': False,
                       'last_renewed_date': False})
            self.fault(status, 1 if status == '401' else 8)
            self.run_subscriptions()
            if status == '401':
                self.assertTrue(sub.last_renewed_date, "one 401 is absorbed by a refresh")
                continue
            self.assertFalse(sub.last_renewed_date)
            self.assertTrue(sub.retry_at)
            self.sandbox.control('POST', '/faults', {'graph': {}})
            sub.retry_at = fields.Datetime.now() - timedelta(seconds=1)
            self.run_subscriptions()
            self.assertTrue(sub.last_renewed_date, status)
        self.assertEqual(sub.state, 'active')
        self.run_delta(address)
        self.assertInSync(address)

    def test_delete_401_429_503(self):
        address = self.live_address()
        billing = self.live_address(BILLING)
        self.fault('401')
        address.unlink()
        self.assertEqual({sub['mailbox'] for sub in self.sandbox_subscriptions()}, {BILLING})
        # Graph keeps refusing: the address goes anyway, the disconnect's listing sweep removes the rest.
        self.run_delta(billing)
        self.assertInSync(billing)
        self.fault('503', 20)
        self.connection.with_user(self.odoo_admin).action_outlook_disconnect()
        self.assertFalse(billing.exists())
        self.sandbox.control('POST', '/faults', {'graph': {}})
        self.assertEqual(self.connection.state, 'disconnected')
        self.assertFalse(self.env['epilot.outlook.subscription'].search([]))


@tagged('post_install', '-at_install')
class TestWebhook(OutlookPushCase):
    """ The webhook itself: handshake, checks, coalescing, bad input. """

    def test_handshake_echoes_the_decoded_token(self):
        address = self.live_address()
        token = 'Validation: Testing client application reachability Request-Id: 1+2/3 <script>'
        for path in (const.WEBHOOK_NOTIFY_PATH, const.WEBHOOK_LIFECYCLE_PATH):
            response = self.opener.post(self.base_url() + path, params={'validationToken': token},
                                        data=b'', headers={'Content-Type': 'text/plain; charset=utf-8'},
                                        timeout=10)
            self.assertEqual(response.status_code, 200)
            self.assertEqual(response.headers['Content-Type'].split(';')[0], 'text/plain')
            self.assertEqual(response.headers['X-Content-Type-Options'], 'nosniff')
            self.assertEqual(response.text, token)
        self.assertInSync(address)

    def test_neutralized_copy_accepts_no_notification(self):
        address = self.live_address()
        self.run_push_round()
        sub = self.subscription(address)
        item = self.notification(sub)
        from odoo.modules.neutralize import get_neutralization_queries
        for query in get_neutralization_queries(['epilot_outlook']):
            self.env.cr.execute(query)
        self.env.invalidate_all()
        self.assertEqual(sub._outlook_load_secrets('client_state'), {'client_state': None})
        self.assertEqual(self.post_webhook({'value': [item]}).status_code, 202)
        self.assertFalse(self.push_events())

    def test_wrong_client_state_unknown_subscription_and_tenant_are_ignored_and_counted(self):
        address = self.live_address()
        self.run_push_round()
        sub = self.subscription(address)
        response = self.post_webhook({'value': [
            self.notification(sub, client_state='forged'),
            self.notification(sub, tenant='00000000-0000-0000-0000-000000000000'),
            dict(self.notification(sub), subscriptionId='11111111-2222-3333-4444-555555555555'),
        ]})
        self.assertEqual(response.status_code, 202)
        events = self.push_events()
        self.assertEqual(events.mapped('kind'), ['mismatch'])
        self.assertEqual(events.count, 2)
        self.run_push_round()
        self.assertEqual(sub.mismatch_count, 2)
        self.assertEqual(sub.notification_count, 0)
        # Past the threshold, the email settings editors are told once.
        for _batch in range(2):
            self.post_webhook({'value': [self.notification(sub, client_state='forged%d' % n) for n in range(10)]})
            self.run_push_round()
        alerts = self.connection.message_ids.filtered(lambda m: 'rejected' in (m.body or ''))
        self.assertEqual(len(alerts), 1)
        self.assertIn(self.odoo_admin.partner_id, alerts.partner_ids)
        # The sandbox's own forged copies are ignored too.
        self.sandbox.control('POST', '/subscriptions/faults', {'faults': {'delivery_wrong_client_state': 2}})
        self.deliver(subject="With a forged copy")
        self.drain()
        self.run_push_round()
        self.assertEqual(sub.mismatch_count, 23)
        self.assertInSync(address)

    def test_burst_duplicates_and_out_of_order_coalesce(self):
        address = self.live_address()
        self.run_push_round()
        self.sandbox.control('POST', '/subscriptions/faults', {'faults': {
            'delivery_duplicate': True, 'delivery_out_of_order': True, 'delivery_vary_resource_format': True}})
        rounds = sum(address.folder_sync_ids.mapped('round_count'))
        for number in range(20):
            self.deliver(subject="Burst %d" % number)
        self.sandbox.control('POST', '/mail/generate', {'mailbox': SUPPORT, 'count': 30, 'days': 0, 'seed': 5})
        self.drain()
        # And a replay of a 500-notification burst, straight at the webhook.
        sub = self.subscription(address)
        for _batch in range(5):
            self.post_webhook({'value': [self.notification(sub) for _n in range(100)]})
        self.run_push_round()
        self.assertLessEqual(sum(address.folder_sync_ids.mapped('round_count')) - rounds, 3,
                             "hundreds of notifications, a handful of delta rounds")
        self.assertGreaterEqual(sub.notification_count, 500)
        self.assertInSync(address)

    def test_a_later_trigger_does_not_hold_a_notification_back(self):
        # A retry of the delta cron scheduled for later (throttling on another address) must not make a
        # notification wait for it: the webhook triggers the cron for now.
        address = self.live_address()
        self.run_push_round()
        cron = self.env.ref('epilot_outlook.ir_cron_outlook_delta')
        Trigger = self.env['ir.cron.trigger'].sudo()
        Trigger.search([('cron_id', '=', cron.id)]).unlink()
        later = fields.Datetime.now() + timedelta(minutes=5)
        cron._trigger(at=later)
        self.post_webhook({'value': [self.notification(self.subscription(address))]})
        due = Trigger.search([('cron_id', '=', cron.id)]).mapped('call_at')
        self.assertIn(later, due)
        self.assertTrue(any(call_at < later - timedelta(minutes=4) for call_at in due),
                        "a trigger for now, beside the later one")
        self.run_push_round()
        self.assertInSync(address)

    def test_bad_input_gets_4xx_or_202_and_changes_nothing(self):
        address = self.live_address()
        self.run_push_round()
        sub = self.subscription(address)
        before = (sub.notification_count, sub.mismatch_count)
        bad = [
            (b'not json', 'application/json'),
            (b'{"value": "nope"}', 'application/json'),
            (b'[]', 'application/json'),
            (b'{"value": [1, null, "x", {"subscriptionId": 5}]}', 'application/json'),
            (json.dumps({'value': [{'subscriptionId': sub.graph_id}]}).encode(), 'application/json'),
            ('{"value": [{"subscriptionId": "\u2603\ud800", "changeType": "created"}]}'.encode('utf-8', 'surrogatepass'),
             'application/json'),
            (b'{"value": [' + b'{},' * 2000 + b'{}]}', 'application/json'),
            (b'x' * (10 * 1024 * 1024), 'application/json'),
            (b'a=1&b=2', 'application/x-www-form-urlencoded'),
            (b'<xml/>', 'text/xml'),
            (b'\xff\xfe\x00', 'application/octet-stream'),
        ]
        for body, content_type in bad:
            response = self.post_webhook(body, headers={'Content-Type': content_type})
            self.assertIn(response.status_code, (202, 400, 413), body[:60])
        get = self.url_open(const.WEBHOOK_NOTIFY_PATH)
        self.assertLess(get.status_code, 500)
        self.assertFalse(self.push_events())
        self.assertEqual((sub.notification_count, sub.mismatch_count), before)
        self.assertInSync(address)

    def test_webhook_never_calls_graph(self):
        address = self.live_address()
        self.run_push_round()
        sub = self.subscription(address)
        with patch.object(GraphClient, 'request', side_effect=AssertionError("the webhook called Graph")):
            response = self.post_webhook({'value': [self.notification(sub)]})
        self.assertEqual(response.status_code, 202)
        self.assertEqual(len(self.push_events()), 1)
        self.run_push_round()
        self.assertInSync(address)


@tagged('post_install', '-at_install')
class TestPushStrictSandbox(OutlookPushCase):
    """ The sandbox as Microsoft documents it (the default): every subscription refused. """

    lenient = False

    def test_strict_refusal_polls_and_syncs(self):
        address = self.live_address()
        self.assertEqual(address.sync_mode, 'polling')
        self.assertEqual(dict(address._fields['sync_mode']._description_selection(self.env))[address.sync_mode],
                         "Delta Polling")
        self.assertIn("Microsoft does not let delegated permissions subscribe to shared mailboxes", address.push_reason)
        # The form shows it, with the Retry Push button.
        arch = address.get_views([(False, 'form')])['views']['form']['arch']
        self.assertIn('push_reason', arch)
        self.assertIn('action_outlook_retry_push', arch)
        self.deliver(subject="Polled")
        self.run_delta(address)
        self.assertInSync(address)
