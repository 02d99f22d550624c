"""Fixtures for the plain layer's tests.

The sandbox fixtures (one sandbox per session, clean state per test, a ``requests`` session trusting its CA)
and the HTML sign-in helper live in ``tests/sandbox``. They are loaded here by file path: the package name
``tests`` resolves to ``epilot_outlook/tests`` (Odoo's suite) once ``epilot_outlook/`` is on ``sys.path``.
The helper is importable as ``sandbox_signin``.
"""
import importlib.util
import os
import sys

import pytest

SANDBOX_TESTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'sandbox')
REDIRECT_URI = 'http://127.0.0.1:8069/epilot_outlook/oauth/callback'


def _load(module_name, file_name):
    spec = importlib.util.spec_from_file_location(module_name, os.path.join(SANDBOX_TESTS, file_name))
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


_load('sandbox_signin', 'signin.py')
try:
    _sandbox_fixtures = _load('sandbox_fixtures', 'conftest.py')
except Exception as exc:  # noqa: BLE001 - a broken sandbox must not take the unit tests down with it
    _SANDBOX_IMPORT_ERROR = '%s: %s' % (type(exc).__name__, exc)

    @pytest.fixture
    def sandbox():
        pytest.fail("The sandbox cannot be imported (%s)" % _SANDBOX_IMPORT_ERROR)

    @pytest.fixture
    def http(sandbox):
        yield None
else:
    _sandbox_session = _sandbox_fixtures._sandbox_session
    sandbox = _sandbox_fixtures.sandbox
    http = _sandbox_fixtures.http


@pytest.fixture
def demo(sandbox):
    """Contoso: an app, an admin, a service account and shared mailboxes (``m365_sandbox.seed``)."""
    from m365_sandbox.seed import seed_demo
    return seed_demo(sandbox.state, redirect_uris=[REDIRECT_URI])
