"""The per-thread HTTPS session is keyed by endpoint *and* CA bundle (outlook_core.graph.thread_session).

requests keeps its connection pools by host and port, and a pooled connection reconnects with the CA it was made
with. When the CA bundle changes on the same host and port (an admin edits a connection's CA bundle; in the Odoo
suite, a sandbox restarted on a port an earlier one had, with a new CA), a session kept per endpoint only fails
the TLS check: the full suite met ``CERTIFICATE_VERIFY_FAILED`` so (TestReadFlagsRunner, 2026-12-06).
"""
import json
import socket
import subprocess
import sys
import tempfile

import pytest
import requests

from outlook_core.graph import thread_session

REPO = __file__.rsplit('/tests/', 1)[0]


def _free_port():
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def _start_sandbox(graph_port):
    process = subprocess.Popen(
        [sys.executable, '-m', 'm365_sandbox', 'serve', '--graph-port', str(graph_port), '--workdir', tempfile.mkdtemp()],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return process, json.loads(process.stdout.readline())


def _stop(process):
    process.terminate()
    process.wait(timeout=10)


def test_a_new_ca_on_the_same_host_and_port_gets_its_own_session():
    port = _free_port()
    first, first_info = _start_sandbox(port)
    try:
        url = first_info['graph_base_url']
        before = thread_session(url, first_info['ca_bundle'])
        assert before.get(url + '/me', verify=first_info['ca_bundle'], timeout=10).status_code == 401
    finally:
        _stop(first)
    second, second_info = _start_sandbox(port)
    try:
        assert second_info['graph_base_url'] == url and second_info['ca_bundle'] != first_info['ca_bundle']
        # Why the key holds the CA: the session of the first CA fails against the second sandbox.
        with pytest.raises(requests.exceptions.SSLError):
            before.get(url + '/me', verify=second_info['ca_bundle'], timeout=10)
        after = thread_session(url, second_info['ca_bundle'])
        assert after is not before
        assert after.get(url + '/me', verify=second_info['ca_bundle'], timeout=10).status_code == 401
        assert thread_session(url, second_info['ca_bundle']) is after, "one session per endpoint and CA, kept"
    finally:
        _stop(second)
