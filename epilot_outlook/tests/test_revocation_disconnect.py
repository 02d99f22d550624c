import os
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from odoo.exceptions import UserError
from odoo.tests import tagged

from ..outlook_core.errors import ConnectionUnusable
from ..outlook_core.vault import Vault

from .outlook_sandbox_common import OutlookSandboxCase

SHARED = ('support@contoso.onmicrosoft.com', 'billing@contoso.onmicrosoft.com')


class _ValidatingReceiver(BaseHTTPRequestHandler):
    """ A webhook receiver that passes Graph's validation handshake (200, text/plain, decoded token). """

    def do_POST(self):
        token = parse_qs(urlsplit(self.path).query).get('validationToken', [''])[0]
        body = token.encode()
        self.send_response(200 if token else 202)
        self.send_header('Content-Type', 'text/plain; charset=utf-8')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@tagged('post_install', '-at_install')
class TestRevocationAndDisconnect(OutlookSandboxCase):

    def setUp(self):
        super().setUp()
        self.connect()
        self.inboxes = self.env['epilot.shared.inbox'].create([
            {'name': "Support", 'email': SHARED[0], 'member_user_ids': [self.odoo_admin.id]},
            {'name': "Billing", 'email': SHARED[1]},
        ])
        self.addresses = self.env['epilot.outlook.email.address'].create([
            {'email': SHARED[0], 'connection_id': self.connection.id, 'shared_inbox_id': self.inboxes[0].id,
             'sync_state': 'live'},
            {'email': SHARED[1], 'connection_id': self.connection.id, 'shared_inbox_id': self.inboxes[1].id,
             'sync_mode': 'polling', 'sync_state': 'polling'},
        ])

    def read_inbox(self):
        return self.connection._outlook_call_graph(lambda graph: graph.get('users/%s/mailFolders/inbox' % SHARED[0]))

    # --- revocation -----------------------------------------------------------------------------------

    def test_revoked_consent_needs_reconnect_then_reconnect_resumes(self):
        self.sandbox.control('POST', '/tenants/%s/consent/revoke' % self.demo['tenant_id'])
        with self.assertRaisesKeepingCommits(ConnectionUnusable):
            self.connection._outlook_refresh_tokens(force=True)
        self.connection.invalidate_recordset()
        self.assertEqual(self.connection.state, 'needs_reconnect')
        self.assertTrue(self.connection.needs_admin_consent)
        self.assertIn('consent', self.connection.last_error.lower())
        self.assertEqual(self.addresses.mapped('sync_state'), ['paused', 'paused'])

        # The email settings editors are told, once.
        notice = self.connection.message_ids.filtered(lambda message: 'paused' in (message.body or ''))
        self.assertEqual(len(notice), 1)
        self.assertIn(self.odoo_admin.partner_id, notice.partner_ids)
        self.assertIn('click Grant Admin Consent', notice.body, "the button the form shows")

        # No retry storm: nothing asks Microsoft again until an admin reconnects.
        token_requests = self.sandbox_state()['counts']['token_requests']
        refresh_date = self.connection.last_refresh_date
        with self.assertRaisesKeepingCommits(ConnectionUnusable):
            self.connection._outlook_get_access_token()
        self.connection.access_token_expiry = False  # Even with its token due, the refresh cron skips it.
        self.assertNotIn(self.connection, self.env['epilot.outlook.connection']._outlook_connections_due_for_refresh())
        self.env.ref('epilot_outlook.ir_cron_outlook_refresh_tokens').method_direct_trigger()
        with self.assertRaisesKeepingCommits(ConnectionUnusable):
            self.connection._outlook_refresh_tokens(force=True)
        self.assertEqual(self.connection.last_refresh_date, refresh_date)
        self.assertEqual(self.sandbox_state()['counts']['token_requests'], token_requests,
                         "no request reached Microsoft's token endpoint")

        # Reconnect: consent was withdrawn, so the admin consents again, then the service account signs in.
        self.connect()
        self.assertEqual(self.connection.state, 'connected')
        self.assertFalse(self.connection.needs_admin_consent)
        self.assertEqual(self.addresses.mapped('sync_state'), ['live', 'polling'], "sync resumes where it stood")
        self.assertIn('totalItemCount', self.read_inbox())
        self.assertEqual(len(self.connection.message_ids.filtered(lambda message: 'paused' in (message.body or ''))), 1)

    def test_revoked_sessions_need_reconnect_without_consent(self):
        self.sandbox.control('POST', '/users/%s/revoke-sessions' % self.demo['service_account']['id'])
        with self.assertRaisesKeepingCommits(ConnectionUnusable):
            self.connection._outlook_refresh_tokens(force=True)
        self.connection.invalidate_recordset()
        self.assertEqual(self.connection.state, 'needs_reconnect')
        self.assertFalse(self.connection.needs_admin_consent, "consent still stands: only a sign-in is needed")
        notice = self.connection.message_ids.filtered(lambda message: 'paused' in (message.body or ''))
        self.assertIn('click Connect;', notice.body, "the button the form shows")
        url = self.click_connect()
        self.assertIn('/oauth2/v2.0/authorize', url)
        self.odoo_callback(self.microsoft_pages(url, 'service_account'))
        self.connection.invalidate_recordset()
        self.assertEqual(self.connection.state, 'connected')
        self.assertIn('totalItemCount', self.read_inbox())

    def test_graph_401_right_after_a_fresh_token_needs_reconnect(self):
        # The account is disabled: Graph refuses the token, and the refresh that follows fails too.
        self.sandbox.control('POST', '/users/%s/disable' % self.demo['service_account']['id'])
        with self.assertRaisesKeepingCommits(ConnectionUnusable):
            self.read_inbox()
        self.connection.invalidate_recordset()
        self.assertEqual(self.connection.state, 'needs_reconnect')
        self.assertEqual(self.addresses.mapped('sync_state'), ['paused', 'paused'])

    def test_one_graph_401_is_absorbed_by_one_refresh(self):
        self.sandbox.control('POST', '/faults', {'graph': {'401': 1}})
        refreshes_before = self.sandbox_state()['counts']['refresh_tokens']
        self.assertIn('totalItemCount', self.read_inbox())
        self.connection.invalidate_recordset()
        self.assertEqual(self.connection.state, 'connected')
        self.assertEqual(self.sandbox_state()['counts']['refresh_tokens'], refreshes_before + 1)

    def test_graph_401_again_with_a_token_just_issued_needs_reconnect(self):
        # The refresh succeeds, yet Graph refuses the new token too (access revoked under CAE).
        self.sandbox.control('POST', '/faults', {'graph': {'401': 2}})
        with self.assertRaisesKeepingCommits(ConnectionUnusable):
            self.read_inbox()
        self.connection.invalidate_recordset()
        self.assertEqual(self.connection.state, 'needs_reconnect')
        self.assertIn('refused an access token it had just issued', self.connection.last_error)
        self.assertEqual(self.addresses.mapped('sync_state'), ['paused', 'paused'])

    # --- disconnect -----------------------------------------------------------------------------------

    def subscribe(self, count):
        """ Create ``count`` Graph subscriptions as the service account, on its own mailbox. """
        receiver = ThreadingHTTPServer(('127.0.0.1', 0), _ValidatingReceiver)
        threading.Thread(target=receiver.serve_forever, daemon=True).start()
        self.addCleanup(receiver.shutdown)
        url = 'http://127.0.0.1:%s/notify' % receiver.server_address[1]
        expiry = (datetime.now(timezone.utc) + timedelta(days=2)).strftime('%Y-%m-%dT%H:%M:%SZ')
        for folder in ('inbox', 'sentitems', 'drafts')[:count]:
            self.connection._outlook_call_graph(lambda graph, folder=folder: graph.post('subscriptions', json={
                'changeType': 'created,updated,deleted',
                'notificationUrl': url,
                'resource': "me/mailFolders('%s')/messages" % folder,
                'expirationDateTime': expiry,
                'clientState': 'test-client-state',
            }))

    def live_subscriptions(self):
        return [subscription for subscription in self.sandbox.control('GET', '/subscriptions')['subscriptions']
                if subscription['status'] in ('active', 'paused')]

    def test_disconnect_deletes_subscriptions_addresses_and_tokens_and_keeps_mail(self):
        self.subscribe(2)
        self.assertEqual(len(self.live_subscriptions()), 2)
        kept_message = self.inboxes[0].message_post(body="Synced mail that must stay", message_type='comment')

        self.connection.with_user(self.odoo_admin).action_outlook_disconnect()

        self.assertEqual(self.live_subscriptions(), [], "no subscription is left at Microsoft")
        self.assertFalse(self.addresses.exists(), "the Outlook addresses are removed")
        self.assertEqual(self.inboxes.exists(), self.inboxes, "the shared inboxes stay")
        self.assertTrue(kept_message.exists(), "and so does their mail")
        self.assertEqual(self.connection.state, 'disconnected')
        secrets = self.connection.sudo()._outlook_load_secrets('access_token', 'refresh_token', 'identity')
        self.assertEqual(secrets, {'access_token': None, 'refresh_token': None, 'identity': None})
        log = self.connection.message_ids[0].body
        for address in SHARED:
            self.assertIn(address, log)
        self.assertIn('2', log)

    def test_disconnect_with_a_dead_token_still_removes_everything_local(self):
        self.subscribe(1)
        self.sandbox.control('POST', '/users/%s/disable' % self.demo['service_account']['id'])
        self.connection.with_user(self.odoo_admin).action_outlook_disconnect()
        self.assertEqual(self.connection.state, 'disconnected')
        self.assertFalse(self.addresses.exists())
        self.assertEqual(self.connection.sudo()._outlook_load_secrets('refresh_token'), {'refresh_token': None})
        self.assertIn('could not be deleted', self.connection.message_ids[0].body)

    # --- checking the connection and losing the key ---------------------------------------------------

    def test_check_connection_reports_success_then_the_refusal(self):
        action = self.connection.with_user(self.odoo_admin).action_outlook_check_connection()
        self.assertEqual(action['params']['type'], 'success')
        self.assertEqual(action['params']['next'], {'type': 'ir.actions.client', 'tag': 'soft_reload'})
        self.sandbox.control('POST', '/tenants/%s/consent/revoke' % self.demo['tenant_id'])
        # Not an error dialog over a form that still says Connected: the refusal, then the form reloaded, so it
        # shows the state stored and the last error.
        refusal = self.connection.with_user(self.odoo_admin).action_outlook_check_connection()
        self.assertEqual(refusal['params']['type'], 'danger')
        self.assertIn('consent', refusal['params']['message'].lower())
        self.assertEqual(refusal['params']['next'], {'type': 'ir.actions.client', 'tag': 'soft_reload'})
        self.connection.invalidate_recordset()
        self.assertEqual(self.connection.state, 'needs_reconnect')
        self.assertEqual(self.connection.last_error, refusal['params']['message'])

    def test_tokens_this_worker_refreshed_retire_at_reconnect(self):
        """ A token this worker refreshed itself is not used once the stored token set changed: after Disconnect
        and Connect the worker sends the new token, and Check Connection asks Microsoft, which refuses. """
        self.connection._outlook_refresh_tokens(force=True)  # This worker now holds its own copy of a token.
        old_token = self.connection._outlook_current_access_token()
        self.connection.with_user(self.odoo_admin).action_outlook_disconnect()
        self.odoo_callback(self.microsoft_pages(self.click_connect(), 'service_account'))
        self.connection.invalidate_recordset()
        self.assertEqual(self.connection.state, 'connected')
        new_token = self.secrets()['access_token']
        self.assertNotEqual(new_token, old_token)
        self.assertEqual(self.connection._outlook_current_access_token(), new_token)

        # The stored set changes behind this worker's back (another worker reconnected): its copy retires too.
        self.connection._outlook_refresh_tokens(force=True)
        self.connection.sudo()._outlook_encrypt_and_store({'refresh_token': 'another set', 'access_token': 'other'})
        self.assertEqual(self.connection._outlook_current_access_token(), 'other')

    def test_check_connection_asks_microsoft_after_a_reconnect(self):
        self.connection._outlook_refresh_tokens(force=True)
        self.odoo_callback(self.microsoft_pages(self.click_connect(), 'service_account'))  # Reconnect.
        self.sandbox.control('POST', '/tenants/%s/consent/revoke' % self.demo['tenant_id'])
        token_requests = sum(self.sandbox_state()['counts']['token_requests'].values())
        refusal = self.connection.with_user(self.odoo_admin).action_outlook_check_connection()
        self.assertEqual(refusal['params']['type'], 'danger')
        self.assertGreater(sum(self.sandbox_state()['counts']['token_requests'].values()), token_requests)
        self.connection.invalidate_recordset()
        self.assertEqual(self.connection.state, 'needs_reconnect')

    def test_lost_key_reconnects_through_consent(self):
        # The key that encrypted everything is gone; a new one is configured.
        new_key = Vault.generate_key()
        self.patch(os, 'environ', dict(os.environ, EPILOT_OUTLOOK_KEYS=new_key))
        with self.assertRaises(UserError) as refusal:
            self.connection.with_user(self.odoo_admin).action_outlook_connect()
        self.assertIn('client secret', str(refusal.exception).lower(), "the admin is told to type the secret again")
        self.connection.client_secret = self.demo['client_secret']
        url = self.click_connect()
        self.assertIn('/v2.0/adminconsent', url, "an unreadable tenant id is as good as none: consent again")
        self.connect_from(url)
        self.assertEqual(self.connection.state, 'connected')
        self.assertEqual(self.secrets()['tenant_id'], self.demo['tenant_id'])
        self.assertIn('totalItemCount', self.read_inbox())
