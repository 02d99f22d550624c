"""Graph v1.0 mail: users, folders, message lists and paging, one message, PATCH, attachments, access errors."""
import base64
import urllib.parse

from m365_sandbox.graph_mail import deliver_inbound, generate_mail

from mail_helpers import page_through, seed, url


def _inbox(sandbox, s, query=""):
    return url(sandbox, f"/users/{s.shared.upn}/mailFolders/inbox/messages{query}")


# --- users and folders ----------------------------------------------------------------------------------

def test_me_and_user_resource(sandbox, http):
    s = seed(sandbox.state)
    me = http.get(url(sandbox, "/me"), headers=s.auth)
    assert me.status_code == 200
    assert me.json()["id"] == s.service.id and me.json()["userPrincipalName"] == s.service.upn
    assert me.headers["request-id"] and me.headers["client-request-id"]
    own = http.get(url(sandbox, f"/users/{s.service.upn}"), headers={**s.auth, "client-request-id": "abc-123"})
    assert own.status_code == 200 and own.headers["client-request-id"] == "abc-123"
    # another user's directory object needs User.ReadBasic.All
    other = http.get(url(sandbox, f"/users/{s.shared.upn}"), headers=s.auth)
    assert other.status_code == 403 and other.json()["error"]["code"] == "Authorization_RequestDenied"


def test_mail_folders_with_counts(sandbox, http):
    s = seed(sandbox.state)
    generate_mail(sandbox.state, s.shared.upn, 30, seed=1)
    resp = http.get(url(sandbox, f"/users/{s.shared.upn}/mailFolders"), headers=s.auth)
    assert resp.status_code == 200
    names = {f["displayName"]: f for f in resp.json()["value"]}
    assert {"Inbox", "Sent Items", "Drafts", "Deleted Items"} <= set(names)
    inbox = http.get(url(sandbox, f"/users/{s.shared.upn}/mailFolders/inbox"), headers=s.auth).json()
    assert inbox["totalItemCount"] == 30
    assert inbox["unreadItemCount"] == sum(1 for m in sandbox.state.messages.values() if not m.is_read)
    by_id = http.get(url(sandbox, f"/users/{s.shared.id}/mailFolders/{inbox['id']}"), headers=s.auth)
    assert by_id.json()["id"] == inbox["id"]
    assert http.get(url(sandbox, "/me/mailFolders/sentitems"), headers=s.auth).json()["displayName"] == "Sent Items"


# --- access errors (docs/microsoft-graph.md §3.5, §7.7) ---------------------------------------------------------------

def test_bad_and_expired_tokens_are_401_with_www_authenticate(sandbox, http):
    s = seed(sandbox.state)
    for headers in ({}, {"Authorization": "Bearer garbage"}):
        resp = http.get(_inbox(sandbox, s), headers=headers)
        assert resp.status_code == 401
        assert resp.json()["error"]["code"] == "InvalidAuthenticationToken"
        assert resp.headers["WWW-Authenticate"].startswith('Bearer realm=""')
    sandbox.state.advance_clock(7200)
    resp = http.get(_inbox(sandbox, s), headers=s.auth)
    assert resp.status_code == 401 and "expired" in resp.json()["error"]["message"]


def test_no_full_access_is_403_unknown_mailbox_is_404(sandbox, http):
    s = seed(sandbox.state, full_access=False, send_as=True)
    resp = http.get(_inbox(sandbox, s), headers=s.auth)
    assert resp.status_code == 403
    err = resp.json()["error"]
    assert err["code"] == "ErrorAccessDenied" and set(err["innerError"]) >= {"date", "request-id"}
    resp = http.get(url(sandbox, f"/users/{s.other.upn}/messages"), headers=s.auth)
    assert resp.status_code == 403
    resp = http.get(url(sandbox, "/users/nobody@contoso.onmicrosoft.com/messages"), headers=s.auth)
    assert resp.status_code == 404
    assert http.get(url(sandbox, f"/users/{s.shared.upn}/mailFolders/nope/messages"),
                    headers=s.auth).status_code == 403


def test_without_shared_scope_is_403(sandbox, http):
    s = seed(sandbox.state, scopes={"User.Read", "Mail.Read"})
    resp = http.get(_inbox(sandbox, s), headers=s.auth)
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "ErrorAccessDenied"
    assert http.get(url(sandbox, "/me/messages"), headers=s.auth).status_code == 200


# --- the message resource (contract §3.3) ----------------------------------------------------------------

def test_message_json_shape(sandbox, http):
    s = seed(sandbox.state)
    msg = deliver_inbound(sandbox.state, s.shared.upn, from_addr={"name": "Jürgen Müller",
                                                                   "address": "jm@example.de"},
                          subject="Zählerstand 日本", body_html="<p>Hallo <b>Welt</b> " + "x" * 400 + "</p>",
                          cc=["cc@example.com"])
    resp = http.get(url(sandbox, f"/users/{s.shared.upn}/messages/{msg.id}"), headers=s.auth)
    assert resp.status_code == 200
    body = resp.json()
    assert body["id"] == msg.id and body["@odata.etag"] == f'W/"{body["changeKey"]}"'
    assert body["receivedDateTime"].endswith("Z") and body["sentDateTime"].endswith("Z")
    assert body["from"] == {"emailAddress": {"name": "Jürgen Müller", "address": "jm@example.de"}}
    assert body["sender"] == body["from"]
    assert body["toRecipients"][0]["emailAddress"]["address"] == s.shared.upn
    assert body["ccRecipients"] == [{"emailAddress": {"name": "cc@example.com", "address": "cc@example.com"}}]
    assert body["subject"] == "Zählerstand 日本"
    assert body["bodyPreview"].startswith("Hallo Welt x") and len(body["bodyPreview"]) == 255
    assert body["body"] == {"contentType": "html", "content": msg.body}
    assert body["isRead"] is False and body["isDraft"] is False and body["hasAttachments"] is False
    for key in ("internetMessageId", "conversationId", "conversationIndex", "parentFolderId", "webLink",
                "lastModifiedDateTime", "createdDateTime", "importance", "flag", "categories"):
        assert key in body, key
    assert "internetMessageHeaders" not in body and "uniqueBody" not in body
    selected = http.get(url(sandbox, f"/users/{s.shared.upn}/messages/{msg.id}?$select=internetMessageHeaders,"
                                     "subject"), headers=s.auth).json()
    assert set(selected) == {"@odata.context", "@odata.etag", "id", "internetMessageHeaders", "subject"}
    assert any(h["name"] == "Message-ID" for h in selected["internetMessageHeaders"])


def test_immutable_id_and_body_preference(sandbox, http):
    s = seed(sandbox.state)
    msg = deliver_inbound(sandbox.state, s.shared.upn, from_addr="a@example.com", subject="Hi",
                          body_html="<html><body><p>Hello &amp; welcome</p></body></html>")
    headers = {**s.auth, "Prefer": 'IdType="ImmutableId", outlook.body-content-type="text"'}
    resp = http.get(_inbox(sandbox, s), headers=headers)
    assert resp.json()["value"][0]["id"] == msg.immutable_id
    assert resp.json()["value"][0]["body"] == {"contentType": "text", "content": "Hello & welcome"}
    assert 'outlook.body-content-type="text"' in resp.headers["Preference-Applied"]
    # both id forms address the message; without the header the id is the mutable one
    for ref in (msg.id, msg.immutable_id):
        got = http.get(url(sandbox, f"/users/{s.shared.upn}/messages/{ref}"), headers=s.auth)
        assert got.status_code == 200 and got.json()["id"] == msg.id
    assert http.get(url(sandbox, f"/users/{s.shared.upn}/messages/AAMkNope"), headers=s.auth).json()[
        "error"]["code"] == "ErrorItemNotFound"


def test_patch_is_read_changes_change_key_and_logs(sandbox, http):
    s = seed(sandbox.state)
    msg = deliver_inbound(sandbox.state, s.shared.upn, from_addr="a@example.com", subject="Hi", body_html="x")
    seen = []
    sandbox.state.extra.setdefault("on_mail_change", []).append(lambda st, m, kind: seen.append(kind))
    before = msg.change_key
    resp = http.patch(url(sandbox, f"/users/{s.shared.upn}/messages/{msg.id}"), headers=s.auth,
                      json={"isRead": True, "categories": ["Odoo"], "flag": {"flagStatus": "flagged"}})
    assert resp.status_code == 200
    body = resp.json()
    assert body["isRead"] is True and body["categories"] == ["Odoo"] and body["flag"]["flagStatus"] == "flagged"
    assert body["changeKey"] != before and msg.is_read is True
    assert seen == ["updated"]
    bad = http.patch(url(sandbox, f"/users/{s.shared.upn}/messages/{msg.id}"), headers=s.auth,
                     json={"subject": "changed"})
    assert bad.status_code == 400


def test_patch_takes_the_entity_odata_type_and_refuses_another(sandbox, http):
    """Microsoft's SDKs put ``@odata.type`` in every PATCH body; an annotation, not a property to update."""
    s = seed(sandbox.state)
    msg = deliver_inbound(sandbox.state, s.shared.upn, from_addr="a@example.com", subject="Hi", body_html="x")
    target = url(sandbox, f"/users/{s.shared.upn}/messages/{msg.id}")
    resp = http.patch(target, headers=s.auth, json={"@odata.type": "#microsoft.graph.message", "isRead": True})
    assert resp.status_code == 200 and resp.json()["isRead"] is True and msg.is_read is True
    wrong = http.patch(target, headers=s.auth, json={"@odata.type": "#microsoft.graph.event", "isRead": False})
    assert wrong.status_code == 400 and msg.is_read is True

def test_move_changes_mutable_id_only(sandbox, http):
    s = seed(sandbox.state)
    msg = deliver_inbound(sandbox.state, s.shared.upn, from_addr="a@example.com", subject="Hi", body_html="x")
    old_id, imm = msg.id, msg.immutable_id
    resp = http.post(url(sandbox, f"/users/{s.shared.upn}/messages/{old_id}/move"), headers=s.auth,
                     json={"destinationId": "deleteditems"})
    assert resp.status_code == 201
    assert resp.json()["id"] != old_id and msg.immutable_id == imm
    assert http.get(url(sandbox, f"/users/{s.shared.upn}/messages/{old_id}"), headers=s.auth).status_code == 404
    assert http.get(url(sandbox, f"/users/{s.shared.upn}/messages/{imm}"), headers=s.auth).status_code == 200
    assert http.delete(url(sandbox, f"/users/{s.shared.upn}/messages/{imm}"), headers=s.auth).status_code == 204
    assert imm not in sandbox.state.messages


# --- attachments (contract §3.4) ---------------------------------------------------------------------------

def test_attachments_list_get_value_and_inline_rule(sandbox, http):
    s = seed(sandbox.state)
    inline_only = deliver_inbound(sandbox.state, s.shared.upn, from_addr="a@example.com", subject="logo",
                                  body_html='<img src="cid:logo1">', attachments=[
                                      {"name": "logo.png", "content_type": "image/png", "content": b"\x89PNG",
                                       "is_inline": True, "content_id": "logo1"}])
    with_file = deliver_inbound(sandbox.state, s.shared.upn, from_addr="a@example.com", subject="invoice",
                                body_html="see pdf", attachments=[
                                    {"name": "Rechnung_ü.pdf", "content_type": "application/pdf",
                                     "content": b"%PDF-1.4 data"},
                                    {"name": "link", "content_type": "text/html", "kind": "reference",
                                     "content": "https://contoso.sharepoint.com/doc"}])
    base = url(sandbox, f"/users/{s.shared.upn}/messages")
    assert http.get(f"{base}/{inline_only.id}", headers=s.auth).json()["hasAttachments"] is False
    assert http.get(f"{base}/{with_file.id}", headers=s.auth).json()["hasAttachments"] is True
    listed = http.get(f"{base}/{with_file.id}/attachments", headers=s.auth).json()["value"]
    pdf = listed[0]
    assert pdf["@odata.type"] == "#microsoft.graph.fileAttachment" and pdf["name"] == "Rechnung_ü.pdf"
    assert base64.b64decode(pdf["contentBytes"]) == b"%PDF-1.4 data" and pdf["isInline"] is False
    one = http.get(f"{base}/{with_file.id}/attachments/{pdf['id']}", headers=s.auth)
    assert one.status_code == 200 and one.json()["id"] == pdf["id"]
    raw = http.get(f"{base}/{with_file.id}/attachments/{pdf['id']}/$value", headers=s.auth)
    assert raw.status_code == 200 and raw.content == b"%PDF-1.4 data"
    assert raw.headers["content-type"].startswith("application/pdf")
    ref = listed[1]
    assert ref["@odata.type"] == "#microsoft.graph.referenceAttachment"
    assert http.get(f"{base}/{with_file.id}/attachments/{ref['id']}/$value", headers=s.auth).status_code == 405
    inline = http.get(f"{base}/{inline_only.id}/attachments", headers=s.auth).json()["value"][0]
    assert inline["isInline"] is True and inline["contentId"] == "logo1"


# --- lists: $select, $filter, $orderby, $top, paging (contract §3.1, §7.2) --------------------------------

def test_list_select_filter_orderby_top(sandbox, http):
    s = seed(sandbox.state)
    generate_mail(sandbox.state, s.shared.upn, 40, days=10, seed=3)
    resp = http.get(_inbox(sandbox, s, "?$select=subject,receivedDateTime&$top=5"), headers=s.auth)
    body = resp.json()
    assert len(body["value"]) == 5
    assert set(body["value"][0]) == {"@odata.etag", "id", "subject", "receivedDateTime"}
    stamps = [m["receivedDateTime"] for m in body["value"]]
    assert stamps == sorted(stamps, reverse=True)
    msgs = sorted(sandbox.state.messages.values(), key=lambda m: m.received)
    cut = msgs[20].received.strftime("%Y-%m-%dT%H:%M:%SZ")
    q = "?" + urllib.parse.urlencode({"$filter": f"receivedDateTime ge {cut}", "$orderby": "receivedDateTime asc",
                                      "$top": "100"})
    got = http.get(_inbox(sandbox, s, q), headers=s.auth).json()["value"]
    assert len(got) == sum(1 for m in msgs if m.received.replace(microsecond=0) >= msgs[20].received.replace(
        microsecond=0))
    assert [m["receivedDateTime"] for m in got] == sorted(m["receivedDateTime"] for m in got)
    unread = http.get(_inbox(sandbox, s, "?$filter=isRead eq false&$top=100"), headers=s.auth).json()["value"]
    assert len(unread) == sum(1 for m in msgs if not m.is_read) and all(not m["isRead"] for m in unread)


def test_list_query_errors(sandbox, http):
    s = seed(sandbox.state)
    for query, code in (("?$top=1001", "ErrorInvalidUrlQuery"), ("?$top=0", "ErrorInvalidUrlQuery"),
                        ("?$filter=contains(subject,'x')", "ErrorInvalidUrlQueryFilter"),
                        ("?$select=nonsense", "RequestBroker--ParseUri"),
                        ("?$filter=isRead eq false&$orderby=receivedDateTime desc", "InefficientFilter"),
                        ("?$orderby=subject&$filter=receivedDateTime ge 2024-01-01T00:00:00Z",
                         "InefficientFilter")):
        resp = http.get(_inbox(sandbox, s, query), headers=s.auth)
        assert resp.status_code == 400, query
        assert resp.json()["error"]["code"] == code, query
    ok = http.get(_inbox(sandbox, s, "?$filter=receivedDateTime ge 2024-01-01T00:00:00Z and isRead eq false"
                                     "&$orderby=receivedDateTime desc"), headers=s.auth)
    assert ok.status_code == 200
    assert http.get(_inbox(sandbox, s, "?$top=1000"), headers=s.auth).status_code == 200


def test_paging_follows_opaque_links_and_skip_runs_ahead(sandbox, http):
    s = seed(sandbox.state)
    generate_mail(sandbox.state, s.shared.upn, 47, seed=4)
    first = http.get(_inbox(sandbox, s, "?$top=10&$select=subject"), headers=s.auth).json()
    link = first["@odata.nextLink"]
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)
    assert int(query["$skip"][0]) > 10          # hidden non-message items count too
    assert query["$select"] == ["subject"] and "$skiptoken" in query
    items, pages = page_through(http, sandbox, _inbox(sandbox, s, "?$top=10&$select=subject"), s.auth)
    ids = [m["id"] for m in items]
    assert len(ids) == 47 and len(set(ids)) == 47
    assert pages == 6                           # 5 pages of data plus one empty page with a nextLink
    # a client that rebuilds $skip from the page size reads a message twice
    rebuilt = http.get(_inbox(sandbox, s, "?$top=10&$select=subject&$skip=10"), headers=s.auth).json()
    assert rebuilt["value"][0]["id"] == ids[9]


def test_empty_page_is_a_switch(sandbox, http):
    s = seed(sandbox.state)
    generate_mail(sandbox.state, s.shared.upn, 15, seed=5)
    first = http.get(_inbox(sandbox, s, "?$top=10"), headers=s.auth).json()
    second = http.get(first["@odata.nextLink"], headers=s.auth).json()
    assert second["value"] == [] and "@odata.nextLink" in second
    sandbox.state.settings["empty_pages"] = False
    first = http.get(_inbox(sandbox, s, "?$top=10"), headers=s.auth).json()
    assert len(http.get(first["@odata.nextLink"], headers=s.auth).json()["value"]) == 5


def test_tampered_next_links_are_rejected(sandbox, http):
    s = seed(sandbox.state)
    sandbox.state.settings["empty_pages"] = False
    generate_mail(sandbox.state, s.shared.upn, 30, seed=6)
    link = http.get(_inbox(sandbox, s, "?$top=10&$select=subject"), headers=s.auth).json()["@odata.nextLink"]
    assert http.get(link, headers=s.auth).status_code == 200
    parts = urllib.parse.urlsplit(link)
    query = urllib.parse.parse_qsl(parts.query)

    def rebuilt(pairs):
        return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(pairs)))

    tampered = [
        link + "&$select=subject",                                               # re-added $select
        link + "&$filter=isRead eq false",                                       # re-added $filter
        rebuilt([(k, "20" if k == "$skip" else v) for k, v in query]),           # rewritten $skip
        rebuilt([(k, v) for k, v in query if k != "$skip"]),                     # dropped $skip
        rebuilt([(k, "subject,body" if k == "$select" else v) for k, v in query]),
        rebuilt([(k, v[:-3] + "AAA" if k == "$skiptoken" else v) for k, v in query]),   # forged token
    ]
    for bad in tampered:
        resp = http.get(bad, headers=s.auth)
        assert resp.status_code == 400, bad
        assert resp.json()["error"]["code"] == "ErrorInvalidUrlQuery"
    # a link of one mailbox folder is no good for another folder
    other = link.replace("/mailFolders/inbox/", "/mailFolders/sentitems/")
    assert http.get(other, headers=s.auth).status_code == 400


def test_whole_mailbox_list_and_count(sandbox, http):
    s = seed(sandbox.state)
    generate_mail(sandbox.state, s.shared.upn, 5, seed=7)
    generate_mail(sandbox.state, s.shared.upn, 3, seed=8, folder="deleteditems")
    body = http.get(url(sandbox, f"/users/{s.shared.upn}/messages?$count=true&$top=50"), headers=s.auth).json()
    assert body["@odata.count"] == 8 and len(body["value"]) == 8


def test_gateway_timeout_for_large_top_with_bodies(sandbox, http):
    s = seed(sandbox.state)
    sandbox.state.settings["gateway_timeout_top"] = 500
    assert http.get(_inbox(sandbox, s, "?$top=500"), headers=s.auth).status_code == 504
    assert http.get(_inbox(sandbox, s, "?$top=500&$select=subject"), headers=s.auth).status_code == 200


def test_translate_exchange_ids(sandbox, http):
    s = seed(sandbox.state)
    msg = deliver_inbound(sandbox.state, s.shared.upn, from_addr="a@example.com", subject="Hi", body_html="x")
    resp = http.post(url(sandbox, f"/users/{s.shared.upn}/translateExchangeIds"), headers=s.auth,
                     json={"inputIds": [msg.id, "AAMkBogus"], "sourceIdType": "restId",
                           "targetIdType": "restImmutableEntryId"})
    assert resp.status_code == 200
    ok, bad = resp.json()["value"]
    assert ok == {"sourceId": msg.id, "targetId": msg.immutable_id}
    assert bad["errorDetails"]["code"] == "ErrorInvalidIdMalformed"
    too_many = {"inputIds": ["x"] * 1001, "sourceIdType": "restId", "targetIdType": "restImmutableEntryId"}
    assert http.post(url(sandbox, f"/users/{s.shared.upn}/translateExchangeIds"), headers=s.auth,
                     json=too_many).status_code == 400


def test_message_mime_value(sandbox, http):
    import email
    import email.policy
    s = seed(sandbox.state)
    parent = deliver_inbound(sandbox.state, s.shared.upn, from_addr="k@example.com", subject="Frage",
                             body_html="<p>?</p>")
    msg = deliver_inbound(sandbox.state, s.shared.upn, from_addr={"name": "Jürgen", "address": "j@example.de"},
                          subject="RE: Frage – Zählerstand", body_html="<p>Grüße</p>",
                          in_reply_to=parent.internet_message_id,
                          attachments=[{"name": "a.pdf", "content_type": "application/pdf", "content": b"%PDF"}])
    resp = http.get(url(sandbox, f"/users/{s.shared.upn}/messages/{msg.id}/$value"), headers=s.auth)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    parsed = email.message_from_bytes(resp.content, policy=email.policy.default)
    assert parsed["Subject"] == "RE: Frage – Zählerstand" and parsed["In-Reply-To"] == parent.internet_message_id
    assert parsed["Message-ID"] == msg.internet_message_id
    assert [a.get_filename() for a in parsed.iter_attachments()] == ["a.pdf"]
    assert "Grüße" in parsed.get_body(("html",)).get_content()


def test_error_envelope_echoes_client_request_id(sandbox, http):
    s = seed(sandbox.state)
    resp = http.get(url(sandbox, "/users/nobody@contoso.onmicrosoft.com/messages"),
                    headers={**s.auth, "client-request-id": "my-id-1"})
    assert resp.headers["client-request-id"] == "my-id-1"
    inner = resp.json()["error"]["innerError"]
    assert inner["client-request-id"] == "my-id-1" and inner["request-id"] == resp.headers["request-id"]


def test_mailbox_not_enabled_for_rest(sandbox, http):
    s = seed(sandbox.state)
    sandbox.state.settings["mailboxes_not_rest_enabled"] = [s.shared.upn]
    resp = http.get(_inbox(sandbox, s), headers=s.auth)
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "MailboxNotEnabledForRESTAPI"
    assert http.get(url(sandbox, "/me/messages"), headers=s.auth).status_code == 200


def test_expand_attachments(sandbox, http):
    s = seed(sandbox.state)
    sandbox.state.settings["empty_pages"] = False
    msg = deliver_inbound(sandbox.state, s.shared.upn, from_addr="a@example.com", subject="pdf", body_html="x",
                          attachments=[{"name": "a.pdf", "content_type": "application/pdf", "content": b"%PDF"}])
    generate_mail(sandbox.state, s.shared.upn, 3, seed=2)
    one = http.get(url(sandbox, f"/users/{s.shared.upn}/messages/{msg.id}?$expand=attachments"), headers=s.auth)
    assert one.json()["attachments"][0]["name"] == "a.pdf"
    first = http.get(_inbox(sandbox, s, "?$top=2&$expand=attachments&$select=subject"), headers=s.auth).json()
    assert all("attachments" in m for m in first["value"])
    link = first["@odata.nextLink"]
    assert all("attachments" in m for m in http.get(link, headers=s.auth).json()["value"])
    assert http.get(link.replace("%24expand=attachments&", ""), headers=s.auth).status_code == 400
    assert http.get(_inbox(sandbox, s, "?$expand=singleValueExtendedProperties"), headers=s.auth).status_code == 400


def test_add_attachment_to_draft_and_unsupported_list_options(sandbox, http):
    s = seed(sandbox.state, send_as=True)
    original = deliver_inbound(sandbox.state, s.shared.upn, from_addr="k@example.com", subject="Q", body_html="x")
    draft = http.post(url(sandbox, f"/users/{s.shared.upn}/messages/{original.id}/createReply"),
                      headers=s.auth).json()
    resp = http.post(url(sandbox, f"/users/{s.shared.upn}/messages/{draft['id']}/attachments"), headers=s.auth,
                     json={"@odata.type": "#microsoft.graph.fileAttachment", "name": "Angebot.pdf",
                           "contentType": "application/pdf", "contentBytes": base64.b64encode(b"%PDF").decode()})
    assert resp.status_code == 201 and resp.json()["name"] == "Angebot.pdf"
    got = http.get(url(sandbox, f"/users/{s.shared.upn}/messages/{draft['id']}"), headers=s.auth).json()
    assert got["hasAttachments"] is True and got["changeKey"] != draft["changeKey"]
    assert http.get(_inbox(sandbox, s, "?$search=\"hello\""), headers=s.auth).status_code == 400


def test_unknown_resource_and_method_get_graph_errors(sandbox, http):
    s = seed(sandbox.state)
    resp = http.get(url(sandbox, "/me/notAThing"), headers=s.auth)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "BadRequest"
    assert "notAThing" in resp.json()["error"]["message"]
    resp = http.put(url(sandbox, "/me/mailFolders"), headers=s.auth, json={})
    assert resp.status_code == 405 and resp.json()["error"]["code"] == "BadRequest"


def test_orderby_subject_then_received(sandbox, http):
    s = seed(sandbox.state)
    generate_mail(sandbox.state, s.shared.upn, 30, seed=11)
    body = http.get(_inbox(sandbox, s, "?$orderby=subject asc,receivedDateTime desc&$top=30&$select=subject,"
                                       "receivedDateTime"), headers=s.auth).json()
    keys = [(m["subject"], m["receivedDateTime"]) for m in body["value"]]
    assert [k[0] for k in keys] == sorted(k[0] for k in keys)
    for (sub1, r1), (sub2, r2) in zip(keys, keys[1:]):
        if sub1 == sub2:
            assert r1 >= r2
