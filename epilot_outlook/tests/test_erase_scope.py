from odoo.tests import tagged

from odoo.addons.epilot_outlook.tests.common import EpilotOutlookCommon

from ..outlook_core import mapping
from .test_inbox_agents import InboxImportMixin


@tagged('post_install', '-at_install')
class TestErasureScope(InboxImportMixin, EpilotOutlookCommon):
    """ Erasing a correspondent's mail takes that address only (no LIKE wildcard in it widens it) and only the
    mail of the companies the editor works in. """

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.inbox = cls.inbox_other
        # Fabrikam's own inbox and address; the editor is not allowed in Fabrikam.
        cls.foreign_inbox = cls.env['epilot.shared.inbox'].create({
            'name': "Fabrikam Billing", 'email': 'billing@fabrikam.example', 'company_id': cls.other_company.id})
        cls.foreign_address = cls.env['epilot.outlook.email.address'].create({
            'email': 'billing@fabrikam.example',
            'connection_id': cls.env['epilot.outlook.connection'].create({'company_id': cls.other_company.id}).id,
            'shared_inbox_id': cls.foreign_inbox.id,
        })

    def erase_as_editor(self, email):
        wizard = self.env['epilot.outlook.erase.wizard'].with_user(self.editor).create({'email': email})
        counts = (wizard.conversation_count, wizard.message_count)
        wizard.action_outlook_erase()
        return counts

    def test_an_underscore_is_a_character_not_a_wildcard(self):
        jane = mapping.Address("J Doe", 'j_doe@example.com')
        jxdoe = mapping.Address("Jx Doe", 'jxdoe@example.com')
        percent = mapping.Address("Percent", 'j%doe@example.com')
        hers = self.import_mail(conversation='j_doe', sender=jane)
        lookalike = self.import_mail(conversation='jxdoe', sender=jxdoe)
        other = self.import_mail(conversation='percent', sender=percent)
        # Her address as she typed it in her request: another case, spaces around it.
        self.assertEqual(self.erase_as_editor('  J_Doe@Example.com '), (1, 1))
        self.assertTrue(hers.erased)
        self.assertFalse(lookalike.erased or other.erased, "jxdoe@ and j%doe@ are other people")
        self.assertEqual(lookalike.conversation_id.correspondent_email, 'jxdoe@example.com')
        # A '%' is no wildcard either.
        wizard = self.env['epilot.outlook.erase.wizard'].with_user(self.editor).create({'email': 'j%@example.com'})
        self.assertEqual((wizard.conversation_count, wizard.message_count), (0, 0))

    def test_another_companys_mail_is_neither_counted_nor_erased(self):
        ours = self.import_mail(conversation='carla-ours')
        address = self.address
        try:
            self.address = self.foreign_address
            theirs = self.import_mail(conversation='carla-theirs')
            # Carla also wrote in a conversation of Fabrikam's started by someone else.
            self.import_mail(conversation='bob-theirs', sender=mapping.Address("Bob", 'bob@example.com'))
            cameo = self.import_mail(conversation='bob-theirs')
        finally:
            self.address = address
        self.assertEqual(theirs.conversation_id.company_id, self.other_company)
        self.assertNotIn(self.other_company, self.editor.company_ids)

        self.assertEqual(self.erase_as_editor(mapping.Address("", 'carla@fabrikam.com').address), (1, 1))
        self.assertTrue(ours.erased)
        self.assertFalse(theirs.erased or cameo.erased, "Fabrikam's mail is not the editor's to erase")
        self.assertTrue(theirs.conversation_id.exists() and theirs.mail_message_id.exists())

        # Allowed in Fabrikam too and working in it: its mail is erased there.
        self.editor.company_ids = [(4, self.other_company.id)]
        wizard = self.env['epilot.outlook.erase.wizard'].with_user(self.editor).with_context(
            allowed_company_ids=[self.company.id, self.other_company.id]).create({'email': 'carla@fabrikam.com'})
        self.assertEqual((wizard.conversation_count, wizard.message_count), (1, 2))
        wizard.action_outlook_erase()
        self.assertTrue(theirs.erased and cameo.erased)
