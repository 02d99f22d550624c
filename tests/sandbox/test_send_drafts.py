"""New drafts (JSON and MIME) and large attachments through an upload session, then ``send`` (contract §4)."""
import base64
import email.message

import pytest

from mail_helpers import seed, url

IMMUTABLE = {"Prefer": 'IdType="ImmutableId"'}


def _draft(http, sandbox, s, **message):
    body = {"subject": "Angebot", "body": {"contentType": "html", "content": "<p>Anbei</p>"},
            "toRecipients": [{"emailAddress": {"address": "kunde@example.com"}}],
            "from": {"emailAddress": {"address": s.shared.upn}}, **message}
    resp = http.post(url(sandbox, f"/users/{s.shared.upn}/messages"), headers={**s.auth, **IMMUTABLE}, json=body)
    assert resp.status_code == 201, resp.text
    return resp.json()


def _session(http, sandbox, s, draft_id, size, name="big.bin"):
    resp = http.post(url(sandbox, f"/users/{s.shared.upn}/messages/{draft_id}/attachments/createUploadSession"),
                     headers=s.auth, json={"AttachmentItem": {"attachmentType": "file", "name": name, "size": size,
                                                              "contentType": "application/octet-stream"}})
    assert resp.status_code == 201, resp.text
    return resp.json()


def test_json_draft_is_in_drafts_until_sent(sandbox, http):
    s = seed(sandbox.state, send_as=True)
    draft = _draft(http, sandbox, s)
    assert draft["isDraft"] is True and draft["internetMessageId"]
    msg = sandbox.state.messages[draft["id"]]
    assert sandbox.state.folders[msg.folder_id].well_known_name == "drafts"
    resp = http.post(url(sandbox, f"/users/{s.shared.upn}/messages/{draft['id']}/send"), headers=s.auth)
    assert resp.status_code == 202
    got = http.get(url(sandbox, f"/users/{s.shared.upn}/messages/{draft['id']}"), headers={**s.auth, **IMMUTABLE})
    assert got.json()["isDraft"] is False and got.json()["internetMessageId"] == draft["internetMessageId"]


def test_mime_draft_keeps_message_id_and_threads_with_its_parent(sandbox, http):
    s = seed(sandbox.state, send_as=True)
    resp = http.post(sandbox.control_base + "/mail/deliver", json={
        "mailbox": s.shared.upn, "from": "kunde@example.com", "subject": "Frage", "body_html": "<p>?</p>"})
    parent = resp.json()
    mime = email.message.EmailMessage()
    mime["From"], mime["To"], mime["Subject"] = s.shared.upn, "kunde@example.com", "Re: Frage"
    mime["Message-ID"] = "<reply-1@odoo.example.com>"
    mime["In-Reply-To"] = parent["internetMessageId"]
    mime["References"] = parent["internetMessageId"]
    mime["X-Odoo-Marker"] = "m-1"
    mime.set_content("Antwort")
    resp = http.post(url(sandbox, f"/users/{s.shared.upn}/messages"), headers={**s.auth, **IMMUTABLE,
                     "Content-Type": "text/plain"}, data=base64.b64encode(mime.as_bytes()))
    assert resp.status_code == 201, resp.text
    draft = resp.json()
    assert draft["internetMessageId"] == "<reply-1@odoo.example.com>"
    assert draft["conversationId"] == parent["conversationId"]
    msg = sandbox.state.messages[draft["id"]]
    assert msg.in_reply_to == parent["internetMessageId"]
    assert {"name": "X-Odoo-Marker", "value": "m-1"} in msg.internet_headers


def test_upload_session_in_ranges_then_send(sandbox, http):
    s = seed(sandbox.state, send_as=True)
    draft = _draft(http, sandbox, s)
    content = bytes(range(256)) * (5 * 1024 * 1024 // 256 + 7)      # a little over 5 MB
    session = _session(http, sandbox, s, draft["id"], len(content))
    assert session["nextExpectedRanges"] == ["0"] and "authtoken=" in session["uploadUrl"]
    step, start = 2 * 1024 * 1024, 0
    while start < len(content):
        chunk = content[start:start + step]
        resp = http.put(session["uploadUrl"], data=chunk, headers={
            "Content-Range": f"bytes {start}-{start + len(chunk) - 1}/{len(content)}",
            "Content-Type": "application/octet-stream"})
        start += len(chunk)
        if start < len(content):
            assert resp.status_code == 200, resp.text
            assert resp.json()["nextExpectedRanges"] == [str(start)]
        else:
            assert resp.status_code == 201 and resp.content == b""
            assert "/Attachments('" in resp.headers["Location"]
    [att] = sandbox.state.messages[draft["id"]].attachments
    assert att.name == "big.bin" and att.content == content
    assert http.post(url(sandbox, f"/users/{s.shared.upn}/messages/{draft['id']}/send"),
                     headers=s.auth).status_code == 202
    [record] = http.get(sandbox.control_base + "/mail/sent").json()["value"]
    assert record["attachments"] == ["big.bin"]


def test_upload_range_errors(sandbox, http):
    s = seed(sandbox.state, send_as=True)
    draft = _draft(http, sandbox, s)
    session = _session(http, sandbox, s, draft["id"], 10)
    put = session["uploadUrl"]
    # a range that skips ahead: 416, and nothing is kept
    resp = http.put(put, data=b"12345", headers={"Content-Range": "bytes 5-9/10"})
    assert resp.status_code == 416 and resp.json()["error"]["code"] == "ErrorInvalidRange"
    # a total that is not the session's size, a missing header
    assert http.put(put, data=b"12345", headers={"Content-Range": "bytes 0-4/11"}).status_code == 400
    assert http.put(put, data=b"12345").status_code == 400
    # a forged token: the session is not found
    assert http.put(put.replace("authtoken=", "authtoken=x"), data=b"12345",
                    headers={"Content-Range": "bytes 0-4/10"}).status_code == 404
    # cancel
    assert http.delete(put).status_code == 204
    assert http.put(put, data=b"12345", headers={"Content-Range": "bytes 0-4/10"}).status_code == 404
    assert sandbox.state.messages[draft["id"]].attachments == []


@pytest.mark.parametrize("size", [0, 150 * 1024 * 1024 + 1])
def test_upload_session_size_bounds(sandbox, http, size):
    s = seed(sandbox.state, send_as=True)
    draft = _draft(http, sandbox, s)
    resp = http.post(url(sandbox, f"/users/{s.shared.upn}/messages/{draft['id']}/attachments/createUploadSession"),
                     headers=s.auth, json={"AttachmentItem": {"attachmentType": "file", "name": "x", "size": size}})
    assert resp.status_code == 400


def test_draft_without_write_right_is_denied(sandbox, http):
    s = seed(sandbox.state, full_access=False, send_on_behalf=True)
    resp = http.post(url(sandbox, f"/users/{s.shared.upn}/messages"), headers=s.auth, json={"subject": "x"})
    assert resp.status_code == 403
    # Send on Behalf without Full Access: the draft lives in the service account's own mailbox
    resp = http.post(url(sandbox, "/me/messages"), headers={**s.auth, **IMMUTABLE}, json={
        "subject": "x", "toRecipients": [{"emailAddress": {"address": "kunde@example.com"}}],
        "from": {"emailAddress": {"address": s.shared.upn}}})
    assert resp.status_code == 201
    assert http.post(url(sandbox, f"/me/messages/{resp.json()['id']}/send"), headers=s.auth).status_code == 202
    [record] = http.get(sandbox.control_base + "/mail/sent").json()["value"]
    assert record["from"]["address"] == s.shared.upn and record["sender"]["address"] == s.service.upn
