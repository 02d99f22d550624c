from odoo.exceptions import AccessError
from odoo.tests import Form, tagged

from .common import EpilotOutlookCommon

SYSTEM_BUNDLE = '/etc/ssl/certs/ca-certificates.crt'


@tagged('post_install', '-at_install')
class TestConnectionCaBundle(EpilotOutlookCommon):
    """ The CA bundle decides whom Odoo trusts with the client secret and the tokens over TLS: like the allowed
    hosts (``epilot_outlook.allowed_hosts``), only system administrators read or change it. Email settings
    editors keep their form, without the field, and their actions still use the bundle. """

    def form_arch(self, user):
        return self.connection.with_user(user).get_views([(False, 'form')])['views']['form']['arch']

    def test_editor_neither_reads_nor_writes_it(self):
        self.connection.ca_bundle = SYSTEM_BUNDLE
        connection = self.connection.with_user(self.editor)
        with self.assertRaises(AccessError):
            connection.read(['ca_bundle'])
        with self.assertRaises(AccessError):
            connection.write({'ca_bundle': '/tmp/attacker-ca.pem'})
        with self.assertRaises(AccessError):
            connection.search_read([('ca_bundle', '!=', False)], ['id'])
        self.assertNotIn('ca_bundle', connection.fields_get())
        self.connection.invalidate_recordset()
        self.assertEqual(self.connection.ca_bundle, SYSTEM_BUNDLE)

        # Their form still opens and saves; the field is simply not on it.
        arch = self.form_arch(self.editor)
        self.assertNotIn('ca_bundle', arch)
        self.assertIn('authority_host', arch)
        with Form(connection) as form:
            form.consent_tenant = 'contoso.onmicrosoft.com'
        self.assertEqual(self.connection.consent_tenant, 'contoso.onmicrosoft.com')
        # What they do with the connection still trusts the bundle a system administrator set.
        client = connection._outlook_graph_client(token_provider=lambda: 'unused')
        self.assertEqual(client._verify, SYSTEM_BUNDLE)

    def test_system_admin_reads_and_writes_it(self):
        connection = self.connection.with_user(self.admin)
        connection.write({'ca_bundle': SYSTEM_BUNDLE})
        self.assertEqual(connection.read(['ca_bundle'])[0]['ca_bundle'], SYSTEM_BUNDLE)
        self.assertIn('ca_bundle', self.form_arch(self.admin))
        with Form(connection) as form:
            form.ca_bundle = False
        self.assertFalse(self.connection.ca_bundle)
