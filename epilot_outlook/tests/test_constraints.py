from psycopg2 import IntegrityError

from odoo.exceptions import UserError, ValidationError
from odoo.tests import tagged
from odoo.tools import mute_logger

from odoo.addons.epilot_outlook.tests.common import EpilotOutlookCommon


@tagged('post_install', '-at_install', 'epilot_outlook')
class TestConstraints(EpilotOutlookCommon):

    def assertSqlConstraintViolated(self, model_name, expected_message, operation):
        """ Assert that `operation` violates a SQL constraint of `model_name` whose user message is
        `expected_message` (the text RPC callers get, see `odoo.service.model.retrying`). """
        with self.assertRaises(IntegrityError) as caught, mute_logger('odoo.sql_db'), self.env.cr.savepoint():
            operation()
            self.env.flush_all()
        self.assertEqual(self.env[model_name]._sql_error_to_message(caught.exception), expected_message)

    def _create_address(self, email, **values):
        return self.env['epilot.outlook.email.address'].create(dict(values, email=email, connection_id=values.get(
            'connection_id', self.connection.id)))

    # === EMAIL ADDRESS === #

    def test_address_rejects_invalid_syntax(self):
        for email in ('not-an-address', 'ops@contoso', 'ops@@contoso.com', 'Ops <ops@contoso.com>',
                      'ops@contoso.com, sales@contoso.com', 'ops @contoso.com'):
            with self.subTest(email=email), self.assertRaises(ValidationError):
                self._create_address(email)

    def test_address_rejects_invalid_syntax_on_write(self):
        with self.assertRaises(ValidationError):
            self.address.email = 'billing.contoso.com'

    def test_address_is_lower_cased(self):
        address = self._create_address('  Sales@Contoso.COM ')
        self.assertEqual(address.email, 'sales@contoso.com')
        address.write({'email': 'Team.Sales@CONTOSO.com'})
        self.assertEqual(address.email, 'team.sales@contoso.com')
        # What is stored, not only what the cache says.
        self.env.flush_all()
        self.env.cr.execute("SELECT email FROM epilot_outlook_email_address WHERE id = %s", [address.id])
        self.assertEqual(self.env.cr.fetchone()[0], 'team.sales@contoso.com')

    def test_address_unique_per_connection(self):
        self.assertSqlConstraintViolated(
            'epilot.outlook.email.address',
            "This email address is already configured on this Outlook connection.",
            lambda: self._create_address('BILLING@contoso.com'),
        )

    def test_address_unique_index_is_case_insensitive(self):
        """ Even a write that bypasses the ORM normalization cannot store a second spelling. """
        self.assertSqlConstraintViolated(
            'epilot.outlook.email.address',
            "This email address is already configured on this Outlook connection.",
            lambda: self.env.cr.execute(
                "INSERT INTO epilot_outlook_email_address (email, connection_id, company_id, backfill_days, "
                "sync_mode, sync_state) VALUES ('Billing@Contoso.com', %s, %s, 30, 'webhook', 'pending')",
                [self.connection.id, self.company.id],
            ),
        )

    def test_same_address_on_another_company_connection(self):
        other_connection = self.env['epilot.outlook.connection'].create({'company_id': self.other_company.id})
        address = self._create_address('billing@contoso.com', connection_id=other_connection.id)
        self.assertEqual(address.company_id, self.other_company)
        self.assertEqual(
            self.env['epilot.outlook.email.address'].search_count([('email', '=', 'billing@contoso.com')]), 2,
        )

    def test_backfill_days_default_and_bounds(self):
        address = self._create_address('sales@contoso.com')
        self.assertEqual(address.backfill_days, 30)
        for days in (1, 3650):
            address.backfill_days = days
            self.assertEqual(address.backfill_days, days)
        for days in (0, -1, -30, 3651, 100000):
            with self.subTest(days=days), self.assertRaises(ValidationError) as caught:
                address.backfill_days = days
            self.assertIn("between 1 and 3650 days", str(caught.exception))

    def test_backfill_days_checked_by_database(self):
        """ On create the row reaches the database first: the SQL CHECK refuses it with the same bounds. """
        for days in (0, -1, 3651):
            with self.subTest(days=days):
                self.assertSqlConstraintViolated(
                    'epilot.outlook.email.address',
                    "The backfill window must be between 1 and 3650 days.",
                    lambda days=days: self._create_address('sales@contoso.com', backfill_days=days),
                )

    def test_address_defaults_to_company_connection(self):
        address = self.env['epilot.outlook.email.address'].with_user(self.editor).create({'email': 'ops@contoso.com'})
        self.assertEqual(address.connection_id, self.connection)
        self.assertEqual((address.sync_mode, address.sync_state), ('polling', 'pending'))

    def test_address_inbox_must_share_company(self):
        foreign_inbox = self.env['epilot.shared.inbox'].create({'name': "Foreign", 'company_id': self.other_company.id})
        with self.assertRaises(UserError):
            self._create_address('ops@contoso.com', shared_inbox_id=foreign_inbox.id)

    # === CONNECTION === #

    def test_one_connection_per_company(self):
        self.assertSqlConstraintViolated(
            'epilot.outlook.connection',
            "A company can have only one Outlook connection.",
            lambda: self.env['epilot.outlook.connection'].create({'company_id': self.company.id}),
        )
        other_connection = self.env['epilot.outlook.connection'].create({'company_id': self.other_company.id})
        self.assertEqual(other_connection.state, 'not_connected')

    def test_deleting_connection_removes_addresses_not_inboxes(self):
        """ The address belongs to the connection; the inbox it fed outlives both. """
        address, inbox = self.address, self.inbox_other
        self.connection.unlink()
        self.assertFalse(address.exists())
        self.assertTrue(inbox.exists())

    def test_inbox_fed_by_an_address_cannot_be_deleted(self):
        with self.assertRaises(IntegrityError), mute_logger('odoo.sql_db'), self.env.cr.savepoint():
            self.inbox_other.unlink()
        self.assertTrue(self.inbox_other.exists())
        # Archiving is the way out; unlinking the address frees the inbox.
        self.inbox_other.action_archive()
        self.assertFalse(self.inbox_other.active)
        self.address.unlink()
        self.inbox_other.unlink()
        self.assertFalse(self.inbox_other.exists())

    # === SHARED INBOX === #

    def test_inbox_email_normalized_and_validated(self):
        inbox = self.env['epilot.shared.inbox'].create({'name': "Sales", 'email': ' Sales@Contoso.com'})
        self.assertEqual(inbox.email, 'sales@contoso.com')
        with self.assertRaises(ValidationError):
            inbox.email = 'sales at contoso'
        inbox.email = False
        self.assertFalse(inbox.email)
