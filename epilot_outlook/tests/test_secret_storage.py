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

    # === THE MIXIN: EACH MODEL ITS OWN SECRETS === #
    # A model defined only for a test cannot be added to the registry of Odoo's test runner without mutating
    # the registry every other test shares; the contract is therefore checked on the registry as installed:
    # the column map is per model, and every model using the mixin keeps its secrets in its own table.

    def secret_models(self):
        """ Every model of the registry that stores secrets through the mixin. """
        names = self.env.registry.descendants(['epilot.outlook.secret.mixin'], '_inherit')
        return [self.env[name] for name in names if not self.env[name]._abstract]

    def test_column_map_is_per_model(self):
        Mixin = self.env['epilot.outlook.secret.mixin']
        self.assertEqual(Mixin._outlook_secret_columns, {}, "the mixin itself declares no secret")
        self.assertIs(self.env['epilot.outlook.connection']._outlook_secret_columns, OUTLOOK_SECRET_COLUMNS)
        # A model reaches only the names it declared: the connection's names mean nothing to another model.
        with self.assertRaises(ValueError):
            Mixin._outlook_check_secret_names(['refresh_token'])
        self.assertIn(self.connection, self.env['epilot.outlook.connection'].browse(
            self.connection._outlook_ids_with_secret('refresh_token')))

    def test_every_secret_model_keeps_its_secrets_in_its_own_table(self):
        """ Each declared column exists, as bytea, in the declaring model's own table and is no ORM field; a
        model added later (the Graph subscription) is checked here too. """
        models_ = self.secret_models()
        self.assertIn('epilot.outlook.connection', [model._name for model in models_])
        for model in models_:
            with self.subTest(model=model._name):
                columns = model._outlook_secret_columns
                self.assertTrue(columns, "a model using the mixin declares its secrets")
                self.assertFalse(set(columns.values()) & set(model._fields), "secret columns are not fields")
                self.env.cr.execute("""
                    SELECT column_name, data_type FROM information_schema.columns
                     WHERE table_name = %s AND column_name IN %s
                """, [model._table, tuple(columns.values())])
                self.assertEqual(dict(self.env.cr.fetchall()), dict.fromkeys(columns.values(), 'bytea'))
