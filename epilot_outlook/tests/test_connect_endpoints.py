from odoo.exceptions import UserError
from odoo.tests import new_test_user, tagged
from odoo.tests.common import JsonRpcException

from .outlook_sandbox_common import OutlookSandboxCase


@tagged('post_install', '-at_install')
class TestConnectEndpoints(OutlookSandboxCase):
    """ An email settings editor, over RPC, cannot send the client secret or a token to a host of their
    choosing: only Microsoft's hosts and those a system administrator allowed are accepted, the CA bundle is a
    system administrator's, a change of endpoint unbinds the secrets issued for the old one, and every change is
    in the chatter. """

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.system_admin = new_test_user(cls.env, 'eo_endpoints_system_admin', groups='base.group_system')

    def rpc(self, model, method, *args):
        return self.make_jsonrpc_request('/web/dataset/call_kw/%s/%s' % (model, method), {
            'model': model, 'method': method, 'args': list(args), 'kwargs': {},
        })

    def write_as_editor(self, values):
        return self.rpc('epilot.outlook.connection', 'write', [self.connection.id], values)

    def tracked(self):
        """ The chatter's tracked changes and notes, as text. """
        self.connection.invalidate_recordset()
        messages = self.connection.message_ids
        values = messages.tracking_value_ids
        return ' '.join([str(message.body) for message in messages] + [
            '%s: %s -> %s' % (value.field_id.name, value.old_value_char, value.new_value_char) for value in values])

    def test_editor_cannot_point_endpoints_at_another_host(self):
        for field in ('authority_host', 'graph_endpoint'):
            with self.assertRaises(JsonRpcException) as caught:
                self.write_as_editor({field: 'https://attacker.example.com'})
            self.assertEqual(caught.exception.args[0], 'odoo.exceptions.ValidationError', field)
        self.connection.invalidate_recordset()
        self.assertEqual(self.connection.authority_host, self.sandbox.info['authority_base_url'])
        self.assertTrue(self.connection.has_client_secret)
        # Nor at another port of an allowed host: the system parameter lists host:port.
        with self.assertRaises(JsonRpcException):
            self.write_as_editor({'authority_host': 'https://127.0.0.1:1'})

    def test_microsoft_national_clouds_are_accepted(self):
        for authority, graph in (('https://login.microsoftonline.us', 'https://graph.microsoft.us/v1.0'),
                                 ('https://login.microsoftonline.us', 'https://dod-graph.microsoft.us/v1.0'),
                                 ('https://login.partner.microsoftonline.cn',
                                  'https://microsoftgraph.chinacloudapi.cn/v1.0'),
                                 ('https://login.microsoftonline.com', 'https://graph.microsoft.com/v1.0')):
            self.write_as_editor({'authority_host': authority, 'graph_endpoint': graph})
        # A Microsoft host on another port is not Microsoft's service.
        with self.assertRaises(JsonRpcException):
            self.write_as_editor({'graph_endpoint': 'https://graph.microsoft.com:8443/v1.0'})

    def test_editor_cannot_allow_hosts(self):
        with self.assertRaises(JsonRpcException) as caught:
            self.rpc('ir.config_parameter', 'set_param', 'epilot_outlook.allowed_hosts', 'attacker.example.com')
        self.assertEqual(caught.exception.args[0], 'odoo.exceptions.AccessError')
        with self.assertRaises(JsonRpcException):
            self.rpc('ir.config_parameter', 'get_param', 'epilot_outlook.allowed_hosts')

    def write_as_system_admin(self, values):
        result = self.connection.with_user(self.system_admin).write(values)
        # Tracking is written when the transaction commits, as at the end of an RPC: do it now.
        self.env.flush_all()
        self.env.cr.precommit.run()
        return result

    def test_endpoint_change_discards_the_client_secret(self):
        for field, value, write in (('ca_bundle', '/etc/ssl/certs/ca-certificates.crt', self.write_as_system_admin),
                                    ('authority_host', 'https://login.microsoftonline.com', self.write_as_editor),
                                    ('graph_endpoint', 'https://graph.microsoft.com/v1.0', self.write_as_editor)):
            self.connection.sudo().client_secret = self.demo['client_secret']
            write({field: value})
            self.connection.invalidate_recordset()
            self.assertFalse(self.connection.has_client_secret, field)
            self.assertIn('client secret and the recorded tenant were discarded', self.tracked())
            self.assertIn('%s: ' % field, self.tracked())
        # Typing the secret again in the same save keeps it.
        self.write_as_editor({'authority_host': self.sandbox.info['authority_base_url'],
                              'client_secret': 'typed again'})
        self.connection.invalidate_recordset()
        self.assertTrue(self.connection.has_client_secret)
        self.assertEqual(self.secrets()['client_secret'], 'typed again')

    def test_endpoint_change_refused_while_tokens_are_held(self):
        self.connect()
        before = self.connection.sudo()._outlook_load_secrets()
        for field, value in (('authority_host', 'https://login.microsoftonline.com'),
                             ('graph_endpoint', 'https://graph.microsoft.com/v1.0')):
            with self.assertRaises(JsonRpcException) as caught:
                self.write_as_editor({field: value})
            self.assertEqual(caught.exception.args[0], 'odoo.exceptions.UserError', field)
        # The CA bundle is not the editor's to change at all; a system administrator is refused like them.
        with self.assertRaises(JsonRpcException) as caught:
            self.write_as_editor({'ca_bundle': '/etc/ssl/certs/ca-certificates.crt'})
        self.assertEqual(caught.exception.args[0], 'odoo.exceptions.AccessError')
        with self.assertRaises(UserError):
            self.write_as_system_admin({'ca_bundle': '/etc/ssl/certs/ca-certificates.crt'})
        self.assertEqual(self.connection.sudo()._outlook_load_secrets(), before, "nothing was discarded")
        # After Disconnect, the change goes through and the tenant and client secret are gone with it.
        self.connection.with_user(self.odoo_admin).action_outlook_disconnect()
        self.write_as_editor({'authority_host': 'https://login.microsoftonline.com'})
        self.assertEqual(self.connection.sudo()._outlook_load_secrets('client_secret', 'tenant_id'),
                         {'client_secret': None, 'tenant_id': None})

    def test_secret_and_client_id_changes_are_tracked_without_the_secret(self):
        self.write_as_editor({'client_secret': 'a-new-secret-value', 'client_id': 'another-client-id'})
        text = self.tracked()
        self.assertIn('Client secret changed', text)
        self.assertIn('client_id: %s -> another-client-id' % self.demo['client_id'], text)
        self.assertNotIn('a-new-secret-value', text)

    def test_disallowed_endpoint_is_never_called(self):
        """ A host allowed once and no longer (or written around the ORM) gets no secret. """
        self.connect()
        token_requests = self.sandbox_state()['counts']['token_requests']
        self.env['ir.config_parameter'].sudo().set_param('epilot_outlook.allowed_hosts', False)
        refusal = self.connection.with_user(self.odoo_admin).action_outlook_check_connection()
        self.assertEqual(refusal['params']['type'], 'danger')
        self.assertIn('system parameter epilot_outlook.allowed_hosts', refusal['params']['message'])
        self.assertEqual(self.sandbox_state()['counts']['token_requests'], token_requests, "nothing reached the sandbox")
