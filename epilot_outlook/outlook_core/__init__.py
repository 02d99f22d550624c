"""The plain layer of ``epilot_outlook``: Graph, OAuth and crypto logic that imports nothing from Odoo.

Odoo code imports it as ``odoo.addons.epilot_outlook.outlook_core``; the Odoo-free test suite imports it as
the top-level package ``outlook_core`` (``tests/conftest.py`` puts ``epilot_outlook/`` on ``sys.path``), so
every module here uses relative imports only.
"""
