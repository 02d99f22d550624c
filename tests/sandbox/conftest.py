"""Fixtures: one sandbox per test session, with clean state for every test."""
import os

import pytest
import requests

from m365_sandbox import server

# requests (2.31) lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a Session's ``verify``, which MSAL's
# ``verify=ca_path`` and the ``http`` fixture rely on; this machine sets both to the system bundle.
for _var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
    os.environ.pop(_var, None)


@pytest.fixture(scope="session")
def _sandbox_session():
    running = server.start()
    yield running
    running.stop()


@pytest.fixture
def sandbox(_sandbox_session):
    """A running sandbox (``.state``, ``.authority_base``, ``.graph_base``, ``.control_base``, ``.ca_path``)."""
    _sandbox_session.state.reset()
    yield _sandbox_session
    _sandbox_session.state.reset()


@pytest.fixture
def http(sandbox):
    """A ``requests.Session`` that trusts the sandbox's CA."""
    session = requests.Session()
    session.verify = sandbox.ca_path
    yield session
    session.close()
