"""Action parameters in any letter case, as Graph takes them (learn.microsoft.com documents them camelCase;
Graph's metadata, and so Microsoft's SDKs, spell them PascalCase: ``Message``, ``SaveToSentItems``, ``Comment``,
``DestinationId``, ``AttachmentItem``). A parameter the action does not declare is a 400 ``RequestBodyRead``, as
Microsoft's OData reader answers it. Each test sends camelCase and the other spellings.
"""
import pytest

from m365_sandbox.graph_mail import deliver_inbound

from mail_helpers import seed, url

CASES = (str, lambda name: name[0].upper() + name[1:], str.lower, str.upper)   # camel, Pascal, lower, UPPER
TO = [{"emailAddress": {"address": "kunde@example.com"}}]


def _spell(spelling, body: dict) -> dict:
    return {spelling(name): value for name, value in body.items()}


def _sent(sandbox, http):
    return http.get(f"{sandbox.control_base}/mail/sent").json()["value"]


def _inbound(sandbox, s, subject="Meter broken"):
    return deliver_inbound(sandbox.state, s.shared.upn, from_addr="kunde@example.com", subject=subject,
                           body_html="<p>It is broken</p>")


def test_send_mail_in_any_case(sandbox, http):
    s = seed(sandbox.state, send_as=True)
    for n, spelling in enumerate(CASES):
        body = _spell(spelling, {"message": {"subject": f"case {n}", "toRecipients": TO},
                                 "saveToSentItems": n % 2 == 0})
        resp = http.post(url(sandbox, f"/users/{s.shared.upn}/sendMail"), headers=s.auth, json=body)
        assert resp.status_code == 202, (body, resp.text)
    sent = _sent(sandbox, http)
    assert [r["subject"] for r in sent] == ["case 0", "case 1", "case 2", "case 3"]
    assert [bool(r["sentCopy"]) for r in sent] == [True, False, True, False]     # saveToSentItems honoured


def test_reply_reply_all_and_forward_keep_the_comment_in_any_case(sandbox, http):
    s = seed(sandbox.state, send_as=True)
    for n, spelling in enumerate(CASES):
        for action, extra in (("reply", {}), ("replyAll", {}), ("forward", {"toRecipients": TO})):
            msg = _inbound(sandbox, s)
            body = _spell(spelling, {"comment": f"{action} comment {n}", **extra})
            resp = http.post(url(sandbox, f"/users/{s.shared.upn}/messages/{msg.id}/{action}"), headers=s.auth,
                             json=body)
            assert resp.status_code == 202, (action, body, resp.text)
            record = _sent(sandbox, http)[-1]
            assert f"{action} comment {n}" in record["body"]["content"], (action, body)
            assert record["to"][0]["address"] == "kunde@example.com"


def test_comment_and_message_body_together_are_refused_in_any_case(sandbox, http):
    s = seed(sandbox.state, send_as=True)
    msg = _inbound(sandbox, s)
    for spelling in CASES:
        body = _spell(spelling, {"comment": "hi", "message": {"body": {"contentType": "text", "content": "x"}}})
        resp = http.post(url(sandbox, f"/users/{s.shared.upn}/messages/{msg.id}/reply"), headers=s.auth, json=body)
        assert resp.status_code == 400 and resp.json()["error"]["code"] == "ErrorInvalidRequest", body


def test_create_reply_and_create_forward_in_any_case(sandbox, http):
    s = seed(sandbox.state, send_as=True)
    msg = _inbound(sandbox, s)
    for n, spelling in enumerate(CASES):
        for action, extra in (("createReply", {}), ("createReplyAll", {}), ("createForward", {"toRecipients": TO})):
            body = _spell(spelling, {"comment": f"draft {n}", **extra})
            resp = http.post(url(sandbox, f"/users/{s.shared.upn}/messages/{msg.id}/{action}"), headers=s.auth,
                             json=body)
            assert resp.status_code == 201, (action, body, resp.text)
            draft = resp.json()
            assert f"draft {n}" in draft["body"]["content"] and draft["isDraft"] is True, (action, body)
            assert draft["toRecipients"][0]["emailAddress"]["address"] == "kunde@example.com"


def test_move_in_any_case(sandbox, http):
    s = seed(sandbox.state)
    msg = _inbound(sandbox, s)
    for spelling, target in zip(CASES, ("archive", "junkemail", "Inbox", "deleteditems")):
        resp = http.post(url(sandbox, f"/users/{s.shared.upn}/messages/{msg.id}/move"), headers=s.auth,
                         json={spelling("destinationId"): target})
        assert resp.status_code == 201, (spelling("destinationId"), resp.text)
        assert resp.json()["parentFolderId"] == sandbox.state.folder_by_ref(s.shared.id, target).id


def test_translate_exchange_ids_in_any_case(sandbox, http):
    s = seed(sandbox.state)
    msg = _inbound(sandbox, s)
    for spelling in CASES:
        body = _spell(spelling, {"inputIds": [msg.id], "sourceIdType": "restId",
                                 "targetIdType": "restImmutableEntryId"})
        resp = http.post(url(sandbox, f"/users/{s.shared.upn}/translateExchangeIds"), headers=s.auth, json=body)
        assert resp.status_code == 200, (body, resp.text)
        assert resp.json()["value"] == [{"sourceId": msg.id, "targetId": msg.immutable_id}]


def test_create_upload_session_in_any_case(sandbox, http):
    s = seed(sandbox.state)
    draft = http.post(url(sandbox, f"/users/{s.shared.upn}/messages"), headers=s.auth,
                      json={"subject": "big file", "toRecipients": TO}).json()
    for spelling in CASES:
        body = {spelling("attachmentItem"): {"attachmentType": "file", "name": "big.bin", "size": 5 << 20}}
        resp = http.post(url(sandbox, f"/users/{s.shared.upn}/messages/{draft['id']}/attachments/"
                                      "createUploadSession"), headers=s.auth, json=body)
        assert resp.status_code == 201, (body, resp.text)
        assert resp.json()["nextExpectedRanges"] == ["0"]


@pytest.mark.parametrize("action, body", [
    ("sendMail", {"message": {"subject": "x", "toRecipients": TO}, "saveToSentItem": False}),
    ("reply", {"comment": "x", "coment": "y"}),
    ("move", {"destinationId": "archive", "folder": "inbox"}),
    ("createUploadSession", {"AttachmentItem": {"name": "a", "size": 9}, "uploadUrl": "x"}),
    ("translateExchangeIds", {"inputIds": ["x"], "sourceIdType": "restId", "targetIdType": "restId",
                              "ids": []}),
])
def test_an_undeclared_parameter_is_400_request_body_read(sandbox, http, action, body):
    s = seed(sandbox.state, send_as=True)
    msg = _inbound(sandbox, s)
    path = {"sendMail": "/sendMail", "translateExchangeIds": "/translateExchangeIds",
            "createUploadSession": f"/messages/{msg.id}/attachments/createUploadSession"}.get(
        action, f"/messages/{msg.id}/{action}")
    resp = http.post(url(sandbox, f"/users/{s.shared.upn}{path}"), headers=s.auth, json=body)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    unknown = next(name for name in body if name.lower() not in (
        "message", "comment", "destinationid", "attachmentitem", "inputids", "sourceidtype", "targetidtype"))
    assert error["code"] == "RequestBodyRead"
    assert error["message"] == (f"The parameter '{unknown}' in the request payload is not a valid parameter for "
                                f"the operation '{action}'.")
    assert _sent(sandbox, http) == [] and sandbox.state.messages[msg.immutable_id].folder_id == \
        sandbox.state.folder_by_ref(s.shared.id, "inbox").id              # nothing happened


def test_one_parameter_twice_in_two_cases_is_400_and_annotations_are_not_parameters(sandbox, http):
    s = seed(sandbox.state)
    msg = _inbound(sandbox, s)
    move = url(sandbox, f"/users/{s.shared.upn}/messages/{msg.id}/move")
    resp = http.post(move, headers=s.auth, json={"destinationId": "archive", "DestinationId": "junkemail"})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "RequestBodyRead"
    assert "'DestinationId'" in resp.json()["error"]["message"]
    resp = http.post(move, headers=s.auth, json={"@odata.context": "x", "DestinationId@odata.type": "#String",
                                                  "DestinationId": "archive"})
    assert resp.status_code == 201, resp.text
    assert resp.json()["parentFolderId"] == sandbox.state.folder_by_ref(s.shared.id, "archive").id
