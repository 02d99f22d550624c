"""Benchmark (not a test): how fast the sandbox serves mail through Graph list pages and delta pages.

Starts the sandbox in-process over HTTPS, generates N messages in a shared mailbox, then times
* the message list with ``$top=1000``, following ``@odata.nextLink`` verbatim, and
* a full initial delta sync with ``Prefer: odata.maxpagesize=1000``,
and prints messages/second and the ratio to the 2,000 msg/s target.

    .venv/bin/python bench/bench_sandbox.py [--messages 20000] [--select subject,receivedDateTime]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
for _var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):      # let Session.verify reach the sandbox CA
    os.environ.pop(_var, None)

import requests  # noqa: E402

from m365_sandbox import server  # noqa: E402
from m365_sandbox.graph_mail import generate_mail  # noqa: E402
from m365_sandbox.state import SandboxState  # noqa: E402

TARGET = 2000.0


def follow(session: requests.Session, first: str, headers: dict, stop_key: str) -> tuple[int, int, int]:
    """Follow links from ``first`` until a response without ``stop_key``; (items, pages, bytes)."""
    items = pages = size = 0
    link = first
    while link:
        resp = session.get(link, headers=headers)
        resp.raise_for_status()
        size += len(resp.content)
        body = resp.json()
        items += len(body["value"])
        pages += 1
        link = body.get(stop_key)
    return items, pages, size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--select", default=None, help="optional $select for both runs (default: full messages)")
    args = parser.parse_args()

    state = SandboxState()
    tenant = state.add_tenant("contoso.onmicrosoft.com")
    app = state.add_app(tenant.id, "bench", [])
    service = state.add_user(tenant.id, "svc@contoso.onmicrosoft.com", "Service")
    shared = state.add_user(tenant.id, "support@contoso.onmicrosoft.com", "Support", kind="shared")
    state.grant(shared.id, service.id, full_access=True)
    token, _ = state.issue_tokens(app.client_id, service.id, {"Mail.Read.Shared"})
    state.settings["empty_pages"] = False       # measure serving, not the quirk
    state.settings["delta_replays"] = False

    started = time.perf_counter()
    generate_mail(state, shared.upn, args.messages, days=90, seed=1)
    gen_s = time.perf_counter() - started
    print(f"generated {args.messages:,} messages in {gen_s:.2f} s ({args.messages / gen_s:,.0f} msg/s)")

    running = server.start(state)
    try:
        session = requests.Session()
        session.verify = running.ca_path
        auth = {"Authorization": f"Bearer {token.token}"}
        folder = f"{running.graph_base}/users/{shared.upn}/mailFolders/inbox/messages"
        select = f"&$select={args.select}" if args.select else ""
        delta_select = f"?$select={args.select}" if args.select else ""
        results = []
        for name, first, headers, stop in (
                ("list  $top=1000", f"{folder}?$top=1000{select}", auth, "@odata.nextLink"),
                ("delta maxpagesize=1000", f"{folder}/delta{delta_select}",
                 {**auth, "Prefer": "odata.maxpagesize=1000"}, "@odata.nextLink")):
            t0 = time.perf_counter()
            items, pages, size = follow(session, first, headers, stop)
            took = time.perf_counter() - t0
            rate = items / took
            results.append(rate)
            print(f"{name:24s} {items:,} messages in {pages} pages, {size / 1e6:.1f} MB, {took:.2f} s: "
                  f"{rate:,.0f} msg/s = {rate / TARGET:.1f}x the {TARGET:,.0f} msg/s target")
            assert items >= args.messages, (items, args.messages)
        session.close()                             # no idle keep-alive connections at shutdown
        counts = state.extra.get("mail_counts", {}).get("mailboxes", {})
        print(f"requests per mailbox: {dict(counts)}")
        return 0 if min(results) >= TARGET else 1
    finally:
        running.stop()


if __name__ == "__main__":
    sys.exit(main())
