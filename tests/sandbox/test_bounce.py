"""NDRs and automatic replies as Exchange Online puts them in a mailbox (microsoft-graph.md §3.3.1; mail_bounce.py).

Each is read back through Graph as the addon reads it (``$select`` with ``internetMessageHeaders``) and mapped by
the plain layer, so the sandbox and the addon's reading of Microsoft's behaviour are checked against each other.
"""
from outlook_core.mailbox import MESSAGE_SELECT
from outlook_core.mapping import map_message

from mail_helpers import seed, url

SHARED = "support@contoso.onmicrosoft.com"


def _send(sandbox, http, s, to, subject="RE: Your order 4711"):
    message = {"subject": subject, "body": {"contentType": "html", "content": "<p>Here you are.</p>"},
               "from": {"emailAddress": {"address": SHARED}},
               "toRecipients": [{"emailAddress": {"address": address}} for address in to]}
    resp = http.post(url(sandbox, f"/users/{SHARED}/sendMail"), headers=s.auth, json={"message": message})
    assert resp.status_code == 202, resp.text
    return http.get(f"{sandbox.control_base}/mail/sent").json()["value"][-1]


def _inbox(sandbox, http, s):
    resp = http.get(url(sandbox, f"/users/{SHARED}/mailFolders/inbox/messages"), headers={
        **s.auth, "Prefer": 'IdType="ImmutableId", outlook.body-content-type="html"'},
        params={"$select": MESSAGE_SELECT, "$expand": "attachments"})
    assert resp.status_code == 200, resp.text
    return resp.json()["value"]


def test_mail_to_an_invalid_domain_bounces_into_the_sending_mailbox(sandbox, http):
    s = seed(sandbox.state, send_as=True)
    sent = _send(sandbox, http, s, ["anna@nowhere.invalid"])
    [item] = _inbox(sandbox, http, s)
    assert item["subject"] == "Undeliverable: RE: Your order 4711"
    assert item["from"]["emailAddress"] == {
        "name": "Microsoft Outlook",
        "address": "MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@contoso.onmicrosoft.com"}
    headers = {h["name"]: h["value"] for h in item["internetMessageHeaders"]}
    assert headers["X-MS-Exchange-Message-Is-Ndr"] == ""
    assert headers["In-Reply-To"] == sent["internetMessageId"] and headers["Auto-Submitted"] == "auto-replied"
    # Outlook threads the report with the sent message; the original comes attached as an item.
    assert item["conversationId"] == sent["conversationId"]
    [attachment] = item["attachments"]
    assert attachment["@odata.type"] == "#microsoft.graph.itemAttachment"
    assert attachment["contentType"] == "message/rfc822"
    message = map_message(item, "inbox")
    assert (message.kind, message.bounced_message_id) == ("ndr", sent["internetMessageId"])
    assert (message.bounce_status, message.bounce_reason) == ("5.4.310", "domain_unknown")
    assert message.bounce_recipients == ("anna@nowhere.invalid",)


def test_one_report_for_the_refused_recipients_none_for_the_others(sandbox, http):
    s = seed(sandbox.state, send_as=True)
    sandbox.state.settings["bounce_addresses"] = {"gone@fabrikam.example": "5.1.1"}
    _send(sandbox, http, s, ["gone@fabrikam.example", "b@nowhere.invalid", "fine@fabrikam.example"])
    [item] = _inbox(sandbox, http, s)
    message = map_message(item, "inbox")
    assert (message.bounce_status, message.bounce_reason) == ("5.1.1", "recipient_unknown")
    assert message.bounce_recipients == ("gone@fabrikam.example", "b@nowhere.invalid")
    _send(sandbox, http, s, ["fine@fabrikam.example"])
    assert len(_inbox(sandbox, http, s)) == 1


def test_a_late_bounce_through_the_control_plane(sandbox, http):
    s = seed(sandbox.state, send_as=True)
    sent = _send(sandbox, http, s, ["kunde@fabrikam.example"])
    assert _inbox(sandbox, http, s) == []
    resp = http.post(f"{sandbox.control_base}/mail/bounce", json={
        "internetMessageId": sent["internetMessageId"], "status": "5.2.2"})
    assert resp.status_code == 201 and resp.json()["mailbox"] == SHARED
    [item] = _inbox(sandbox, http, s)
    message = map_message(item, "inbox")
    assert (message.kind, message.bounced_message_id) == ("ndr", sent["internetMessageId"])
    assert (message.bounce_reason, message.bounce_recipients) == ("mailbox_full", ("kunde@fabrikam.example",))
    assert http.post(f"{sandbox.control_base}/mail/bounce", json={"id": "nope"}).status_code == 404
    assert http.post(f"{sandbox.control_base}/mail/bounce", json={
        "internetMessageId": sent["internetMessageId"], "status": "9.9.9"}).status_code == 400


def test_an_out_of_office_reply_through_the_control_plane(sandbox, http):
    s = seed(sandbox.state, send_as=True)
    sent = _send(sandbox, http, s, ["kunde@fabrikam.example"])
    resp = http.post(f"{sandbox.control_base}/mail/auto-reply", json={
        "mailbox": SHARED, "from": "kunde@fabrikam.example", "in_reply_to": sent["internetMessageId"]})
    assert resp.status_code == 201
    [item] = _inbox(sandbox, http, s)
    assert item["subject"] == "Automatic reply: RE: Your order 4711"
    assert item["conversationId"] == sent["conversationId"]
    headers = {h["name"]: h["value"] for h in item["internetMessageHeaders"]}
    assert headers["Auto-Submitted"] == "auto-replied" and headers["X-Auto-Response-Suppress"] == "All"
    assert headers["X-MS-Exchange-Inbox-Rules-Loop"] == "kunde@fabrikam.example"
    assert map_message(item, "inbox").kind == "auto_reply"
    assert http.post(f"{sandbox.control_base}/mail/auto-reply", json={"from": "x@y.example"}).status_code == 400
