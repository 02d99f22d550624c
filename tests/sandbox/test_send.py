"""Sending as a shared mailbox (docs/microsoft-graph.md §4, §7.10)."""
import base64

from m365_sandbox.graph_mail import deliver_inbound

from mail_helpers import seed, url

SHARED_FROM = {"emailAddress": {"address": "support@contoso.onmicrosoft.com"}}


def _mail(**extra):
    message = {"subject": "Ihre Anfrage – Zählerstand", "body": {"contentType": "html", "content": "<p>Grüße</p>"},
               "toRecipients": [{"emailAddress": {"address": "kunde@example.com", "name": "Kunde"}}]}
    message.update(extra)
    return {"message": message}


def _sent(sandbox, http):
    return http.get(f"{sandbox.control_base}/mail/sent").json()["value"]


def _folder(sandbox, mailbox, name):
    folder = sandbox.state.folder_by_ref(mailbox.id, name)
    return [m for m in sandbox.state.messages.values() if m.folder_id == folder.id]


def test_send_as_from_equals_sender(sandbox, http):
    s = seed(sandbox.state, send_as=True, send_on_behalf=True)     # both rights: Send As wins
    resp = http.post(url(sandbox, "/me/sendMail"), headers=s.auth, json=_mail(**{"from": SHARED_FROM}))
    assert resp.status_code == 202 and resp.content == b""
    [record] = _sent(sandbox, http)
    assert record["from"]["address"] == s.shared.upn and record["sender"]["address"] == s.shared.upn
    # /me/sendMail: the copy goes to the service account's Sent Items
    [copy] = _folder(sandbox, s.service, "sentitems")
    assert copy.from_addr["address"] == s.shared.upn and copy.sender_addr["address"] == s.shared.upn
    assert _folder(sandbox, s.shared, "sentitems") == []


def test_send_on_behalf_sender_is_service_account(sandbox, http):
    s = seed(sandbox.state, send_on_behalf=True)
    resp = http.post(url(sandbox, f"/users/{s.shared.upn}/sendMail"), headers=s.auth, json=_mail())
    assert resp.status_code == 202
    [record] = _sent(sandbox, http)
    assert record["from"]["address"] == s.shared.upn
    assert record["sender"]["address"] == s.service.upn
    # /users/{shared}/sendMail: the copy goes to the shared mailbox's Sent Items
    [copy] = _folder(sandbox, s.shared, "sentitems")
    got = http.get(url(sandbox, f"/users/{s.shared.upn}/messages/{copy.id}"), headers=s.auth).json()
    assert got["from"]["emailAddress"]["address"] == s.shared.upn
    assert got["sender"]["emailAddress"]["address"] == s.service.upn


def test_no_send_right_is_403_send_as_denied(sandbox, http):
    s = seed(sandbox.state)            # Full Access only
    for path in ("/me/sendMail", f"/users/{s.shared.upn}/sendMail"):
        resp = http.post(url(sandbox, path), headers=s.auth, json=_mail(**{"from": SHARED_FROM}))
        assert resp.status_code == 403, path
        err = resp.json()["error"]
        assert err["code"] == "ErrorSendAsDenied"
        assert err["message"].startswith("The user account which was used to submit this request does not have")
    assert _sent(sandbox, http) == []


def test_users_shared_send_mail_needs_full_access(sandbox, http):
    s = seed(sandbox.state, full_access=False, send_as=True)
    resp = http.post(url(sandbox, f"/users/{s.shared.upn}/sendMail"), headers=s.auth, json=_mail())
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "ErrorAccessDenied"
    # /me/sendMail with from = shared works with Send As alone
    resp = http.post(url(sandbox, "/me/sendMail"), headers=s.auth, json=_mail(**{"from": SHARED_FROM}))
    assert resp.status_code == 202


def test_save_to_sent_items_false(sandbox, http):
    s = seed(sandbox.state, send_as=True)
    body = {**_mail(), "saveToSentItems": False}
    assert http.post(url(sandbox, f"/users/{s.shared.upn}/sendMail"), headers=s.auth, json=body).status_code == 202
    assert _folder(sandbox, s.shared, "sentitems") == []
    assert _sent(sandbox, http)[0]["sentCopy"] is None


def test_mime_send_and_bad_base64(sandbox, http):
    s = seed(sandbox.state, send_as=True)
    mime = ("From: support@contoso.onmicrosoft.com\r\nTo: kunde@example.com\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Hallo</p>\r\n").encode()
    resp = http.post(url(sandbox, f"/users/{s.shared.upn}/sendMail"),
                     headers={**s.auth, "Content-Type": "text/plain"}, data=base64.b64encode(mime))
    assert resp.status_code == 202, resp.text
    [record] = _sent(sandbox, http)
    assert record["subject"] == "Grüße" and record["to"][0]["address"] == "kunde@example.com"
    bad = http.post(url(sandbox, f"/users/{s.shared.upn}/sendMail"),
                    headers={**s.auth, "Content-Type": "text/plain"}, data=b"not base64 at all!!")
    assert bad.status_code == 400
    assert bad.json()["error"] == {**bad.json()["error"], "code": "ErrorMimeContentInvalidBase64String",
                                   "message": "Invalid base64 string for MIME content."}


def test_reply_with_comment_goes_to_reply_to_or_from(sandbox, http):
    s = seed(sandbox.state, send_as=True)
    original = deliver_inbound(sandbox.state, s.shared.upn, from_addr={"name": "Kunde", "address": "k@example.com"},
                               subject="Frage zu Vertrag", body_html="<p>Hallo?</p>")
    resp = http.post(url(sandbox, f"/users/{s.shared.upn}/messages/{original.id}/reply"), headers=s.auth,
                     json={"comment": "Danke, wir melden uns."})
    assert resp.status_code == 202 and resp.content == b""
    [record] = _sent(sandbox, http)
    assert record["to"] == [{"name": "Kunde", "address": "k@example.com"}]
    assert record["subject"] == "RE: Frage zu Vertrag"
    assert record["inReplyTo"] == original.internet_message_id
    assert record["conversationId"] == original.conversation_id
    assert record["from"]["address"] == s.shared.upn and "Danke" in record["body"]["content"]
    assert len(_folder(sandbox, s.shared, "sentitems")) == 1
    # both comment and message.body → 400
    both = http.post(url(sandbox, f"/users/{s.shared.upn}/mailFolders/inbox/messages/{original.id}/reply"),
                     headers=s.auth, json={"comment": "a", "message": {"body": {"contentType": "text",
                                                                                 "content": "b"}}})
    assert both.status_code == 400


def test_create_reply_patch_send_keeps_immutable_id(sandbox, http):
    s = seed(sandbox.state, send_on_behalf=True)
    original = deliver_inbound(sandbox.state, s.shared.upn, from_addr="k@example.com", subject="Angebot",
                               body_html="<p>Bitte Angebot</p>")
    headers = {**s.auth, "Prefer": 'IdType="ImmutableId"'}
    draft = http.post(url(sandbox, f"/users/{s.shared.upn}/messages/{original.id}/createReply"), headers=headers)
    assert draft.status_code == 201
    draft_id = draft.json()["id"]
    assert draft.json()["isDraft"] is True and draft.json()["subject"] == "RE: Angebot"
    patched = http.patch(url(sandbox, f"/users/{s.shared.upn}/messages/{draft_id}"), headers=headers,
                         json={"body": {"contentType": "html", "content": "<p>Anbei das Angebot</p>"},
                               "from": SHARED_FROM})
    assert patched.status_code == 200 and patched.json()["body"]["content"] == "<p>Anbei das Angebot</p>"
    sent = http.post(url(sandbox, f"/users/{s.shared.upn}/messages/{draft_id}/send"), headers=headers)
    assert sent.status_code == 202 and sent.content == b""
    after = http.get(url(sandbox, f"/users/{s.shared.upn}/messages/{draft_id}"), headers=headers).json()
    assert after["id"] == draft_id and after["isDraft"] is False
    sent_items = sandbox.state.folder_by_ref(s.shared.id, "sentitems")
    assert after["parentFolderId"] == sent_items.id
    assert after["from"]["emailAddress"]["address"] == s.shared.upn
    assert after["sender"]["emailAddress"]["address"] == s.service.upn
    [record] = _sent(sandbox, http)
    assert record["inReplyTo"] == original.internet_message_id
    # a sent message is no longer a draft
    assert http.post(url(sandbox, f"/users/{s.shared.upn}/messages/{draft_id}/send"),
                     headers=headers).status_code == 400


def test_internal_recipient_receives_the_mail(sandbox, http):
    s = seed(sandbox.state, send_as=True)
    body = _mail(toRecipients=[{"emailAddress": {"address": s.other.upn}}])
    assert http.post(url(sandbox, "/me/sendMail"), headers=s.auth,
                     json={**body, "message": {**body["message"], "from": SHARED_FROM}}).status_code == 202
    [received] = _folder(sandbox, s.other, "inbox")
    assert received.from_addr["address"] == s.shared.upn


def test_send_mail_requires_a_recipient_and_a_message(sandbox, http):
    s = seed(sandbox.state, send_as=True)
    assert http.post(url(sandbox, "/me/sendMail"), headers=s.auth, json={}).status_code == 400
    assert http.post(url(sandbox, "/me/sendMail"), headers=s.auth,
                     json=_mail(toRecipients=[])).status_code == 400


def test_reply_all_and_forward(sandbox, http):
    s = seed(sandbox.state, send_as=True)
    original = deliver_inbound(sandbox.state, s.shared.upn, from_addr="k@example.com", subject="Termin",
                               body_html="<p>?</p>", to=[s.shared.upn, "colleague@example.com"],
                               cc=["boss@example.com"],
                               attachments=[{"name": "plan.pdf", "content_type": "application/pdf",
                                             "content": b"%PDF"}])
    base = url(sandbox, f"/users/{s.shared.upn}/messages/{original.id}")
    assert http.post(f"{base}/replyAll", headers=s.auth, json={"comment": "OK"}).status_code == 202
    record = _sent(sandbox, http)[-1]
    assert [a["address"] for a in record["to"]] == ["k@example.com", "colleague@example.com"]
    assert [a["address"] for a in record["cc"]] == ["boss@example.com"]
    assert http.post(f"{base}/forward", headers=s.auth, json={"comment": "FYI"}).status_code == 400
    fwd = http.post(f"{base}/forward", headers=s.auth, json={
        "comment": "FYI", "toRecipients": [{"emailAddress": {"address": "team@example.com"}}]})
    assert fwd.status_code == 202
    record = _sent(sandbox, http)[-1]
    assert record["subject"] == "FW: Termin" and record["attachments"] == ["plan.pdf"]
    draft = http.post(f"{base}/createForward", headers=s.auth).json()
    assert draft["isDraft"] is True and draft["subject"] == "FW: Termin" and draft["hasAttachments"] is True
    draft_all = http.post(f"{base}/createReplyAll", headers=s.auth).json()
    assert len(draft_all["toRecipients"]) == 2 and draft_all["ccRecipients"][0]["emailAddress"]["address"] == \
        "boss@example.com"
