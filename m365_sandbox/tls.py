"""A certificate authority of the sandbox's own (trustme), and a server certificate for loopback."""
from __future__ import annotations

import os

import trustme


def make_certificates(workdir: str) -> dict:
    """Write ``ca.pem``, ``server.pem`` and ``server-key.pem`` into ``workdir``; return their paths.

    Clients trust the sandbox by pointing their CA bundle at ``ca.pem`` (``verify=`` in requests and MSAL).
    """
    os.makedirs(workdir, exist_ok=True)
    ca = trustme.CA(organization_name="M365 Sandbox CA")
    cert = ca.issue_cert("127.0.0.1", "localhost", "::1")
    paths = {"ca": os.path.join(workdir, "ca.pem"), "cert": os.path.join(workdir, "server.pem"),
             "key": os.path.join(workdir, "server-key.pem")}
    ca.cert_pem.write_to_path(paths["ca"])
    cert.cert_chain_pems[0].write_to_path(paths["cert"])
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(paths["cert"], append=True)
    cert.private_key_pem.write_to_path(paths["key"])
    return paths
