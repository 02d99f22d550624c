"""Command line: ``python -m m365_sandbox serve ...`` and ``python -m m365_sandbox ctl ...`` (see README.md).

``serve`` prints exactly one JSON line on stdout once both listeners accept connections, then serves until
SIGTERM or SIGINT. ``ctl`` is a thin client of the control API.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time

SAVE_EVERY_S = 30


# ------------------------------------------------------------------------------------------------------
# serve
# ------------------------------------------------------------------------------------------------------

def save_state(state, path: str) -> None:
    """Write the state (refresh tokens, passwords, secrets in clear) to ``path``, readable by its owner only."""
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # A leftover temporary file keeps its old mode through O_CREAT.
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(state.to_json())
    os.replace(tmp, path)


def serve(args) -> int:
    started = time.perf_counter()
    from . import server
    from .seed import demo_summary, seed_demo
    from .state import SandboxState

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):       # before the JSON line: a prompt SIGTERM still saves
        signal.signal(sig, lambda *_: stop.set())
    state = SandboxState()
    loaded = bool(args.state_file and os.path.exists(args.state_file))
    if loaded:
        with open(args.state_file, encoding="utf-8") as fh:
            state.load_json(fh.read())
    if args.lenient_subscriptions:
        state.settings["shared_mailbox_subscriptions"] = "lenient"
    elif args.strict_subscriptions:      # as Microsoft documents it, also over a state file saved lenient
        state.settings["shared_mailbox_subscriptions"] = "documented"
    if args.allow_http_loopback_notification_urls:
        state.settings["allow_http_loopback_notification_urls"] = True
    running = server.start(state, host=args.host, login_port=args.login_port, graph_port=args.graph_port,
                           workdir=args.workdir)
    info = running.describe()
    if args.seed == "demo":
        summary = demo_summary(state, args.redirect_uri) if loaded else None
        info.update(summary or seed_demo(state, args.redirect_uri or None))
    info["state_file"] = args.state_file
    info["startup_seconds"] = round(time.perf_counter() - started, 3)
    sys.stdout.write(json.dumps(info) + "\n")
    sys.stdout.flush()

    while not stop.wait(SAVE_EVERY_S):
        if args.state_file:
            save_state(state, args.state_file)
    if args.state_file:
        save_state(state, args.state_file)
    running.stop()
    return 0


# ------------------------------------------------------------------------------------------------------
# ctl
# ------------------------------------------------------------------------------------------------------

def _flag(value: str) -> bool:
    return value.lower() in ("1", "on", "true", "yes", "required", "blocked")


def _json_value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def ctl_request(args):
    """``(method, path, body)`` for a ``ctl`` command."""
    c = args.command
    user = getattr(args, "user", None)
    simple = {"reset": ("POST", "/reset", None), "state": ("GET", "/state", None),
              "disable-user": ("POST", f"/users/{user}/disable", None),
              "enable-user": ("POST", f"/users/{user}/enable", None),
              "revoke-sessions": ("POST", f"/users/{user}/revoke-sessions", None),
              "sent": ("GET", "/mail/sent", None), "subscriptions": ("GET", "/subscriptions", None)}
    if c in simple:
        return simple[c]
    if c == "seed":
        body = _json_value(args.spec) if args.spec else {"profile": args.profile}
        if args.redirect_uri:
            body["redirect_uris"] = args.redirect_uri
        return "POST", "/seed", body
    if c == "advance":
        return "POST", "/clock/advance", {"seconds": args.seconds, "days": args.days}
    if c == "revoke-consent":
        return "POST", f"/tenants/{args.tenant}/consent/revoke", ({"client_id": args.client_id}
                                                                   if args.client_id else {})
    if c in ("reset-password", "change-password"):
        return "POST", f"/users/{user}/{c}", ({"password": args.password} if args.password else {})
    if c == "mfa":
        return "POST", f"/users/{user}/mfa", {"required": _flag(args.value)}
    if c == "ca-block":
        return "POST", f"/users/{user}/conditional-access", {"blocked": _flag(args.value)}
    if c == "expire-secret":
        return "POST", f"/apps/{args.client_id}/secret/expire", None
    if c == "new-secret":
        return "POST", f"/apps/{args.client_id}/secrets", None
    if c == "permission":
        return "POST", "/permissions", {"mailbox": args.mailbox, "user": user, "full_access": args.full_access,
                                        "send_as": args.send_as, "send_on_behalf": args.send_on_behalf}
    if c in ("settings", "faults"):
        body = {}
        for pair in args.pairs:
            key, _, value = pair.partition("=")
            body[key] = _json_value(value)
        return ("POST" if body else "GET"), f"/{c}", body or None
    if c == "deliver":
        return "POST", "/mail/deliver", {"mailbox": args.mailbox, "from": args.sender, "subject": args.subject,
                                         "body_html": args.body}
    if c == "mailboxes":
        body = {"prefix": args.prefix, "count": args.count, "start": args.start}
        if args.domain:
            body["domain"] = args.domain
        if args.grant:
            body["grant"] = {"user": args.grant, "full_access": args.full_access, "send_as": args.send_as,
                             "send_on_behalf": args.send_on_behalf}
        return "POST", "/mailboxes", body
    if c == "deliver-many":
        return "POST", "/mail/deliver-many", {"mailboxes": args.mailboxes, "from": args.sender,
                                              "subject": args.subject, "body_html": args.body}
    if c == "expire-subscription":
        return "POST", f"/subscriptions/{args.id}/expire" if args.id else "/subscriptions/expire", None
    if c == "raw":
        return args.method.upper(), args.path, _json_value(args.body) if args.body else None
    raise SystemExit(f"unknown command {c}")


def ctl(args) -> int:
    import requests
    method, path, body = ctl_request(args)
    session = requests.Session()
    session.trust_env = False             # REQUESTS_CA_BUNDLE would override verify=
    session.verify = args.ca or True
    resp = session.request(method, args.control_url.rstrip("/") + path, json=body, timeout=30)
    try:
        out = json.dumps(resp.json(), indent=2)
    except ValueError:
        out = resp.text
    print(out)
    return 0 if resp.status_code < 400 else 1


# ------------------------------------------------------------------------------------------------------
# argument parsing
# ------------------------------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m m365_sandbox", description="Microsoft 365 sandbox")
    sub = p.add_subparsers(dest="mode", required=True)

    s = sub.add_parser("serve", help="serve the login and graph apps over HTTPS")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--login-port", type=int, default=0, help="0: a free port")
    s.add_argument("--graph-port", type=int, default=0, help="0: a free port")
    s.add_argument("--seed", choices=["demo"], help="seed the demo tenant (not again when --state-file loads)")
    s.add_argument("--state-file", help="load at start when present; save every 30 s and on exit")
    s.add_argument("--workdir", help="where ca.pem and the server certificate go (default: a temp dir)")
    s.add_argument("--redirect-uri", action="append", default=[], help="the demo app's redirect URIs (repeat)")
    s.add_argument("--lenient-subscriptions", action="store_true",
                   help="allow subscriptions on shared mailboxes (the documented default is 403)")
    s.add_argument("--strict-subscriptions", action="store_true",
                   help="refuse subscriptions on shared mailboxes (403, Microsoft's documented behaviour), "
                        "also when a state file saved the lenient mode")
    s.add_argument("--allow-http-loopback-notification-urls", action="store_true")

    c = sub.add_parser("ctl", help="call the control API")
    c.add_argument("--control-url", default=os.environ.get("M365_SANDBOX_CONTROL_URL"),
                   required="M365_SANDBOX_CONTROL_URL" not in os.environ)
    c.add_argument("--ca", default=os.environ.get("M365_SANDBOX_CA"), help="the sandbox's ca.pem")
    cmds = c.add_subparsers(dest="command", required=True)
    for name in ("reset", "state", "sent", "subscriptions"):
        cmds.add_parser(name)
    seed = cmds.add_parser("seed")
    seed.add_argument("--profile", default="demo")
    seed.add_argument("--spec", help="an explicit seed as JSON (see README)")
    seed.add_argument("--redirect-uri", action="append", default=[])
    adv = cmds.add_parser("advance", help="move the sandbox clock forward")
    adv.add_argument("--seconds", type=float, default=0)
    adv.add_argument("--days", type=float, default=0)
    rc = cmds.add_parser("revoke-consent")
    rc.add_argument("tenant")
    rc.add_argument("--client-id")
    for name in ("disable-user", "enable-user", "revoke-sessions"):
        cmds.add_parser(name).add_argument("user")
    for name, text in (("reset-password", "an admin resets the password: subscriptions removed, refresh "
                                           "tokens revoked (50173)"),
                       ("change-password", "the user changes their own password: subscriptions removed, "
                                           "refresh tokens of confidential clients kept")):
        rp = cmds.add_parser(name, help=text)
        rp.add_argument("user")
        rp.add_argument("--password")
    for name in ("mfa", "ca-block"):
        sw = cmds.add_parser(name)
        sw.add_argument("user")
        sw.add_argument("value", help="on|off")
    for name in ("expire-secret", "new-secret"):
        cmds.add_parser(name).add_argument("client_id")
    perm = cmds.add_parser("permission")
    perm.add_argument("mailbox")
    perm.add_argument("user")
    for flag in ("--full-access", "--send-as", "--send-on-behalf"):
        perm.add_argument(flag, action="store_true")
    for name in ("settings", "faults"):
        cmds.add_parser(name).add_argument("pairs", nargs="*", help="KEY=JSON (null removes); none: show")
    dl = cmds.add_parser("deliver", help="deliver an inbound message to a mailbox's Inbox")
    dl.add_argument("mailbox")
    dl.add_argument("--from", dest="sender", required=True)
    dl.add_argument("--subject", default="Hello")
    dl.add_argument("--body", default="<p>Hello from the sandbox.</p>")
    mb = cmds.add_parser("mailboxes", help="create COUNT shared mailboxes PREFIX0001@domain..., in one call")
    mb.add_argument("prefix")
    mb.add_argument("count", type=int)
    mb.add_argument("--start", type=int, default=1, help="the first number (default 1)")
    mb.add_argument("--domain", help="the tenant's domain (default: the only tenant)")
    mb.add_argument("--grant", metavar="USER", help="give USER the rights below on each")
    for flag in ("--full-access", "--send-as", "--send-on-behalf"):
        mb.add_argument(flag, action="store_true")
    dm = cmds.add_parser("deliver-many", help="one inbound message into each mailbox's Inbox, in one call")
    dm.add_argument("mailboxes", nargs="+")
    dm.add_argument("--from", dest="sender", required=True)
    dm.add_argument("--subject", default="Hello")
    dm.add_argument("--body", default="<p>Hello from the sandbox.</p>")
    es = cmds.add_parser("expire-subscription")
    es.add_argument("id", nargs="?")
    raw = cmds.add_parser("raw", help="any control endpoint: METHOD PATH [JSON]")
    raw.add_argument("method")
    raw.add_argument("path", help="below /control, e.g. /mail/counts")
    raw.add_argument("body", nargs="?")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    return serve(args) if args.mode == "serve" else ctl(args)


if __name__ == "__main__":
    sys.exit(main())
