import logging
import os
import threading
from datetime import timedelta
from unittest.mock import patch

from cryptography.fernet import Fernet

from odoo import fields
from odoo.exceptions import UserError
from odoo.tests import tagged
from odoo.tools import config

from ..outlook_core.errors import ConnectionUnusable, InvalidKeyError, MissingKeyError, UndecryptableError
from ..tools.explain import explain
from .outlook_sandbox_common import OutlookSandboxCase


class _RecordAll(logging.Handler):
    """ Keeps every log record, formatted with its traceback, and the thread that emitted it. """

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter('%(name)s %(levelname)s %(message)s'))
        self.lines = []

    def emit(self, record):
        try:
            text = self.format(record)
        except Exception:  # noqa: BLE001 - a broken record still counts: keep its raw parts.
            text = '%s %r %r' % (record.name, record.msg, record.args)
        self.lines.append((threading.current_thread().name, record.name, text))


@tagged('post_install', '-at_install')
class TestTokenKeys(OutlookSandboxCase):
    """ The keys that encrypt the tokens (rotation, wrong or missing key), the write-only client secret,
    the refresh cron, and the tokens' absence from logs, messages, reads and exports. """

    def use_keys(self, keys):
        """ Configure ``keys`` (the EPILOT_OUTLOOK_KEYS value; ``None``: no key at all) until the test ends. """
        self.enterContext(patch.dict(os.environ))
        self.enterContext(patch.dict(config._runtime_options, {'epilot_outlook_keys': ''}))
        if keys is None:
            os.environ.pop('EPILOT_OUTLOOK_KEYS', None)
        else:
            os.environ['EPILOT_OUTLOOK_KEYS'] = keys

    # --- keys -----------------------------------------------------------------------------------------

    def test_key_rotation(self):
        key_a = os.environ.get('EPILOT_OUTLOOK_KEYS') or config.get('epilot_outlook_keys')
        self.assertTrue(key_a, "the suite runs with a key configured")
        key_b = Fernet.generate_key().decode()
        self.use_keys(key_a)
        self.connect()
        plaintexts = self.secrets()
        ciphertexts = self.connection.sudo()._outlook_load_secrets()
        self.assertTrue(all(plaintexts.values()))

        self.connection.invalidate_recordset()
        self.assertFalse(self.connection.has_secrets_to_reencrypt, "all on the newest key: the button is hidden")
        self.use_keys('%s,%s' % (key_b, key_a))  # Step 1: new key first, old one kept.
        self.assertEqual(self.secrets(), plaintexts, "the old key still decrypts")
        self.connection.invalidate_recordset()
        self.assertTrue(self.connection.has_secrets_to_reencrypt, "on the old key: the button shows")
        self.connection.with_user(self.odoo_admin).action_outlook_reencrypt_secrets()  # Step 2.
        self.connection.invalidate_recordset()
        self.assertFalse(self.connection.has_secrets_to_reencrypt)
        rotated = self.connection.sudo()._outlook_load_secrets()
        for name, ciphertext in rotated.items():
            self.assertNotEqual(ciphertext, ciphertexts[name], "%s was re-encrypted" % name)

        self.use_keys(key_b)  # Step 3: the old key is gone.
        self.assertEqual(self.connection.sudo()._outlook_decrypt_secrets(), plaintexts)
        self.connection.invalidate_recordset()
        self.assertIn(self.connection.sudo()._outlook_vault().key_id, self.connection.encryption_key_status)
        # The connection keeps working on the new key alone: a refresh and a Graph call.
        self.connection._outlook_refresh_tokens(force=True)
        inbox = self.connection._outlook_call_graph(
            lambda graph: graph.get('users/support@contoso.onmicrosoft.com/mailFolders/inbox'))
        self.assertIn('totalItemCount', inbox)

    def test_unrelated_key_gives_a_clear_error(self):
        self.connect()
        unrelated = Fernet.generate_key().decode()
        self.use_keys(unrelated)
        # Connect says what to do about it: the tenant id can be consented again, the client secret typed again.
        retype_secret = "The client secret was encrypted with a key that is no longer configured"
        key_gone = explain(self.env, UndecryptableError())
        for call, expected in (
            (lambda: self.connection.sudo()._outlook_decrypt_secrets(), key_gone),
            (lambda: self.connection.with_user(self.odoo_admin).action_outlook_connect(), retype_secret),
            (lambda: self.connection.with_user(self.odoo_admin).action_outlook_reencrypt_secrets(), key_gone),
            (lambda: self.connection._outlook_get_access_token(), key_gone),
        ):
            with self.assertRaises(UserError) as caught:
                call()
            message = str(caught.exception)
            self.assertTrue(message.startswith(expected), message)
            self.assertNotIn(unrelated, message)
            self.assertNotIn('Traceback', message)
        self.connection.invalidate_recordset()
        self.assertEqual(self.connection.state, 'connected', "a missing key is not a revocation")

    def test_malformed_key_is_named_by_position_only(self):
        self.use_keys('this-is-not-a-fernet-key')
        with self.assertRaises(UserError) as caught:
            self.connection.with_user(self.odoo_admin).action_outlook_connect()
        self.assertEqual(str(caught.exception),
                         explain(self.env, InvalidKeyError(params={'position': 1, 'count': 1})))
        self.assertIn('#1 of 1', str(caught.exception))
        self.assertNotIn('this-is-not-a-fernet-key', str(caught.exception))

    def test_no_key_refuses_to_connect_and_says_how_to_set_one(self):
        self.use_keys(None)
        with self.assertRaises(UserError) as caught:
            self.connection.with_user(self.odoo_admin).action_outlook_connect()
        message = str(caught.exception)
        self.assertEqual(message, explain(self.env, MissingKeyError()))
        self.assertIn('epilot_outlook_keys', message)
        self.assertIn('EPILOT_OUTLOOK_KEYS', message)
        self.assertFalse(self.env['epilot.outlook.oauth.attempt'].sudo().search(
            [('connection_id', '=', self.connection.id)]), "no sign-in was started")
        self.connection.invalidate_recordset()
        self.assertEqual(self.connection.encryption_key_status, explain(self.env, MissingKeyError()))

    def test_client_secret_is_write_only(self):
        admin_connection = self.connection.with_user(self.odoo_admin)
        admin_connection.client_secret = 'sbx~typed-by-the-admin'
        admin_connection.invalidate_recordset()
        self.assertFalse(admin_connection.read(['client_secret'])[0]['client_secret'])
        self.assertFalse(admin_connection.search_read([('id', '=', self.connection.id)], ['client_secret'])[0]
                         ['client_secret'])
        self.assertFalse(admin_connection.client_secret)
        self.assertTrue(admin_connection.has_client_secret)
        self.assertEqual(self.connection.sudo()._outlook_decrypt_secrets('client_secret')['client_secret'],
                         'sbx~typed-by-the-admin')
        # Over RPC, as the admin's browser reads the form.
        result = self.make_jsonrpc_request('/web/dataset/call_kw/epilot.outlook.connection/web_read', {
            'model': 'epilot.outlook.connection', 'method': 'web_read', 'args': [[self.connection.id]],
            'kwargs': {'specification': {'client_secret': {}, 'has_client_secret': {}}},
        })
        self.assertEqual(result, [{'id': self.connection.id, 'client_secret': False, 'has_client_secret': True}])

    # --- the refresh cron -----------------------------------------------------------------------------

    def test_cron_refreshes_only_connections_about_to_expire(self):
        """ The cron runs through ``ir.cron.method_direct_trigger()``, as "Run manually" does.

        Calling ``_cron_outlook_refresh_tokens()`` directly would reach ``ir.cron._commit_progress``,
        which outside a cron commits ``self.env.cr``: in a test that is the test cursor, whose commit
        raises. ``method_direct_trigger`` runs the job like the scheduler, in a cursor of its own from the
        registry; HttpCase keeps the registry in test mode for the whole test (its
        ``enter_registry_test_mode()`` only logs a warning), so that cursor is a ``TestCursor`` on the
        test transaction whose commits are savepoint releases, and everything is rolled back at the end.
        """
        self.connect()
        cron = self.env.ref('epilot_outlook.ir_cron_outlook_refresh_tokens')
        other_company = self.env['res.company'].create({'name': 'Outlook Cron Other Co'})
        # Connected, fresh, no token at all: touching it would fail and mark it needs_reconnect.
        other = self.env['epilot.outlook.connection'].create({
            'company_id': other_company.id, 'state': 'connected',
            'access_token_expiry': fields.Datetime.now() + timedelta(hours=1),
            'last_refresh_date': fields.Datetime.now(),
        })
        # Needs a reconnect, expiring: the cron must leave it to the admin.
        paused_company = self.env['res.company'].create({'name': 'Outlook Cron Paused Co'})
        paused = self.env['epilot.outlook.connection'].create({
            'company_id': paused_company.id, 'state': 'needs_reconnect',
            'access_token_expiry': fields.Datetime.now() - timedelta(minutes=1),
        })

        # Nothing expires soon: the cron calls no one.
        before = self.secrets()
        self.assertTrue(cron.method_direct_trigger())
        self.connection.invalidate_recordset()
        self.assertEqual(self.secrets(), before)

        # Ours expires in two minutes: refreshed, the others untouched.
        self.connection.access_token_expiry = fields.Datetime.now() + timedelta(minutes=2)
        self.assertTrue(cron.method_direct_trigger())
        (self.connection | other | paused).invalidate_recordset()
        after = self.secrets()
        self.assertNotEqual(after['access_token'], before['access_token'])
        self.assertNotEqual(after['refresh_token'], before['refresh_token'])
        self.assertEqual(self.connection.state, 'connected')
        self.assertGreater(self.connection.access_token_expiry, fields.Datetime.now() + timedelta(minutes=30))
        self.assertEqual((other.state, other.last_error), ('connected', False))
        self.assertEqual((paused.state, paused.last_error), ('needs_reconnect', False))

    # --- secrets never leave the vault ----------------------------------------------------------------

    def capture_all_logs(self):
        """ Record every record of every logger, DEBUG included, until ``stop()`` (or the test's end).

        Odoo's own handlers stay in place, so the run's log (and a failure reported meanwhile) looks as
        usual: a filter lets through to them only what their loggers' levels let through before.
        """
        handler = _RecordAll()
        root = logging.getLogger()
        saved_levels = {root: root.level}
        for logger in list(logging.root.manager.loggerDict.values()):
            if isinstance(logger, logging.Logger) and logger.level > logging.DEBUG:
                saved_levels[logger] = logger.level

        def level_before(name):
            logger = logging.getLogger(name)
            while logger:
                level = saved_levels.get(logger, logger.level)
                if level:
                    return level
                logger = logger.parent
            return logging.WARNING

        as_before = logging.Filter()
        as_before.filter = lambda record: record.levelno >= level_before(record.name)
        odoo_handlers = root.handlers[:]
        for odoo_handler in odoo_handlers:
            odoo_handler.addFilter(as_before)
        for logger in saved_levels:
            logger.setLevel(logging.DEBUG)
        root.addHandler(handler)

        def stop():
            root.removeHandler(handler)
            for odoo_handler in odoo_handlers:
                odoo_handler.removeFilter(as_before)
            for logger, level in saved_levels.items():
                logger.setLevel(level)
        self.addCleanup(stop)
        return handler, stop

    def test_secrets_appear_in_no_log_message_read_or_export(self):
        records, stop_recording = self.capture_all_logs()
        self.connect()
        first = self.secrets()
        self.connection._outlook_refresh_tokens(force=True)
        inbox = self.connection._outlook_call_graph(
            lambda graph: graph.get('users/support@contoso.onmicrosoft.com/mailFolders/inbox'))
        self.assertIn('totalItemCount', inbox)
        second = self.secrets()
        self.assertNotEqual(first['access_token'], second['access_token'])
        # And a refused refresh, for an error text and a chatter notice (caught by hand: Odoo's assertRaises
        # would roll back what the refresh committed).
        self.sandbox.control('POST', '/users/%s/revoke-sessions' % self.demo['service_account']['id'])
        try:
            self.connection._outlook_refresh_tokens(force=True)
        except ConnectionUnusable:
            pass
        self.connection.invalidate_recordset()
        self.assertEqual(self.connection.state, 'needs_reconnect')
        self.assertTrue(self.connection.last_error)
        stop_recording()

        credentials = {
            'access token': first['access_token'], 'refreshed access token': second['access_token'],
            'refresh token': first['refresh_token'], 'rotated refresh token': second['refresh_token'],
            'client secret': self.demo['client_secret'],
        }
        identifiers = {
            'tenant id': self.demo['tenant_id'],
            'service account oid': self.demo['service_account']['id'],
        }
        self.assertGreater(len(records.lines), 50, "DEBUG records were captured")
        leaks = [
            '%s in a record of %s (thread %s): %s' % (what, logger, thread, text[:300])
            for thread, logger, text in records.lines
            for what, value in credentials.items() if value in text
        ] + [
            '%s in a record of %s (thread %s): %s' % (what, logger, thread, text[:300])
            for thread, logger, text in records.lines
            for what, value in identifiers.items()
            # urllib3's DEBUG request lines too: the identity platform's URLs carry the tenant in their path,
            # and the addon redacts them.
            if value in text
        ]
        self.assertFalse(leaks, '\n'.join(leaks))
        # Odoo's access log shows that the callback was called, not Microsoft's query (code, tenant, state).
        callback_lines = [text for _thread, logger, text in records.lines
                          if logger == 'werkzeug' and '/epilot_outlook/oauth/callback' in text]
        self.assertEqual(len(callback_lines), 2, "the consent and the sign-in callbacks")
        for text in callback_lines:
            self.assertIn('/epilot_outlook/oauth/callback?[hidden] ', text)
            for parameter in ('code=', 'tenant=', 'state='):
                self.assertNotIn(parameter, text)
        secrets = dict(credentials, **identifiers)

        # Nor in what the admin can see or fetch.
        self.connection.invalidate_recordset()
        self.odoo_admin.group_ids += self.env.ref('base.group_allow_export')
        admin_connection = self.connection.with_user(self.odoo_admin)
        field_names = list(admin_connection.fields_get())
        seen = {
            'fields_get': repr(admin_connection.fields_get()),
            'read': repr(admin_connection.read(field_names)),
            'export_data': repr(admin_connection.export_data(
                [name for name, field in admin_connection.fields_get().items() if field.get('exportable', True)
                 and name not in ('message_ids', 'website_message_ids')])),
            'web_read (RPC)': repr(self.make_jsonrpc_request(
                '/web/dataset/call_kw/epilot.outlook.connection/web_read', {
                    'model': 'epilot.outlook.connection', 'method': 'web_read', 'args': [[self.connection.id]],
                    'kwargs': {'specification': {name: {} for name in field_names}},
                })),
            'messages': repr(self.connection.message_ids.mapped(
                lambda message: (message.body, message.subject, message.tracking_value_ids.mapped(
                    lambda value: (value.old_value_char, value.new_value_char))))),
            'last_error': repr(self.connection.last_error),
        }
        for where, text in seen.items():
            for what, value in secrets.items():
                self.assertNotIn(value, text, "%s shows the %s" % (where, what))
