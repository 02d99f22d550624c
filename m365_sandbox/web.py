"""Room: web. A small server-rendered page on the graph app to look inside the sandbox.

* ``GET  /``: tenants, users and shared mailboxes, and a form to deliver an inbound message;
* ``GET  /web/mailboxes/{id}?folder=inbox|archive|…``: a folder's messages (any well-known name or folder id),
  newest first;
* ``GET  /web/mailboxes/{id}/messages/{immutable_id}``: one message (the HTML body in a sandboxed iframe);
* ``POST /web/deliver``: form fields ``mailbox``, ``from``, ``subject``, ``body``; delivers through the mail
  room's ``deliver_inbound`` and redirects (303) to that mailbox's Inbox.

No JavaScript; everything the page shows is escaped.
"""
from __future__ import annotations

from functools import partial
from html import escape
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse
from starlette.routing import Route

from .graph_mail import deliver_inbound
from .identity import form_of
from .state import SandboxState, iso

FOLDERS = (("inbox", "Inbox"), ("archive", "Archive"), ("sentitems", "Sent Items"), ("drafts", "Drafts"),
           ("deleteditems", "Deleted Items"), ("junkemail", "Junk Email"))

STYLE = ("body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;width:100%}"
         "td,th{border-bottom:1px solid #ddd;padding:.3em .5em;text-align:left}nav a{margin-right:1em}"
         "iframe{width:100%;height:24em;border:1px solid #ccc}label{display:block;margin:.4em 0}")


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(f'<!doctype html><html><head><meta charset="utf-8"><title>{escape(title)}</title>'
                        f'<style>{STYLE}</style></head><body><nav><a href="/">M365 sandbox</a></nav>'
                        f'<h1>{escape(title)}</h1>{body}</body></html>', status_code=status)


def addr(a: dict | None) -> str:
    if not a:
        return ""
    name, address = a.get("name") or "", a.get("address") or ""
    return escape(f"{name} <{address}>" if name and name != address else address)


def routes(state: SandboxState):
    return [Route("/", partial(index, state), methods=["GET"]),
            Route("/web/mailboxes/{mid}", partial(folder_view, state), methods=["GET"]),
            Route("/web/mailboxes/{mid}/messages/{msg}", partial(message_view, state), methods=["GET"]),
            Route("/web/deliver", partial(deliver_form, state), methods=["POST"])]


async def index(state: SandboxState, _request: Request):
    with state.lock:
        rows = []
        for user in sorted(state.users.values(), key=lambda u: (u.tenant_id, u.kind, u.upn)):
            tenant = state.tenants.get(user.tenant_id)
            count = sum(1 for m in state.messages.values() if m.mailbox_id == user.id)
            flags = ", ".join(f for f, on in (("admin", user.is_tenant_admin), ("disabled", user.disabled),
                                              ("MFA", user.mfa_required), ("CA blocked", user.ca_blocked)) if on)
            rows.append(f'<tr><td><a href="/web/mailboxes/{quote(user.id)}">{escape(user.upn)}</a></td>'
                        f'<td>{escape(user.display_name)}</td><td>{escape(user.kind)}</td>'
                        f'<td>{escape(tenant.domain if tenant else user.tenant_id)}</td><td>{count}</td>'
                        f'<td>{escape(flags)}</td></tr>')
        options = "".join(f'<option value="{escape(u.upn)}">{escape(u.upn)}</option>'
                          for u in state.users.values() if u.kind == "shared")
        consents = "".join(f"<li>{escape(c.client_id)} in {escape(c.tenant_id)}: "
                           f"{escape(' '.join(sorted(c.scopes)))}</li>" for c in state.consents.values())
    table = ('<table id="mailboxes"><tr><th>Mailbox</th><th>Name</th><th>Kind</th><th>Tenant</th>'
             f'<th>Messages</th><th>Flags</th></tr>{"".join(rows)}</table>') if rows else \
        "<p>Nothing seeded yet: <code>POST /control/seed {\"profile\": \"demo\"}</code>.</p>"
    form = ('<h2>Deliver an inbound message</h2><form method="post" action="/web/deliver">'
            f'<label>To <select name="mailbox">{options}</select></label>'
            '<label>From <input name="from" value="customer@example.com" size="40"></label>'
            '<label>Subject <input name="subject" size="60"></label>'
            '<label>Body (HTML)<br><textarea name="body" rows="6" cols="70"></textarea></label>'
            '<button type="submit">Deliver</button></form>') if options else ""
    return page("Mailboxes", table + (f"<h2>Admin consents</h2><ul>{consents}</ul>" if consents else "") + form)


def mailbox_or_404(state: SandboxState, mid: str):
    return state.users.get(mid) or state.user_by_ref(mid)


async def folder_view(state: SandboxState, request: Request):
    box = mailbox_or_404(state, request.path_params["mid"])
    if box is None:
        return page("Unknown mailbox", "<p>No such mailbox.</p>", 404)
    wanted = request.query_params.get("folder", "inbox")
    with state.lock:
        folder = state.folder_by_ref(box.id, wanted)
        msgs = sorted((m for m in state.messages.values() if folder and m.folder_id == folder.id),
                      key=lambda m: m.received or m.created or state.now(), reverse=True)
        rows = "".join(
            f'<tr><td><a href="/web/mailboxes/{quote(box.id)}/messages/{quote(m.immutable_id)}">'
            f'{escape(m.subject or "(no subject)")}</a></td><td>{addr(m.from_addr)}</td>'
            f'<td>{addr(m.sender_addr) if m.sender_addr != m.from_addr else ""}</td>'
            f'<td>{escape(iso(m.received or m.sent or m.created)) if (m.received or m.sent or m.created) else ""}'
            f'</td><td>{"" if m.is_read else "unread"}</td></tr>' for m in msgs)
    nav = " ".join(f'<a href="/web/mailboxes/{quote(box.id)}?folder={key}">{label}</a>' for key, label in FOLDERS)
    body = (f"<p>{escape(box.display_name)} ({escape(box.kind)})</p><nav>{nav}</nav>"
            f'<h2>{escape(folder.display_name if folder else wanted)}</h2>'
            f'<table id="messages"><tr><th>Subject</th><th>From</th><th>Sender</th><th>Received</th><th></th></tr>'
            f"{rows}</table>")
    return page(box.upn, body)


async def message_view(state: SandboxState, request: Request):
    box = mailbox_or_404(state, request.path_params["mid"])
    msg = state.messages.get(request.path_params["msg"])
    if box is None or msg is None or msg.mailbox_id != box.id:
        return page("Unknown message", "<p>No such message.</p>", 404)
    recipients = ", ".join(addr(a) for a in msg.to)
    cc = ", ".join(addr(a) for a in msg.cc)
    content = msg.body if msg.body_content_type == "html" else f"<pre>{escape(msg.body)}</pre>"
    attachments = "".join(f"<li>{escape(a.name)} ({escape(a.content_type)}, {len(a.content)} bytes"
                          f"{', inline' if a.is_inline else ''})</li>" for a in msg.attachments)
    body = (f'<table id="headers"><tr><th>From</th><td>{addr(msg.from_addr)}</td></tr>'
            f'<tr><th>Sender</th><td>{addr(msg.sender_addr)}</td></tr><tr><th>To</th><td>{recipients}</td></tr>'
            f'<tr><th>Cc</th><td>{cc}</td></tr><tr><th>Message-ID</th><td>{escape(msg.internet_message_id)}</td></tr>'
            f'<tr><th>Graph id</th><td>{escape(msg.id)}</td></tr></table>'
            f'<iframe sandbox="" srcdoc="{escape(content)}" title="body"></iframe>'
            + (f"<h2>Attachments</h2><ul>{attachments}</ul>" if attachments else ""))
    return page(msg.subject or "(no subject)", body)


async def deliver_form(state: SandboxState, request: Request):
    form = await form_of(request)
    try:
        msg = deliver_inbound(state, form.get("mailbox", ""), from_addr=form.get("from") or "customer@example.com",
                              subject=form.get("subject", ""), body_html=form.get("body", ""))
    except KeyError:
        return page("Unknown mailbox", "<p>No such mailbox.</p>", 404)
    return RedirectResponse(f"/web/mailboxes/{quote(msg.mailbox_id)}?folder=inbox", status_code=303)
