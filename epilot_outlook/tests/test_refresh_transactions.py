import threading
import uuid
from datetime import timedelta

from odoo import SUPERUSER_ID, api, fields
from odoo.modules.registry import DummyRLock, Registry
from odoo.tests import TransactionCase, tagged

from ..outlook_core.oauth import OAuthClient
from .outlook_sandbox_common import create_signed_in_connection, sign_in_service_account
from .sandbox_process import SandboxProcess

REDIRECT_URI = 'http://127.0.0.1:8069/epilot_outlook/oauth/callback'


@tagged('post_install', '-at_install')
class TestRefreshTransactions(TransactionCase):
    """ Token refresh against real, separate PostgreSQL transactions.

    ``TransactionCase`` does not put the registry in test mode, so ``registry.cursor()`` here opens real
    transactions, as two Odoo workers would. The connection is therefore committed for real in ``setUp``
    and deleted again in a cleanup; the test's own transaction is never used for it.
    """

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.sandbox = SandboxProcess.get()

    def setUp(self):
        super().setUp()
        self.demo = self.sandbox.reset_and_seed([REDIRECT_URI])
        self.tokens = sign_in_service_account(self.sandbox, self.demo, REDIRECT_URI)
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            self.allowed_hosts_before = env['ir.config_parameter'].get_param('epilot_outlook.allowed_hosts')
            connection = create_signed_in_connection(env, self.sandbox, self.demo, self.tokens, "Refresh Co")
            # The access token expires within the 5-minute margin: the next use refreshes.
            connection.access_token_expiry = fields.Datetime.now() + timedelta(minutes=1)
            self.connection_id, self.company_id = connection.id, connection.company_id.id
        self.addCleanup(self._delete_committed_records)

    def _delete_committed_records(self):
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            env['epilot.outlook.connection'].browse(self.connection_id).unlink()
            env['res.company'].browse(self.company_id).unlink()
            env['ir.config_parameter'].set_param('epilot_outlook.allowed_hosts', self.allowed_hosts_before)

    def _refresh_tokens_issued(self):
        return self.sandbox.control('GET', '/state')['counts']['refresh_tokens']

    def _stored_secrets(self):
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            return env['epilot.outlook.connection'].browse(self.connection_id)._outlook_decrypt_secrets()

    def test_rotated_refresh_token_survives_a_rollback_of_the_surrounding_work(self):
        partner_name = "Work rolled back %s" % uuid.uuid4().hex
        with self.assertRaises(RuntimeError), self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            env['res.partner'].create({'name': partner_name})
            access_token = env['epilot.outlook.connection'].browse(self.connection_id)._outlook_get_access_token()
            raise RuntimeError("the work that needed the token fails")

        stored = self._stored_secrets()
        self.assertNotEqual(stored['refresh_token'], self.tokens.refresh_token, "the rotated token was stored")
        self.assertEqual(stored['access_token'], access_token)
        self.assertFalse(self.env['res.partner'].search_count([('name', '=', partner_name)]),
                         "the surrounding work was rolled back")
        # The stored refresh token is the live one: Microsoft (the sandbox) redeems it.
        client = OAuthClient(self.demo['client_id'], self.demo['client_secret'],
                             self.sandbox.info['authority_base_url'], self.demo['tenant_id'],
                             ca_bundle=self.sandbox.info['ca_bundle'])
        self.assertTrue(client.refresh(stored['refresh_token']).access_token)

    def test_two_workers_refreshing_at_once_make_one_refresh(self):
        # The test runner holds the registry lock for the whole run, which a worker thread needs to build an
        # Environment; lift it as Odoo's own HttpCase does for its server threads.
        self.patch(Registry, '_lock', DummyRLock())
        issued_before = self._refresh_tokens_issued()
        start, results, failures = threading.Barrier(2), [], []

        def worker():
            try:
                with self.registry.cursor() as cr:
                    env = api.Environment(cr, SUPERUSER_ID, {})
                    connection = env['epilot.outlook.connection'].browse(self.connection_id)
                    connection.state  # Read the row before the race, as a worker mid-request would.
                    start.wait(timeout=10)
                    results.append(connection._outlook_get_access_token())
            except Exception as error:  # noqa: BLE001 - reported by the assertion below
                failures.append(error)

        threads = [threading.Thread(target=worker) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        self.assertFalse(failures)
        self.assertEqual(len(results), 2)
        self.assertEqual(results[0], results[1], "both workers use the one new access token")
        self.assertNotEqual(results[0], self.tokens.access_token)
        self.assertEqual(self._refresh_tokens_issued(), issued_before + 1, "Microsoft saw exactly one refresh")

    def test_graph_retry_after_a_401_uses_the_token_just_refreshed(self):
        """ Microsoft refuses a token Odoo still believes valid: the retry after the refresh must use the new
        token, although the worker's own transaction began before the refresh committed (REPEATABLE READ). """
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            env['epilot.outlook.connection'].browse(self.connection_id).access_token_expiry = (
                fields.Datetime.now() + timedelta(minutes=50))
        self.sandbox.control('POST', '/clock/advance', {'seconds': 2 * 3600})  # Microsoft: that token expired.
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            connection = env['epilot.outlook.connection'].browse(self.connection_id)
            self.assertEqual(connection.state, 'connected')  # The worker's snapshot starts here.
            inbox = connection._outlook_call_graph(
                lambda graph: graph.get('users/support@contoso.onmicrosoft.com/mailFolders/inbox'))
        self.assertIn('totalItemCount', inbox)
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            self.assertEqual(env['epilot.outlook.connection'].browse(self.connection_id).state, 'connected')

    def test_disconnect_with_a_token_due_for_refresh_completes_at_the_first_try(self):
        """ Disconnect calls Graph with a token that must be refreshed first. Were that refresh stored (in a
        transaction of its own), the request's later write to the connection row would be refused to its older
        snapshot (serialization failure); the refresh is used without being stored, as the tokens are being
        deleted anyway. """
        issued_before = self._refresh_tokens_issued()
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            connection = env['epilot.outlook.connection'].browse(self.connection_id)
            self.assertEqual(connection.state, 'connected')  # The request's snapshot starts here.
            connection.action_outlook_disconnect()
            self.assertIn('Deleted Graph subscriptions: 0.', connection.message_ids[0].body)
        self.assertEqual(self._refresh_tokens_issued(), issued_before + 1, "the token was refreshed for Graph")
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            connection = env['epilot.outlook.connection'].browse(self.connection_id)
            self.assertEqual(connection.state, 'disconnected')
            self.assertEqual(connection._outlook_load_secrets('refresh_token'), {'refresh_token': None})
