"""The Microsoft 365 sandbox as a real process beside the Odoo test server.

Odoo's tests talk to it over HTTPS on 127.0.0.1, exactly as the addon talks to Microsoft: Odoo's test guard
lets loopback ``requests`` through. One sandbox process serves the whole test run; every test class resets
and re-seeds it through the control API.
"""
import atexit
import json
import os
import select
import subprocess
import sys
import tempfile
import threading
from urllib.parse import urlsplit

import requests

# epilot_outlook/tests/ -> repository root, where the m365_sandbox package lives beside the addon.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
START_TIMEOUT_S = 30


class SandboxProcess:
    """A running ``python -m m365_sandbox serve``; read its URLs from :attr:`info`."""

    _running = None

    def __init__(self):
        if not os.path.isdir(os.path.join(REPO_ROOT, "m365_sandbox")):
            raise RuntimeError("m365_sandbox is not beside the addon (%s): the Odoo suite needs it" % REPO_ROOT)
        # Its log goes to a file: a pipe nobody reads fills up and freezes the sandbox mid-test.
        self.log = tempfile.NamedTemporaryFile(prefix="m365-sandbox-", suffix=".log", delete=False)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "m365_sandbox", "serve", "--allow-http-loopback-notification-urls"],
            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=self.log, text=True,
        )
        ready, _, _ = select.select([self.process.stdout], [], [], START_TIMEOUT_S)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            self.process.kill()
            with open(self.log.name) as log:
                raise RuntimeError("the sandbox did not start: %s" % log.read()[-2000:])
        self.info = json.loads(line)
        # Only the first line is ours; keep draining the rest for the same reason as above.
        threading.Thread(target=self.process.stdout.read, daemon=True).start()
        self.http = requests.Session()
        self.http.verify = self.info["ca_bundle"]
        self.http.trust_env = False  # Else REQUESTS_CA_BUNDLE from the environment overrides ``verify``.
        atexit.register(self.stop)

    @classmethod
    def get(cls):
        """The one sandbox of this test run, started on first use."""
        if cls._running is None or cls._running.process.poll() is not None:
            cls._running = cls()
        return cls._running

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def allowed_hosts(self):
        """The sandbox's sign-in and Graph hosts (``host:port``), as the system parameter
        ``epilot_outlook.allowed_hosts`` lists them: a connection may point only at Microsoft's hosts and those."""
        return ' '.join(urlsplit(self.info[key]).netloc for key in ('authority_base_url', 'graph_base_url'))

    def allow_in(self, env):
        """Allow the sandbox's hosts in ``env``'s database (as a system administrator would)."""
        env['ir.config_parameter'].sudo().set_param('epilot_outlook.allowed_hosts', self.allowed_hosts())

    # --- control API ----------------------------------------------------------------------------------

    def control(self, method, path, payload=None):
        """Call the control API; return its JSON answer (raise on an error status)."""
        response = self.http.request(method, self.info["control_base_url"] + path, json=payload, timeout=30)
        response.raise_for_status()
        return response.json() if response.content else None

    def reset_and_seed(self, redirect_uris):
        """Forget everything, then seed the demo tenant with ``redirect_uris`` registered on its app."""
        self.control("POST", "/reset")
        # A reset restores the default settings; Odoo's test server only speaks http on loopback.
        self.control("POST", "/settings", {"allow_http_loopback_notification_urls": True})
        return self.control("POST", "/seed", {"profile": "demo", "redirect_uris": list(redirect_uris)})
