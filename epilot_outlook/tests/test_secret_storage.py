import base64

from odoo.exceptions import AccessError
from odoo.service.model import get_public_method
from odoo.tests import tagged

from odoo.addons.epilot_outlook.models.epilot_outlook_connection import OUTLOOK_SECRET_COLUMNS
from odoo.addons.epilot_outlook.tests.common import EpilotOutlookCommon

SECRETS = {
    'refresh_token': b'\x00ciphertext-of-the-refresh-token\xff',
    'access_token': b'ciphertext-of-the-access-token',
    'tenant_id': b'ciphertext-of-the-tenant-id',
    'identity': b'ciphertext-of-{"upn": "svc@contoso.onmicrosoft.com"}',
    'client_secret': b'ciphertext-of-the-client-secret',
}
# What must never come out of the ORM: the column names and the ciphertext bytes.
FORBIDDEN_MARKERS = (*OUTLOOK_SECRET_COLUMNS.values(), 'ciphertext')


@tagged('post_install', '-at_install', 'epilot_outlook')
class TestSecretStorage(EpilotOutlookCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.connection._outlook_store_secrets(SECRETS)
        cls.connection_as_admin = cls.connection.with_user(cls.admin)

    def assertNoSecretIn(self, output):
        """ Assert that no secret name nor ciphertext appears anywhere in the repr of `output`. """
        text = repr(output)
        for marker in FORBIDDEN_MARKERS:
            self.assertNotIn(marker, text)
        for ciphertext in SECRETS.values():
            self.assertNotIn(repr(ciphertext)[2:-1], text)
            self.assertNotIn(base64.b64encode(ciphertext).decode(), text)  # As a Binary field would return it.

    # === STORE AND LOAD === #

    def test_round_trip(self):
        self.assertEqual(self.connection._outlook_load_secrets(), SECRETS)
        self.assertEqual(
            self.connection._outlook_load_secrets('access_token', 'tenant_id'),
            {'access_token': SECRETS['access_token'], 'tenant_id': SECRETS['tenant_id']},
        )
        self.assertIsInstance(self.connection._outlook_load_secrets('refresh_token')['refresh_token'], bytes)

    def test_stored_in_bytea_columns(self):
        """ The bytes are in the row itself, so they go with it when the connection is deleted. """
        self.env.cr.execute(
            "SELECT outlook_refresh_token_ciphertext FROM epilot_outlook_connection WHERE id = %s",
            [self.connection.id],
        )
        self.assertEqual(bytes(self.env.cr.fetchone()[0]), SECRETS['refresh_token'])

    def test_partial_update_and_clear(self):
        self.connection._outlook_store_secrets({'access_token': b'rotated', 'refresh_token': None})
        stored = self.connection._outlook_load_secrets()
        self.assertEqual(stored['access_token'], b'rotated')
        self.assertIsNone(stored['refresh_token'])
        self.assertEqual(stored['tenant_id'], SECRETS['tenant_id'])  # Untouched.

    def test_has_refresh_token_follows_the_store(self):
        self.assertTrue(self.connection.has_refresh_token)
        self.connection._outlook_store_secrets({'refresh_token': None})
        self.assertFalse(self.connection.has_refresh_token)
        self.connection._outlook_store_secrets({'refresh_token': b'again'})
        self.assertTrue(self.connection.has_refresh_token)

    def test_store_rejects_unknown_names_and_plaintext(self):
        with self.assertRaises(ValueError):
            self.connection._outlook_store_secrets({'password': b'x'})
        with self.assertRaises(ValueError):
            self.connection._outlook_load_secrets('state')
        with self.assertRaises(TypeError):
            self.connection._outlook_store_secrets({'refresh_token': 'a plaintext str'})
        self.assertEqual(self.connection._outlook_load_secrets(), SECRETS)

    def test_store_and_load_need_access_to_the_connection(self):
        """ Without sudo, only email settings editors get through; agents are refused even the ciphertext. """
        for user in (self.agent_member, self.internal, self.portal):
            connection = self.connection.with_user(user)
            with self.subTest(user=user.login):
                with self.assertRaises(AccessError):
                    connection._outlook_load_secrets()
                with self.assertRaises(AccessError):
                    connection._outlook_store_secrets({'access_token': b'forged'})
        self.assertEqual(self.connection.with_user(self.editor)._outlook_load_secrets('tenant_id'),
                         {'tenant_id': SECRETS['tenant_id']})

    def test_methods_cannot_be_called_over_rpc(self):
        for method in ('_outlook_store_secrets', '_outlook_load_secrets'):
            with self.subTest(method=method), self.assertRaises(AccessError):
                get_public_method(self.connection_as_admin, method)

    # === NEVER EXPOSED, EVEN TO ADMINISTRATORS === #

    def test_not_in_fields_get(self):
        fields_description = self.connection_as_admin.fields_get()
        self.assertIn('state', fields_description)  # The admin does see the connection's fields...
        self.assertNoSecretIn(fields_description)  # ...but no secret among them.
        self.assertFalse(self.env['ir.model.fields'].search([
            ('model', '=', 'epilot.outlook.connection'), ('name', 'in', list(OUTLOOK_SECRET_COLUMNS.values())),
        ]))

    def test_not_in_read(self):
        self.assertNoSecretIn(self.connection_as_admin.read())  # read() without fields reads them all.
        self.assertNoSecretIn(self.connection.sudo().read())  # Not even the superuser reads them as fields.
        for column in OUTLOOK_SECRET_COLUMNS.values():
            with self.subTest(column=column), self.assertRaises(ValueError):
                self.connection_as_admin.read([column])

    def test_not_in_search_read(self):
        Connection = self.env['epilot.outlook.connection'].with_user(self.admin)
        self.assertNoSecretIn(Connection.search_read([('id', '=', self.connection.id)]))
        for column in OUTLOOK_SECRET_COLUMNS.values():
            with self.subTest(column=column), self.assertRaises(ValueError):
                Connection.search_read([(column, '!=', False)])

    def test_not_in_web_read(self):
        """ The web client's read path, with every field the admin may ask for. """
        specification = dict.fromkeys(self.connection_as_admin.fields_get(), {})
        specification['email_address_ids'] = {'fields': {}}
        specification['company_id'] = {'fields': {}}
        self.assertNoSecretIn(self.connection_as_admin.web_read(specification))
        self.assertNoSecretIn(self.connection_as_admin.web_search_read([], specification))

    def test_not_in_export(self):
        Connection = self.connection_as_admin
        all_fields = [name for name, field in Connection.fields_get().items() if field.get('exportable', True)]
        self.assertNoSecretIn(Connection.export_data(all_fields))
        for column in OUTLOOK_SECRET_COLUMNS.values():
            with self.subTest(column=column), self.assertRaises(ValueError):
                Connection.export_data([column])

    def test_not_writable_through_import_or_write(self):
        Connection = self.env['epilot.outlook.connection'].with_user(self.admin)
        for column in OUTLOOK_SECRET_COLUMNS.values():
            with self.subTest(column=column):
                with self.assertRaises(ValueError):
                    Connection.load([column], [['forged']])
                with self.assertRaises(ValueError):
                    self.connection_as_admin.write({column: b'forged'})
        self.assertEqual(self.connection._outlook_load_secrets(), SECRETS)

    def test_not_copied(self):
        """ A duplicate (for another company) starts without any secret. """
        duplicate = self.connection.copy({'company_id': self.other_company.id})
        self.assertEqual(duplicate._outlook_load_secrets(), dict.fromkeys(OUTLOOK_SECRET_COLUMNS))
        self.assertFalse(duplicate.has_refresh_token)
