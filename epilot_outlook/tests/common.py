from odoo.tests import TransactionCase, new_test_user


class EpilotOutlookCommon(TransactionCase):
    """ One user per role, one Outlook connection with one address, and two shared inboxes.

    - ``agent_member``: Agent, member of ``inbox_member``;
    - ``agent_outsider``: Agent, member of no inbox;
    - ``editor``: Email settings: edit;
    - ``admin``: Settings administrator, who holds Email settings: edit implicitly;
    - ``internal``: a plain internal user;
    - ``portal``: a portal user.
    """

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.company = cls.env.company
        cls.agent_member = new_test_user(cls.env, 'eo_agent_member', groups='epilot_outlook.group_agent')
        cls.agent_outsider = new_test_user(cls.env, 'eo_agent_outsider', groups='epilot_outlook.group_agent')
        cls.editor = new_test_user(cls.env, 'eo_editor', groups='epilot_outlook.group_email_setting_edit')
        cls.admin = new_test_user(cls.env, 'eo_admin', groups='base.group_system')
        cls.internal = new_test_user(cls.env, 'eo_internal', groups='base.group_user')
        cls.portal = new_test_user(cls.env, 'eo_portal', groups='base.group_portal')
        cls.users_by_role = {
            'agent_member': cls.agent_member,
            'agent_outsider': cls.agent_outsider,
            'editor': cls.editor,
            'admin': cls.admin,
            'internal': cls.internal,
            'portal': cls.portal,
        }

        cls.inbox_member = cls.env['epilot.shared.inbox'].create({
            'name': "Support",
            'email': 'support@contoso.com',
            'member_user_ids': [cls.agent_member.id],
        })
        cls.inbox_other = cls.env['epilot.shared.inbox'].create({
            'name': "Billing",
            'email': 'billing@contoso.com',
        })
        cls.connection = cls.env['epilot.outlook.connection'].create({'company_id': cls.company.id})
        cls.address = cls.env['epilot.outlook.email.address'].create({
            'email': 'billing@contoso.com',
            'connection_id': cls.connection.id,
            'shared_inbox_id': cls.inbox_other.id,
        })

        cls.other_company = cls.env['res.company'].create({'name': "Fabrikam"})
