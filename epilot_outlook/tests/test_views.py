from odoo.tests import Form, tagged

from odoo.addons.epilot_outlook.tests.common import EpilotOutlookCommon

VIEW_TYPES = [(False, 'list'), (False, 'form'), (False, 'search')]


@tagged('post_install', '-at_install', 'epilot_outlook')
class TestViews(EpilotOutlookCommon):

    def test_views_load_for_each_role_that_uses_them(self):
        """ Every screen opens for the roles whose menus lead to it, with no field they may not read. """
        cases = [
            ('epilot.shared.inbox', self.agent_member),
            ('epilot.shared.inbox', self.editor),
            ('epilot.outlook.connection', self.editor),
            ('epilot.outlook.email.address', self.editor),
            ('epilot.outlook.connection', self.admin),
            ('ir.mail_server', self.admin),   # an Outlook address's outgoing server
        ]
        for model_name, user in cases:
            with self.subTest(model=model_name, user=user.login):
                views = self.env[model_name].with_user(user).get_views(VIEW_TYPES)
                self.assertEqual(set(views['views']), {'list', 'form', 'search'})
                self.assertNotIn('<tree', views['views']['list']['arch'])

    def test_agent_opens_inbox_form_read_only_without_outlook_setup(self):
        form_arch = self.env['epilot.shared.inbox'].with_user(self.agent_member).get_views(
            [(False, 'form')])['views']['form']['arch']
        self.assertNotIn('outlook_address_ids', form_arch)
        self.assertIn('edit="False"', form_arch)
        with Form(self.inbox_member.with_user(self.agent_member)) as inbox_form:
            self.assertEqual(inbox_form.name, "Support")

    def test_editor_creates_an_inbox_and_an_address_through_the_forms(self):
        with Form(self.env['epilot.shared.inbox'].with_user(self.editor)) as inbox_form:
            inbox_form.name = "Sales"
            inbox_form.email = "Sales@Contoso.com"
            inbox_form.member_user_ids.add(self.agent_member)
        inbox = inbox_form.record
        self.assertEqual(inbox.email, 'sales@contoso.com')

        with Form(self.env['epilot.outlook.email.address'].with_user(self.editor)) as address_form:
            self.assertEqual(address_form.connection_id, self.connection)  # The company's connection.
            self.assertEqual(address_form.backfill_days, 30)
            address_form.email = "Sales@Contoso.com"
            address_form.shared_inbox_id = inbox
        address = address_form.record
        self.assertEqual((address.email, address.shared_inbox_id), ('sales@contoso.com', inbox))
        self.assertEqual(inbox.with_user(self.editor).outlook_address_ids, address)

    def test_connection_state_changes_are_logged_in_the_chatter(self):
        # Tracking is written by pre-commit hooks, and the creation in setUpClass left one that discards it.
        self.env.cr.flush()
        self.connection.state = 'connected'
        self.env.cr.flush()
        tracking = self.env['mail.tracking.value'].search([
            ('mail_message_id.model', '=', 'epilot.outlook.connection'),
            ('mail_message_id.res_id', '=', self.connection.id),
            ('field_id.name', '=', 'state'),
        ])
        self.assertEqual((tracking.old_value_char, tracking.new_value_char), ("Not Connected", "Connected"))

    def test_connection_form_tells_the_truth(self):
        """ The client id on a full-width line; Re-encrypt Secrets only with something to re-encrypt. """
        from lxml import etree
        arch = etree.fromstring(self.env['epilot.outlook.connection'].with_user(self.editor).get_views(
            [(False, 'form')])['views']['form']['arch'])
        client_id_group = arch.xpath("//field[@name='client_id']/parent::group")[0]
        self.assertEqual(client_id_group.get('colspan'), '2')
        self.assertEqual(len(client_id_group.xpath('field')), 1)
        button = arch.xpath("//button[@name='action_outlook_reencrypt_secrets']")[0]
        self.assertEqual(button.get('invisible'), 'not has_secrets_to_reencrypt')
        self.assertFalse(self.connection.has_secrets_to_reencrypt, "nothing stored, nothing to re-encrypt")

    def test_addresses_microsoft_refuses_are_flagged(self):
        Parameters = self.env['ir.config_parameter'].sudo()
        for base_url, flagged in (('http://0.0.0.0:8069', '0.0.0.0'), ('http://odoo.example.com', 'only in https'),
                                  ('https://odoo.example.com', False), ('http://127.0.0.1:8069', False),
                                  ('http://localhost:8069', False)):
            with self.subTest(base_url=base_url):
                Parameters.set_param('web.base.url', base_url)
                self.connection.invalidate_recordset()
                warning = self.connection.with_user(self.editor).public_url_warning
                if flagged:
                    self.assertIn(flagged, warning)
                else:
                    self.assertFalse(warning)
        form_arch = self.env['epilot.outlook.connection'].with_user(self.editor).get_views(
            [(False, 'form')])['views']['form']['arch']
        self.assertIn('invisible="not public_url_warning"', form_arch)
