import re
import tempfile
from pathlib import Path
from unittest.mock import patch

from cryptography.fernet import Fernet

from odoo.exceptions import UserError
from odoo.tests import TransactionCase, tagged
from odoo.tools.translate import (
    PYTHON_TRANSLATION_COMMENT, LazyGettext, code_translations, quote, translation_file_reader,
)

from ..outlook_core import errors
from ..outlook_core.graph import GraphClient
from ..outlook_core.vault import Vault
from ..tools.explain import AADSTS_WORDING, CLASS_WORDING, GRAPH_CODE_WORDING, REASON_WORDING, explain

ADDON_DIR = Path(__file__).resolve().parent.parent
# ``reason='x'`` where an error is raised, ``error.reason = 'x'`` where one is qualified on its way up.
REASON_RE = re.compile(r"""\breason\s*=\s*['"](\w+)['"]""")

# A French translation of two wordings, as Odoo exports code terms to i18n/fr.po.
PO_TEMPLATE = """
#. module: epilot_outlook
#. odoo-python
#: code:addons/epilot_outlook/tools/explain.py:0
msgid {grant_revoked}
msgstr "Microsoft a révoqué l'accès d'Odoo pour le compte de service. Reconnectez la connexion Microsoft 365."

#. module: epilot_outlook
#. odoo-python
#: code:addons/epilot_outlook/tools/explain.py:0
#, python-format
msgid {missing_scopes}
msgstr "Microsoft n'a accordé qu'une partie des autorisations nécessaires (manquantes : %(scopes)s)."
"""


def error_classes():
    """ Every exception class of the plain layer. """
    return [cls for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, errors.OutlookError)]


@tagged('post_install', '-at_install', 'epilot_outlook')
class TestExplain(TransactionCase):
    """ The plain layer raises errors with codes and parameters; ``explain`` words them, translated. """

    def wording(self, lazy_text, **params):
        """ A wording of the tables in the test's language (English), with ``params``. """
        return self.env._(lazy_text) % params

    # === COVERAGE: EVERYTHING THE PLAIN LAYER KNOWS IS WORDED === #

    def test_every_aadsts_code_is_worded(self):
        self.assertEqual(set(AADSTS_WORDING), set(errors.AADSTS_CLASSES), "a code without wording, or the reverse")
        for code in errors.AADSTS_CLASSES:
            with self.subTest(code=code):
                error = errors.token_error_from_aad({'error': 'invalid_grant', 'error_codes': [code]})
                text = explain(self.env, error)
                self.assertEqual(text, self.wording(AADSTS_WORDING[code]))
                self.assertIn('AADSTS%d' % code, text, "admins quote the code to Microsoft")

    def test_every_graph_code_is_worded(self):
        self.assertEqual(set(GRAPH_CODE_WORDING), set(errors.GRAPH_CODES), "a code without wording, or the reverse")
        for code in errors.GRAPH_CODES:
            with self.subTest(code=code):
                error = errors.graph_error_from_parts(404, {'error': {'code': code, 'message': "Graph's words"}})
                self.assertEqual(explain(self.env, error), self.wording(GRAPH_CODE_WORDING[code]))

    def test_every_error_class_is_worded(self):
        """ By the class itself or a base class below ``OutlookError``, whose wording is the generic one. """
        self.assertTrue(set(CLASS_WORDING) <= set(error_classes()))
        for cls in error_classes():
            with self.subTest(cls=cls.__name__):
                worded_by = next(base for base in cls.__mro__ if base in CLASS_WORDING)
                self.assertTrue(cls is errors.OutlookError or worded_by is not errors.OutlookError)
                params = {'host': 'graph.example', 'position': 1, 'count': 2}  # What the class wordings use.
                self.assertEqual(explain(self.env, cls('technical', params=params)),
                                 self.wording(CLASS_WORDING[worded_by], **params))

    def test_every_reason_raised_is_worded(self):
        raised = set()
        for path in ADDON_DIR.rglob('*.py'):
            if 'tests' not in path.relative_to(ADDON_DIR).parts:
                raised.update(REASON_RE.findall(path.read_text(encoding='utf-8')))
        self.assertIn('identity_throttled', raised, "the scan sees the plain layer")
        self.assertIn('missing_scopes', raised, "the scan sees the models")
        self.assertEqual(set(REASON_WORDING), raised, "a reason without wording, or a wording nobody raises")

    # === WHICH WORDING === #

    def test_the_most_precise_wording_wins(self):
        missing = errors.ConsentRequired(
            'Missing scopes', aadsts=(65001,), reason='missing_scopes', params={'scopes': 'User.Read'})
        self.assertEqual(explain(self.env, missing),
                         self.wording(REASON_WORDING['missing_scopes'], scopes='User.Read'))
        # The first AADSTS code that has a wording, before the class.
        revoked = errors.GrantRevoked('AADSTS70008', aadsts=(70002, 70008))
        self.assertEqual(explain(self.env, revoked), self.wording(AADSTS_WORDING[70008]))
        # Graph's code before the class; the class (or its base) when the code has no wording of its own.
        self.assertEqual(explain(self.env, errors.NotFound('404', code='ErrorInvalidUser')),
                         self.wording(GRAPH_CODE_WORDING['ErrorInvalidUser']))
        self.assertEqual(explain(self.env, errors.NotFound('404', code='itemNotFound')),
                         self.wording(CLASS_WORDING[errors.NotFound]))
        self.assertEqual(explain(self.env, errors.StateInvalid('bad signature')),
                         self.wording(CLASS_WORDING[errors.StateError]))
        # An unknown reason is no wording: the codes and the class still are.
        self.assertEqual(explain(self.env, errors.Throttled('429', reason='no_such_reason')),
                         self.wording(CLASS_WORDING[errors.Throttled]))

    def test_not_a_plain_layer_error(self):
        self.assertEqual(explain(self.env, UserError("Already worded by Odoo.")), "Already worded by Odoo.")
        # Anything else gets the generic text, never its technical message.
        text = explain(self.env, RuntimeError("internal details"))
        self.assertEqual(text, self.wording(CLASS_WORDING[errors.OutlookError]))

    def test_53003_says_what_to_do(self):
        text = explain(self.env, errors.token_error_from_aad({'error': 'invalid_grant', 'error_codes': [53003]}))
        self.assertIn('Conditional Access', text)
        self.assertIn('exclude', text)

    # === PARAMETERS === #

    def test_parameters_are_interpolated(self):
        with self.assertRaises(errors.HostNotAllowed) as caught:
            GraphClient('https://evil.example/v1.0', lambda: 'token')
        self.assertIn('Odoo refused to call evil.example:', explain(self.env, caught.exception))

        with self.assertRaises(errors.InvalidKeyError) as caught:
            Vault.from_config('%s,not-a-key' % Fernet.generate_key().decode())
        self.assertIn('key #2 of 2 in', explain(self.env, caught.exception))

        missing = errors.ConsentRequired('Missing scopes', reason='missing_scopes',
                                         params={'scopes': 'Mail.Send.Shared User.Read'})
        self.assertIn('(missing: Mail.Send.Shared User.Read)', explain(self.env, missing))

    def test_a_missing_parameter_never_shows_a_placeholder(self):
        # Raised without its host: the next wording that fits (the generic one), not "%(host)s".
        text = explain(self.env, errors.HostNotAllowed('no host given'))
        self.assertNotIn('%(', text)
        self.assertEqual(text, self.wording(CLASS_WORDING[errors.OutlookError]))

    # === TRANSLATION === #

    def test_wordings_are_lazy_translations_of_the_addon(self):
        for table in (REASON_WORDING, AADSTS_WORDING, GRAPH_CODE_WORDING, CLASS_WORDING):
            for key, wording in table.items():
                with self.subTest(key=key):
                    self.assertIsInstance(wording, LazyGettext)
                    self.assertIn("'_module': 'epilot_outlook'", repr(wording))

    def test_wording_follows_the_language_of_the_env(self):
        """ A French .po, read as Odoo reads the addon's i18n files, translates the words users read. """
        self.env['res.lang']._activate_lang('fr_FR')
        po_text = PO_TEMPLATE.format(
            grant_revoked=quote(self.wording(CLASS_WORDING[errors.GrantRevoked])),
            missing_scopes=quote(self.env._(REASON_WORDING['missing_scopes'])),
        )
        po_dir = Path(self.enterContext(tempfile.TemporaryDirectory()))
        (po_dir / 'fr.po').write_text(po_text, encoding='utf-8')
        # What CodeTranslations keeps of an i18n/fr.po: the code terms of Python files.
        translations = {
            row['src']: row['value']
            for row in translation_file_reader(str(po_dir / 'fr.po'), fileformat='po')
            if row.get('type') == 'code' and PYTHON_TRANSLATION_COMMENT in row['comments']
        }
        self.assertEqual(len(translations), 2)
        self.enterContext(patch.dict(code_translations.python_translations,
                                     {('epilot_outlook', 'fr_FR'): translations}))
        env_fr = self.env(context=dict(self.env.context, lang='fr_FR'))

        self.assertEqual(explain(env_fr, errors.GrantRevoked('AADSTS50000')),
                         "Microsoft a révoqué l'accès d'Odoo pour le compte de service. Reconnectez la connexion "
                         "Microsoft 365.")
        missing = errors.ConsentRequired('Missing scopes', reason='missing_scopes', params={'scopes': 'User.Read'})
        self.assertEqual(explain(env_fr, missing),
                         "Microsoft n'a accordé qu'une partie des autorisations nécessaires (manquantes : User.Read).")
        # A wording not translated yet stays English; the English env is untouched.
        self.assertEqual(explain(env_fr, errors.NotFound('404')), self.wording(CLASS_WORDING[errors.NotFound]))
        self.assertEqual(explain(self.env, missing),
                         self.wording(REASON_WORDING['missing_scopes'], scopes='User.Read'))

        # What the admin reads is in the language of whoever ran into the error: here, last_error.
        company = self.env['res.company'].create({'name': "Explain Test Company"})
        connection = self.env['epilot.outlook.connection'].create({'company_id': company.id})
        connection.with_env(env_fr)._outlook_record_error(errors.GrantRevoked('AADSTS50000'))
        self.assertTrue(connection.last_error.startswith("Microsoft a révoqué"), connection.last_error)
