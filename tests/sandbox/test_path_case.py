"""Graph matches resource path segments case-insensitively (``/Users/{m}/MailFolders/Inbox/Messages``,
``…/messages/Delta``, ``$batch`` item urls, ``/Subscriptions``); ids in the path stay case-sensitive (contract §3.3).
The control API is the sandbox's own and keeps its exact paths.
"""
from m365_sandbox.graph_mail import deliver_inbound
from m365_sandbox.mailgen import generate_mail
from subscription_helpers import graph, in_minutes, receiver, receiver_session, world  # noqa: F401  (fixtures)

from mail_helpers import delta_round, page_through, seed, url


def test_message_list_and_its_next_links(sandbox, http):
    s = seed(sandbox.state)
    generate_mail(sandbox.state, s.shared.upn, 23, seed=11)
    canonical, _ = page_through(http, sandbox, url(sandbox, f"/users/{s.shared.upn}/mailFolders/inbox/messages"
                                                            "?$top=7&$select=id"), s.auth)
    shouted, pages = page_through(http, sandbox, url(sandbox, f"/Users/{s.shared.upn.upper()}/MailFolders/INBOX"
                                                              "/Messages?$top=7&$select=id"), s.auth)
    assert len(canonical) == 23 and pages >= 4
    assert [m["id"] for m in shouted] == [m["id"] for m in canonical]
    mixed, _ = page_through(http, sandbox, url(sandbox, "/ME/Messages?$top=50"), s.auth)
    assert mixed == []                  # the service account's own, empty mailbox: /me matched, not a 400


def test_folder_message_and_patch(sandbox, http):
    s = seed(sandbox.state)
    msg = deliver_inbound(sandbox.state, s.shared.upn, from_addr="a@example.com", subject="Case", body_html="x")
    folder = http.get(url(sandbox, f"/USERS/{s.shared.upn}/mailfolders/SentItems"), headers=s.auth)
    assert folder.status_code == 200 and folder.json()["displayName"] == "Sent Items"
    got = http.get(url(sandbox, f"/Users/{s.shared.upn}/MailFolders/Inbox/Messages/{msg.id}"), headers=s.auth)
    assert got.status_code == 200 and got.json()["subject"] == "Case"
    patched = http.patch(url(sandbox, f"/Users/{s.shared.upn}/Messages/{msg.id}"), headers=s.auth,
                         json={"isRead": True})
    assert patched.status_code == 200 and msg.is_read is True
    attachments = http.get(url(sandbox, f"/users/{s.shared.upn}/messages/{msg.id}/Attachments"), headers=s.auth)
    assert attachments.status_code == 200 and attachments.json()["value"] == []


def test_ids_stay_case_sensitive(sandbox, http):
    s = seed(sandbox.state)
    msg = deliver_inbound(sandbox.state, s.shared.upn, from_addr="a@example.com", subject="Case", body_html="x")
    for ref in (msg.id, msg.immutable_id):
        resp = http.get(url(sandbox, f"/Users/{s.shared.upn}/Messages/{ref.swapcase()}"), headers=s.auth)
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "ErrorItemNotFound"


def test_delta_in_any_case(sandbox, http):
    s = seed(sandbox.state)
    generate_mail(sandbox.state, s.shared.upn, 9, seed=12)
    for spelling in ("Delta", "DELTA()"):
        first = url(sandbox, f"/users/{s.shared.upn}/mailfolders/INBOX/messages/{spelling}?$select=subject&$top=4")
        items, link, pages = delta_round(http, first, s.auth)
        assert {m["id"] for m in items} == {m.id for m in sandbox.state.messages.values()
                                            if m.mailbox_id == s.shared.id} and pages >= 3
        assert f"/messages/{spelling}?" in link          # the links keep the path as it was sent
        new = deliver_inbound(sandbox.state, s.shared.upn, from_addr="a@example.com", subject=spelling,
                              body_html="x")
        changes, _link, _ = delta_round(http, link, s.auth)
        assert [m["id"] for m in changes] == [new.id]


def test_batch_path_and_item_urls(sandbox, http):
    s = seed(sandbox.state)
    msg = deliver_inbound(sandbox.state, s.shared.upn, from_addr="a@example.com", subject="Batch", body_html="x")
    items = [{"id": "1", "method": "GET", "url": f"/Users/{s.shared.upn}/MailFolders/Inbox/Messages?$select=id"},
             {"id": "2", "method": "GET", "url": f"/USERS/{s.shared.upn}/MESSAGES/{msg.id}"},
             {"id": "3", "method": "GET", "url": f"/users/{s.shared.upn}/messages/{msg.id.swapcase()}"},
             {"id": "4", "method": "GET", "url": f"/Users/{s.other.upn}/MailFolders/Inbox"},
             {"id": "5", "method": "GET", "url": f"/users/{s.shared.upn}/mailFolders/inbox/messages/Delta()"}]
    resp = http.post(url(sandbox, "/$Batch"), headers=s.auth, json={"requests": items})
    assert resp.status_code == 200, resp.text
    by_id = {r["id"]: r for r in resp.json()["responses"]}
    assert by_id["1"]["status"] == 200 and [m["id"] for m in by_id["1"]["body"]["value"]] == [msg.id]
    assert by_id["2"]["status"] == 200 and by_id["2"]["body"]["subject"] == "Batch"
    assert by_id["3"]["status"] == 404
    assert by_id["4"]["status"] == 403 and by_id["4"]["body"]["error"]["code"] == "ErrorAccessDenied"
    assert by_id["5"]["status"] == 200 and [m["id"] for m in by_id["5"]["body"]["value"]] == [msg.id]


def test_subscriptions(graph, receiver, world):
    body = {"changeType": "created", "resource": "Me/MailFolders('Inbox')/Messages",
            "expirationDateTime": in_minutes(120), "clientState": "s", "notificationUrl": receiver.url("/hook")}
    created = graph.call("POST", "/Subscriptions", json=body)
    assert created.status_code == 201, created.text
    sub_id = created.json()["id"]
    assert graph.call("GET", f"/SUBSCRIPTIONS/{sub_id}").json()["id"] == sub_id
    assert [s["id"] for s in graph.call("GET", "/Subscriptions").json()["value"]] == [sub_id]
    renewed = graph.call("PATCH", f"/Subscriptions/{sub_id}", json={"expirationDateTime": in_minutes(200)})
    assert renewed.status_code == 200, renewed.text
    assert graph.call("POST", f"/Subscriptions/{sub_id}/Reauthorize").status_code == 204
    assert graph.call("DELETE", f"/Subscriptions/{sub_id}").status_code == 204
    assert graph.call("GET", f"/subscriptions/{sub_id}").status_code == 404


def test_wrong_method_and_unknown_segment_in_any_case(sandbox, http):
    s = seed(sandbox.state)
    wrong = http.delete(url(sandbox, f"/Users/{s.shared.upn}/MailFolders"), headers=s.auth)
    assert wrong.status_code == 405            # the route exists (for GET): not an unknown segment
    unknown = http.get(url(sandbox, f"/Users/{s.shared.upn}/Calendars"), headers=s.auth)
    assert unknown.status_code == 400 and "'Calendars'" in unknown.json()["error"]["message"]


def test_the_control_api_keeps_its_exact_paths(sandbox, http):
    assert http.get(sandbox.control_base + "/state").status_code == 200
    assert http.get(sandbox.control_base + "/State").status_code == 404
