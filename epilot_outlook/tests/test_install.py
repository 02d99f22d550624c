from odoo.tests import TransactionCase, tagged

from odoo.addons.epilot_outlook.models.epilot_outlook_connection import OUTLOOK_SECRET_COLUMNS


@tagged('post_install', '-at_install', 'epilot_outlook')
class TestInstall(TransactionCase):

    def test_module_installed(self):
        module = self.env['ir.module.module'].search([('name', '=', 'epilot_outlook')])
        self.assertEqual(module.state, 'installed')
        self.assertEqual(module.latest_version, '19.0.1.0.0')

    def test_data_xml_ids_exist(self):
        """ The records other modules and engineers rely on are there, under their documented xml ids. """
        expected = {
            'epilot_outlook.res_groups_privilege_shared_inbox': 'res.groups.privilege',
            'epilot_outlook.group_agent': 'res.groups',
            'epilot_outlook.group_email_setting_edit': 'res.groups',
            'epilot_outlook.epilot_shared_inbox_agent_rule': 'ir.rule',
            'epilot_outlook.epilot_shared_inbox_email_setting_edit_rule': 'ir.rule',
            'epilot_outlook.epilot_outlook_connection_company_rule': 'ir.rule',
            'epilot_outlook.epilot_outlook_email_address_company_rule': 'ir.rule',
            'epilot_outlook.epilot_shared_inbox_company_rule': 'ir.rule',
            'epilot_outlook.epilot_outlook_connection_action': 'ir.actions.act_window',
            'epilot_outlook.epilot_outlook_email_address_action': 'ir.actions.act_window',
            'epilot_outlook.epilot_shared_inbox_action': 'ir.actions.act_window',
            'epilot_outlook.epilot_outlook_menu_root': 'ir.ui.menu',
            'epilot_outlook.epilot_shared_inbox_menu': 'ir.ui.menu',
            'epilot_outlook.epilot_outlook_menu_email_settings': 'ir.ui.menu',
            'epilot_outlook.epilot_outlook_menu_connections': 'ir.ui.menu',
            'epilot_outlook.epilot_outlook_connection_menu': 'ir.ui.menu',
            'epilot_outlook.epilot_outlook_email_address_menu': 'ir.ui.menu',
        }
        for xml_id, model in expected.items():
            with self.subTest(xml_id=xml_id):
                self.assertEqual(self.env.ref(xml_id)._name, model)

    def test_group_hierarchy(self):
        """ Email settings: edit implies Agent, which implies internal user; administrators get both. """
        agent = self.env.ref('epilot_outlook.group_agent')
        editor = self.env.ref('epilot_outlook.group_email_setting_edit')
        privilege = self.env.ref('epilot_outlook.res_groups_privilege_shared_inbox')
        self.assertEqual(agent.privilege_id | editor.privilege_id, privilege)
        self.assertIn(self.env.ref('base.group_user'), agent.all_implied_ids)
        self.assertIn(agent, editor.all_implied_ids)
        self.assertIn(editor, self.env.ref('base.group_system').all_implied_ids)
        self.assertTrue(self.env.ref('base.user_admin').has_group('epilot_outlook.group_email_setting_edit'))

    def test_database_objects_exist(self):
        """ The SQL constraints and the ciphertext columns are in the database, not only declared. """
        self.env.cr.execute("""
            SELECT conname FROM pg_constraint
             WHERE conname IN ('epilot_outlook_connection_company_uniq',
                               'epilot_outlook_email_address_backfill_days_range')
        """)
        self.assertEqual(len(self.env.cr.fetchall()), 2)
        self.env.cr.execute(
            "SELECT 1 FROM pg_indexes WHERE indexname = 'epilot_outlook_email_address_email_connection_uniq'")
        self.assertEqual(self.env.cr.rowcount, 1)
        self.env.cr.execute("""
            SELECT column_name, data_type FROM information_schema.columns
             WHERE table_name = 'epilot_outlook_connection' AND column_name IN %s
        """, [tuple(OUTLOOK_SECRET_COLUMNS.values())])
        self.assertEqual(dict(self.env.cr.fetchall()), dict.fromkeys(OUTLOOK_SECRET_COLUMNS.values(), 'bytea'))

    def test_menus_follow_groups(self):
        """ Agents get the app and their inboxes; only email settings editors get the Email Settings menus. """
        Menu = self.env['ir.ui.menu']
        agent = self.env['res.users'].create({
            'name': "Menu Agent", 'login': 'eo_menu_agent',
            'group_ids': [(6, 0, [self.env.ref('epilot_outlook.group_agent').id])],
        })
        editor = self.env['res.users'].create({
            'name': "Menu Editor", 'login': 'eo_menu_editor',
            'group_ids': [(6, 0, [self.env.ref('epilot_outlook.group_email_setting_edit').id])],
        })
        internal = self.env['res.users'].create({
            'name': "Menu Internal", 'login': 'eo_menu_internal',
            'group_ids': [(6, 0, [self.env.ref('base.group_user').id])],
        })
        root = self.env.ref('epilot_outlook.epilot_outlook_menu_root')
        inboxes = self.env.ref('epilot_outlook.epilot_shared_inbox_menu')
        settings = self.env.ref('epilot_outlook.epilot_outlook_menu_email_settings')
        outlook = self.env.ref('epilot_outlook.epilot_outlook_connection_menu')
        addresses = self.env.ref('epilot_outlook.epilot_outlook_email_address_menu')

        visible = set(Menu.with_user(agent)._visible_menu_ids())
        self.assertIn(root.id, visible)
        self.assertFalse({settings.id, outlook.id, addresses.id, inboxes.id} & visible,
                         "agents reach their inboxes through Inboxes, not the inboxes' set-up")

        visible = set(Menu.with_user(editor)._visible_menu_ids())
        self.assertTrue({root.id, inboxes.id, settings.id, outlook.id, addresses.id} <= visible)

        self.assertNotIn(root.id, Menu.with_user(internal)._visible_menu_ids())
