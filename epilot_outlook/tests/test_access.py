from contextlib import closing

from odoo.exceptions import AccessError
from odoo.tests import tagged

from odoo.addons.epilot_outlook.tests.common import EpilotOutlookCommon

EDITORS = frozenset({'editor', 'admin'})
ROLES = ('agent_member', 'agent_outsider', 'editor', 'admin', 'internal', 'portal')

# (target, operation) -> the roles allowed to perform it; every other role must get an AccessError.
# `inbox_member` has `agent_member` as member; `inbox_other` has no member.
ACCESS_MATRIX = {
    ('inbox_member', 'read'): EDITORS | {'agent_member'},
    ('inbox_member', 'write'): EDITORS,
    ('inbox_member', 'unlink'): EDITORS,
    ('inbox_other', 'read'): EDITORS,
    ('inbox_other', 'write'): EDITORS,
    ('inbox', 'create'): EDITORS,
    ('connection', 'read'): EDITORS,
    ('connection', 'write'): EDITORS,
    ('connection', 'create'): EDITORS,
    ('connection', 'unlink'): EDITORS,
    ('address', 'read'): EDITORS,
    ('address', 'write'): EDITORS,
    ('address', 'create'): EDITORS,
    ('address', 'unlink'): EDITORS,
}

READ_FIELDS = {
    'epilot.shared.inbox': ['name', 'email', 'member_user_ids'],
    'epilot.outlook.connection': ['display_name', 'state', 'scopes_granted', 'last_error'],
    'epilot.outlook.email.address': ['email', 'name', 'sync_mode', 'sync_state', 'backfill_days'],
}
WRITE_VALUES = {
    'epilot.shared.inbox': {'name': "Renamed"},
    'epilot.outlook.connection': {'scopes_granted': 'Mail.ReadWrite'},
    'epilot.outlook.email.address': {'backfill_days': 60},
}


@tagged('post_install', '-at_install', 'epilot_outlook')
class TestAccessMatrix(EpilotOutlookCommon):

    def _perform(self, target, operation, user):
        """ Perform `operation` on `target` through the ORM as `user`. """
        if operation == 'create':
            if target == 'inbox':
                self.env['epilot.shared.inbox'].with_user(user).create({'name': "New Inbox"})
            elif target == 'connection':
                self.connection.unlink()  # One connection per company: make room, as superuser.
                self.env['epilot.outlook.connection'].with_user(user).create({'company_id': self.company.id})
            elif target == 'address':
                self.env['epilot.outlook.email.address'].with_user(user).create({
                    'email': 'sales@contoso.com', 'connection_id': self.connection.id,
                })
            return
        record = {
            'inbox_member': self.inbox_member,
            'inbox_other': self.inbox_other,
            'connection': self.connection,
            'address': self.address,
        }[target].with_user(user)
        if operation == 'read':
            values = record.read(READ_FIELDS[record._name])
            self.assertEqual(values[0]['id'], record.id)
        elif operation == 'write':
            record.write(WRITE_VALUES[record._name])
        elif operation == 'unlink':
            record.unlink()

    def test_access_matrix(self):
        """ Every role can do exactly what the matrix allows on each model, and gets an AccessError otherwise. """
        for (target, operation), allowed_roles in ACCESS_MATRIX.items():
            for role in ROLES:
                user = self.users_by_role[role]
                # Each cell starts from the same data: the savepoint is always rolled back.
                with self.subTest(target=target, operation=operation, role=role), closing(self.env.cr.savepoint()):
                    if role in allowed_roles:
                        self._perform(target, operation, user)
                    else:
                        with self.assertRaises(AccessError):
                            self._perform(target, operation, user)

    def test_search_shows_agents_only_their_inboxes(self):
        """ Searching filters by membership: agents find their inboxes only, editors find them all. """
        Inbox = self.env['epilot.shared.inbox']
        both = self.inbox_member | self.inbox_other
        self.assertEqual(Inbox.with_user(self.agent_member).search([]), self.inbox_member)
        self.assertFalse(Inbox.with_user(self.agent_outsider).search([]))
        self.assertEqual(Inbox.with_user(self.editor).search([('id', 'in', both.ids)]), both)
        self.assertEqual(Inbox.with_user(self.admin).search([('id', 'in', both.ids)]), both)

    def test_membership_grants_and_revokes_access(self):
        """ Adding an agent to an inbox lets them read it; removing them takes it away again. """
        inbox_as_outsider = self.inbox_other.with_user(self.agent_outsider)
        with self.assertRaises(AccessError):
            inbox_as_outsider.read(['name'])

        self.inbox_other.member_user_ids = [(4, self.agent_outsider.id)]
        self.assertEqual(inbox_as_outsider.read(['name'])[0]['name'], "Billing")

        self.inbox_other.member_user_ids = [(3, self.agent_outsider.id)]
        self.env.invalidate_all()
        with self.assertRaises(AccessError):
            inbox_as_outsider.read(['name'])

    def test_agent_cannot_see_outlook_setup_on_their_inbox(self):
        """ The inbox's Outlook addresses are for email settings editors only, even on an inbox the agent reads. """
        self.assertNotIn('outlook_address_ids', self.inbox_member.with_user(self.agent_member).fields_get())
        self.assertIn('outlook_address_ids', self.inbox_member.with_user(self.editor).fields_get())

    def test_connection_is_company_bound(self):
        """ An editor sees only the connections of their allowed companies. """
        other_connection = self.env['epilot.outlook.connection'].create({'company_id': self.other_company.id})
        Connection = self.env['epilot.outlook.connection'].with_user(self.editor)
        self.assertEqual(Connection.search([]), self.connection)
        with self.assertRaises(AccessError):
            other_connection.with_user(self.editor).read(['state'])

        self.editor.company_ids = [(4, self.other_company.id)]
        self.assertEqual(Connection.with_context(allowed_company_ids=self.other_company.ids).search([]),
                         other_connection)
