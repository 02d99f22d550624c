"""The web page on the graph app: browse mailboxes, deliver an inbound message, everything escaped."""
from urllib.parse import urljoin

from m365_sandbox.seed import seed_demo

EVIL = '<script>alert("x")</script>'


def test_index_lists_mailboxes_and_the_deliver_form(sandbox, http):
    assert "Nothing seeded yet" in http.get(sandbox.web_url).text
    seed_demo(sandbox.state, messages=False)
    page = http.get(sandbox.web_url)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for box in ("support", "billing", "sales", "hr", "svc-helpdesk"):
        assert f"{box}@contoso.onmicrosoft.com" in page.text
    assert 'action="/web/deliver"' in page.text and "<script" not in page.text


def test_deliver_then_browse_inbox_and_message_escaped(sandbox, http):
    demo = seed_demo(sandbox.state, messages=False)
    resp = http.post(urljoin(sandbox.web_url, "/web/deliver"), allow_redirects=False, data={
        "mailbox": "support@contoso.onmicrosoft.com", "from": "kunde@example.com", "subject": f"Help {EVIL}",
        "body": f"<p>My invoice</p>{EVIL}"})
    assert resp.status_code == 303
    box_id = demo["shared_mailboxes"]["support@contoso.onmicrosoft.com"]["id"]
    inbox = http.get(urljoin(sandbox.web_url, resp.headers["Location"]))
    assert "Help &lt;script&gt;" in inbox.text and "<script" not in inbox.text
    msg = next(m for m in sandbox.state.messages.values() if m.mailbox_id == box_id)
    assert msg.subject == f"Help {EVIL}" and msg.folder_id == sandbox.state.folder_by_ref(box_id, "inbox").id
    view = http.get(urljoin(sandbox.web_url, f"/web/mailboxes/{box_id}/messages/{msg.immutable_id}"))
    assert view.status_code == 200 and "kunde@example.com" in view.text
    assert '<iframe sandbox=""' in view.text and "<script" not in view.text
    assert "&lt;p&gt;My invoice" in view.text
    sent = http.get(urljoin(sandbox.web_url, f"/web/mailboxes/{box_id}?folder=sentitems"))
    assert "Sent Items" in sent.text and "Help" not in sent.text


def test_unknown_mailbox_and_message_are_404(sandbox, http):
    seed_demo(sandbox.state, messages=False)
    assert http.get(urljoin(sandbox.web_url, "/web/mailboxes/nobody")).status_code == 404
    box = sandbox.state.user_by_ref("hr@contoso.onmicrosoft.com")
    assert http.get(urljoin(sandbox.web_url, f"/web/mailboxes/{box.id}/messages/nope")).status_code == 404
    resp = http.post(urljoin(sandbox.web_url, "/web/deliver"), data={"mailbox": "nobody@x"}, allow_redirects=False)
    assert resp.status_code == 404
