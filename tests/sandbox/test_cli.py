"""``python -m m365_sandbox serve`` / ``ctl`` as real subprocesses: one JSON line, fast start, state file."""
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests


ROOT = Path(__file__).resolve().parents[2]


def start(tmp_path, *extra):
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "m365_sandbox", "serve", "--workdir", str(tmp_path / "wd"),
                             *extra], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready, _, _ = select.select([proc.stdout], [], [], 15)
    if not ready:
        proc.kill()
        pytest.fail("no JSON line within 15 s: " + proc.stderr.read())
    line = proc.stdout.readline()
    elapsed = time.perf_counter() - t0
    assert line, proc.stderr.read()
    return proc, json.loads(line), elapsed


def stop(proc, keep_alive_to=None):
    if keep_alive_to:                        # an idle keep-alive TLS connection must not hold the exit
        session = requests.Session()
        session.trust_env, session.verify = False, keep_alive_to["ca_bundle"]
        session.get(keep_alive_to["web_url"])
    t0 = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    print(f"SIGTERM to exit: {time.perf_counter() - t0:.2f} s")
    assert time.perf_counter() - t0 < 5
    assert proc.stdout.read() == ""          # exactly one line on stdout


def ctl(info, *args):
    out = subprocess.run([sys.executable, "-m", "m365_sandbox", "ctl", "--control-url", info["control_base_url"],
                          "--ca", info["ca_bundle"], *args], cwd=ROOT, capture_output=True, text=True, timeout=30)
    return out.returncode, json.loads(out.stdout)


def test_serve_prints_one_json_line_fast_and_obeys_ctl(tmp_path):
    state_file = tmp_path / "state.json"
    proc, info, elapsed = start(tmp_path, "--seed", "demo", "--state-file", str(state_file),
                                "--redirect-uri", "http://127.0.0.1:8069/epilot_outlook/oauth/callback")
    try:
        print(f"\nsandbox start to JSON line: {elapsed:.2f} s (in-process {info['startup_seconds']} s)")
        assert elapsed < 5
        for key in ("authority_base_url", "graph_base_url", "control_base_url", "web_url", "ca_bundle",
                    "tenant_id", "tenant_domain", "client_id", "client_secret", "admin", "service_account",
                    "shared_mailboxes"):
            assert info[key], key
        assert info["graph_base_url"].endswith("/v1.0") and os.path.exists(info["ca_bundle"])
        code, state = ctl(info, "state")
        assert code == 0 and state["tenants"][0]["id"] == info["tenant_id"]
        svc = info["service_account"]["username"]
        assert ctl(info, "mfa", svc, "on")[1]["mfa_required"] is True
        assert ctl(info, "mfa", svc, "off")[1]["mfa_required"] is False
        code, out = ctl(info, "revoke-consent", "nowhere.example")
        assert code == 1 and "unknown tenant" in out["error"]
        code, out = ctl(info, "deliver", "support@contoso.onmicrosoft.com", "--from", "kunde@example.com",
                        "--subject", "Rechnung")
        assert code == 0 and out["internetMessageId"]
        code, counts = ctl(info, "raw", "GET", "/state")
        assert counts["counts"]["messages"] == info["demo_messages"] + 1
        code, out = ctl(info, "advance", "--days", "1")
        assert code == 0 and out["clock_offset_seconds"] == 86400
        doc = requests.get(f"{info['authority_base_url']}/{info['tenant_id']}/v2.0/.well-known/openid-configuration",
                           verify=info["ca_bundle"]).json()
        assert doc["token_endpoint"].startswith(info["authority_base_url"])
    finally:
        stop(proc, keep_alive_to=info)
    saved = json.loads(state_file.read_text())
    assert [t["id"] for t in saved["tenants"]] == [info["tenant_id"]]

    # a restart with the same state file keeps the tenant, the app and its secret
    proc, again, _ = start(tmp_path, "--seed", "demo", "--state-file", str(state_file))
    try:
        assert (again["tenant_id"], again["client_id"], again["client_secret"]) == (
            info["tenant_id"], info["client_id"], info["client_secret"])
        assert ctl(again, "state")[1]["clock_offset_seconds"] == 86400
    finally:
        stop(proc)


def test_serve_without_seed_and_fixed_ports(tmp_path):
    proc, info, _ = start(tmp_path, "--lenient-subscriptions", "--allow-http-loopback-notification-urls")
    try:
        assert "client_id" not in info
        code, settings = ctl(info, "settings")
        assert settings["shared_mailbox_subscriptions"] == "lenient"
        assert settings["allow_http_loopback_notification_urls"] is True
        code, seeded = ctl(info, "seed")
        assert code == 0 and seeded["client_id"]
    finally:
        stop(proc)


def test_private_files_are_created_0600(tmp_path):
    """The state file (refresh tokens in clear) and make run's copy of the sandbox's stdout (the credentials)."""
    from m365_sandbox.__main__ import save_state
    from m365_sandbox.state import SandboxState

    old_umask = os.umask(0o022)
    try:
        state_file = tmp_path / "state.json"
        save_state(SandboxState(), str(state_file))
        assert state_file.stat().st_mode & 0o777 == 0o600
        state_file.chmod(0o644)  # Left by an older sandbox: saving again makes it private.
        (tmp_path / "state.json.tmp").write_text("")
        (tmp_path / "state.json.tmp").chmod(0o644)
        save_state(SandboxState(), str(state_file))
        assert state_file.stat().st_mode & 0o777 == 0o600

        out = tmp_path / "sandbox.out"
        out.write_text("old")
        out.chmod(0o644)
        subprocess.run(["bash", "-c", 'source scripts/lib.sh; private_file "$1"; echo secret > "$1"', "-",
                        str(out)], cwd=ROOT, check=True, env=dict(os.environ, VENV=sys.prefix))
        assert out.stat().st_mode & 0o777 == 0o600 and out.read_text() == "secret\n"
    finally:
        os.umask(old_umask)
