"""Delta query on a mail folder (docs/microsoft-graph.md §3.2, §7.3)."""
import datetime as dt
import urllib.parse

import requests

from m365_sandbox.graph_mail import deliver_inbound, generate_mail

from mail_helpers import DELEGATED, delta_round, seed, url


def _delta(sandbox, s, query="", folder="inbox"):
    return url(sandbox, f"/users/{s.shared.upn}/mailFolders/{folder}/messages/delta{query}")


def _pref(s, size=10, immutable=False):
    prefer = f"odata.maxpagesize={size}" + (', IdType="ImmutableId"' if immutable else "")
    return {**s.auth, "Prefer": prefer}


def test_initial_sync_pages_then_delta_link(sandbox, http):
    s = seed(sandbox.state)
    sandbox.state.settings["delta_replays"] = False
    generate_mail(sandbox.state, s.shared.upn, 35, seed=1)
    first = http.get(_delta(sandbox, s), headers=_pref(s))
    assert first.status_code == 200
    assert first.headers["Preference-Applied"] == "odata.maxpagesize=10"
    assert len(first.json()["value"]) == 10 and "@odata.nextLink" in first.json()
    items, delta_link, pages = delta_round(http, _delta(sandbox, s), _pref(s))
    assert len({m["id"] for m in items}) == 35 and len(items) == 35
    assert pages == 5                            # 4 pages of data + the one empty page with a nextLink
    assert all(m["@odata.type"] == "#microsoft.graph.message" for m in items)
    assert "$deltatoken=" in delta_link
    # nothing changed: an empty round with a new deltaLink
    again = http.get(delta_link, headers=_pref(s)).json()
    assert again["value"] == [] and "@odata.deltaLink" in again


def test_created_updated_and_removed_on_move(sandbox, http):
    s = seed(sandbox.state)
    generate_mail(sandbox.state, s.shared.upn, 5, seed=2)
    _items, link, _pages = delta_round(http, _delta(sandbox, s, "?$select=subject,isRead"), _pref(s))
    msgs = sorted(sandbox.state.messages.values(), key=lambda m: m.received)
    read_one, moved = msgs[0], msgs[1]
    old_moved_id = moved.id
    assert http.patch(url(sandbox, f"/users/{s.shared.upn}/messages/{read_one.id}"), headers=s.auth,
                      json={"isRead": True}).status_code == 200
    assert http.post(url(sandbox, f"/users/{s.shared.upn}/messages/{moved.id}/move"), headers=s.auth,
                     json={"destinationId": "deleteditems"}).status_code == 201
    new = deliver_inbound(sandbox.state, s.shared.upn, from_addr="x@example.com", subject="new one",
                          body_html="<p>hi</p>")
    items, link2, _pages = delta_round(http, link, _pref(s))
    by_id = {m["id"]: m for m in items}
    assert by_id[old_moved_id] == {"@odata.type": "#microsoft.graph.message", "id": old_moved_id,
                                   "@removed": {"reason": "deleted"}}
    assert moved.id != old_moved_id          # the move gave it a new mutable id
    updated = by_id[read_one.id]
    assert updated["isRead"] is True and "@odata.etag" in updated and "subject" not in updated
    assert by_id[new.id]["subject"] == "new one" and set(by_id[new.id]) >= {"id", "subject", "isRead"}
    # the destination folder's delta sees the moved message as new
    deleted_items, _link, _p = delta_round(http, _delta(sandbox, s, folder="deleteditems"), _pref(s))
    assert [m["id"] for m in deleted_items] == [moved.id]


def test_immutable_ids_on_delta(sandbox, http):
    s = seed(sandbox.state)
    msg = deliver_inbound(sandbox.state, s.shared.upn, from_addr="x@example.com", subject="a", body_html="b")
    items, link, _ = delta_round(http, _delta(sandbox, s), _pref(s, immutable=True))
    assert [m["id"] for m in items] == [msg.immutable_id]
    sandbox.state.extra  # the same link works without the header too (both id forms)
    sandbox_msg = sandbox.state.messages[msg.immutable_id]
    http.post(url(sandbox, f"/users/{s.shared.upn}/messages/{msg.immutable_id}/move"), headers=s.auth,
              json={"destinationId": "drafts"})
    items, _link, _ = delta_round(http, link, _pref(s, immutable=True))
    assert items == [{"@odata.type": "#microsoft.graph.message", "id": sandbox_msg.immutable_id,
                      "@removed": {"reason": "deleted"}}]


def test_replays_repeat_items_across_pages(sandbox, http):
    s = seed(sandbox.state)
    generate_mail(sandbox.state, s.shared.upn, 20, seed=3)
    items, _link, _pages = delta_round(http, _delta(sandbox, s), _pref(s, size=5))
    ids = [m["id"] for m in items]
    assert len(set(ids)) == 20 and len(ids) > 20       # some items came twice
    sandbox.state.settings["delta_replays"] = False
    items, _link, _pages = delta_round(http, _delta(sandbox, s), _pref(s, size=5))
    assert len(items) == 20


def test_query_options_only_on_first_request(sandbox, http):
    s = seed(sandbox.state)
    generate_mail(sandbox.state, s.shared.upn, 12, seed=4)
    body = http.get(_delta(sandbox, s, "?$select=subject"), headers=_pref(s)).json()
    assert set(body["value"][0]) == {"@odata.type", "@odata.etag", "id", "subject"}
    link = body["@odata.nextLink"]
    assert "select" not in urllib.parse.urlsplit(link).query
    for bad in (link + "&$select=subject", link + "&$filter=receivedDateTime ge 2020-01-01T00:00:00Z",
                link[:-4] + "AAAA"):
        assert http.get(bad, headers=_pref(s)).status_code == 400, bad
    items, _, _ = delta_round(http, link, _pref(s))
    assert all(set(m) == {"@odata.type", "@odata.etag", "id", "subject"} for m in items)


def test_filter_only_received_ge_gt(sandbox, http):
    s = seed(sandbox.state)
    for flt in ("isRead eq false", "receivedDateTime lt 2024-01-01T00:00:00Z", "subject eq 'x'"):
        resp = http.get(_delta(sandbox, s, "?" + urllib.parse.urlencode({"$filter": flt})), headers=_pref(s))
        assert resp.status_code == 400 and resp.json()["error"]["code"] == "ErrorInvalidUrlQueryFilter"
    generate_mail(sandbox.state, s.shared.upn, 30, days=30, seed=5)
    cut = sandbox.state.now() - dt.timedelta(days=10)
    query = "?" + urllib.parse.urlencode({"$filter": f"receivedDateTime ge {cut.strftime('%Y-%m-%dT%H:%M:%SZ')}"})
    items, _, _ = delta_round(http, _delta(sandbox, s, query), _pref(s, size=50))
    expected = {m.id for m in sandbox.state.messages.values() if m.received >= cut.replace(microsecond=0)}
    assert {m["id"] for m in items} == expected and 0 < len(expected) < 30


def test_filtered_delta_caps_at_5000(sandbox, http):
    s = seed(sandbox.state)
    generate_mail(sandbox.state, s.shared.upn, 5200, days=30, seed=6)
    query = "?" + urllib.parse.urlencode({"$filter": "receivedDateTime ge 2000-01-01T00:00:00Z",
                                          "$select": "receivedDateTime"})
    items, _, _ = delta_round(http, _delta(sandbox, s, query), _pref(s, size=1000))
    ids = {m["id"] for m in items}
    assert len(ids) == 5000
    newest = sorted(sandbox.state.messages.values(), key=lambda m: m.received)[-5000:]
    assert ids == {m.id for m in newest}
    unfiltered, _, _ = delta_round(http, _delta(sandbox, s, "?$select=subject"), _pref(s, size=1000))
    assert len({m["id"] for m in unfiltered}) == 5200


def test_change_type_filter(sandbox, http):
    s = seed(sandbox.state)
    generate_mail(sandbox.state, s.shared.upn, 3, seed=7)
    _items, link, _ = delta_round(http, _delta(sandbox, s, "?changeType=deleted"), _pref(s))
    assert _items == []
    victim = next(iter(sandbox.state.messages.values()))
    deliver_inbound(sandbox.state, s.shared.upn, from_addr="x@example.com", subject="a", body_html="b")
    http.delete(url(sandbox, f"/users/{s.shared.upn}/messages/{victim.id}"), headers=s.auth)
    items, _, _ = delta_round(http, link, _pref(s))
    assert [m.get("@removed") for m in items] == [{"reason": "deleted"}]


def test_expired_token_sync_state_not_found_then_resync(sandbox, http):
    s = seed(sandbox.state)
    generate_mail(sandbox.state, s.shared.upn, 4, seed=8)
    _items, link, _ = delta_round(http, _delta(sandbox, s), _pref(s))
    resp = requests.post(f"{sandbox.control_base}/mail/delta/expire", json={"mode": "syncStateNotFound"},
                         verify=sandbox.ca_path)
    assert resp.status_code == 200
    gone = http.get(link, headers=_pref(s))
    assert gone.status_code == 400 and gone.json()["error"]["code"] == "syncStateNotFound"
    items, link2, _ = delta_round(http, _delta(sandbox, s), _pref(s))   # full resync works
    assert len(items) == 4
    assert http.get(link2, headers=_pref(s)).status_code == 200


def test_expired_token_410_with_location(sandbox, http):
    s = seed(sandbox.state)
    _items, link, _ = delta_round(http, _delta(sandbox, s, "?$select=subject"), _pref(s))
    http.post(f"{sandbox.control_base}/mail/delta/expire", json={"mode": "410", "mailbox": s.shared.upn})
    gone = http.get(link, headers=_pref(s), allow_redirects=False)
    assert gone.status_code == 410 and gone.json()["error"]["code"] == "resyncRequired"
    location = gone.headers["Location"]
    assert "/mailFolders/inbox/messages/delta" in location and "subject" in location
    assert http.get(location, headers=_pref(s)).status_code == 200


def test_delta_on_unknown_folder_and_without_rights(sandbox, http):
    s = seed(sandbox.state)
    assert http.get(_delta(sandbox, s, folder="nope"), headers=s.auth).status_code == 404
    denied = seed_denied = http.get(url(sandbox, f"/users/{s.other.upn}/mailFolders/inbox/messages/delta"),
                                    headers=s.auth)
    assert seed_denied.status_code == 403 and denied.json()["error"]["code"] == "ErrorAccessDenied"


def test_unsupported_delta_options(sandbox, http):
    s = seed(sandbox.state)
    for query in ("?$search=hello", "?$orderby=subject", "?$skip=10", "?changeType=moved"):
        assert http.get(_delta(sandbox, s, query), headers=_pref(s)).status_code == 400, query
    assert http.get(_delta(sandbox, s, "?$orderby=receivedDateTime desc"), headers=_pref(s)).status_code == 200


def test_changes_show_up_after_a_delay(sandbox, http):
    s = seed(sandbox.state)
    sandbox.state.settings["delta_delay_s"] = 30
    _items, link, _ = delta_round(http, _delta(sandbox, s), _pref(s))
    new = deliver_inbound(sandbox.state, s.shared.upn, from_addr="x@example.com", subject="late", body_html="b")
    items, link, _ = delta_round(http, link, _pref(s))
    assert items == []
    sandbox.state.advance_clock(31)
    items, link, _ = delta_round(http, link, _pref(s))
    assert [m["id"] for m in items] == [new.id]


def test_moved_out_and_back_within_one_round(sandbox, http):
    s = seed(sandbox.state)
    msg = deliver_inbound(sandbox.state, s.shared.upn, from_addr="x@example.com", subject="a", body_html="b")
    _items, link, _ = delta_round(http, _delta(sandbox, s), _pref(s))
    first_id = msg.id
    for folder in ("drafts", "inbox"):
        http.post(url(sandbox, f"/users/{s.shared.upn}/messages/{msg.id}/move"), headers=s.auth,
                  json={"destinationId": folder})
    items, _link, _ = delta_round(http, link, _pref(s))
    assert [(m["id"], "@removed" in m) for m in items] == [(first_id, True), (msg.id, False)]


def test_links_survive_a_restart_of_the_sandbox(sandbox, http):
    """The demo saves the sandbox's state and starts it again: a backfill's nextLink keeps working, and a delta
    link stored before the restart answers syncStateNotFound (start again), as Exchange does when it lost a
    sync state, never "invalid token" (a client rightly gives up on that one)."""
    s = seed(sandbox.state)
    sandbox.state.settings["delta_replays"] = False
    generate_mail(sandbox.state, s.shared.upn, 15, seed=4)
    _items, delta_link, _pages = delta_round(http, _delta(sandbox, s), _pref(s))
    listing = http.get(url(sandbox, f"/users/{s.shared.upn}/mailFolders/inbox/messages?$top=5"), headers=s.auth)
    next_link = listing.json()["@odata.nextLink"]

    saved = sandbox.state.to_json()
    sandbox.state.reset()
    sandbox.state.load_json(saved)
    # Access tokens are not saved (the client refreshes on 401); the service account gets a new one.
    access, _refresh = sandbox.state.issue_tokens(s.app.client_id, s.service.id, set(DELEGATED))
    s.auth = {"Authorization": f"Bearer {access.token}"}

    page = http.get(next_link, headers=s.auth)
    assert page.status_code == 200, page.text
    stale = http.get(delta_link, headers=_pref(s))
    assert stale.status_code == 400
    assert stale.json()["error"]["code"] == "syncStateNotFound"
    items, fresh_link, _pages = delta_round(http, _delta(sandbox, s), _pref(s))
    assert len(items) == 15
    assert http.get(fresh_link, headers=_pref(s)).status_code == 200, "links issued after the restart work"
