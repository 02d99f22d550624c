from odoo.modules.neutralize import get_neutralization_queries
from odoo.tests import tagged

from odoo.addons.epilot_outlook.tests.common import EpilotOutlookCommon


@tagged('post_install', '-at_install', 'epilot_outlook')
class TestNeutralize(EpilotOutlookCommon):

    def test_neutralize_drops_tokens_and_disconnects(self):
        self.connection.state = 'connected'
        self.connection._outlook_store_secrets({
            'refresh_token': b'refresh', 'access_token': b'access', 'tenant_id': b'tenant', 'identity': b'identity',
            'client_secret': b'client-secret',
        })
        idle_connection = self.env['epilot.outlook.connection'].create({'company_id': self.other_company.id})
        idle_connection._outlook_store_secrets({'client_secret': b'never-connected-secret'})
        self.env.flush_all()

        for query in get_neutralization_queries(['epilot_outlook']):
            self.env.cr.execute(query)
        self.env.invalidate_all()

        self.assertEqual(self.connection.state, 'disconnected')
        self.assertEqual(self.connection._outlook_load_secrets(), {
            'refresh_token': None, 'access_token': None, 'tenant_id': b'tenant', 'identity': b'identity',
            'client_secret': None,
        })
        self.assertEqual(idle_connection.state, 'not_connected')
        self.assertEqual(idle_connection._outlook_load_secrets('client_secret'), {'client_secret': None})
