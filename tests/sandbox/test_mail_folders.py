"""Exchange's default folders: every well-known name of learn.microsoft.com's mailFolder resource page works in
paths, ``GET …/mailFolders`` lists the Top of Information Store's folders 10 a page, and moving to Archive is
a move out of the Inbox for delta (contract §3.1, §3.2)."""
import json

from m365_sandbox.graph_mail import deliver_inbound
from m365_sandbox.state import SandboxState

from mail_helpers import delta_round, page_through, seed, url

# learn.microsoft.com "mailFolder resource type", Well-known folder names (all of them), with an English
# mailbox's display names
WELL_KNOWN = {"archive": "Archive", "clutter": "Clutter", "conflicts": "Conflicts",
              "conversationhistory": "Conversation History", "deleteditems": "Deleted Items", "drafts": "Drafts",
              "inbox": "Inbox", "junkemail": "Junk Email", "localfailures": "Local Failures",
              "msgfolderroot": "Top of Information Store", "outbox": "Outbox",
              "recoverableitemsdeletions": "Deletions", "scheduled": "Scheduled", "searchfolders": "Finder",
              "sentitems": "Sent Items", "serverfailures": "Server Failures", "syncissues": "Sync Issues"}
TOP_LEVEL = ["Archive", "Clutter", "Conversation History", "Deleted Items", "Drafts", "Inbox", "Junk Email",
             "Outbox", "Scheduled", "Sent Items", "Sync Issues"]


def _folders(sandbox, s, path=""):
    return url(sandbox, f"/users/{s.shared.upn}/mailFolders{path}")


def test_every_well_known_name_works_in_any_case(sandbox, http):
    s = seed(sandbox.state)
    ids = {}
    for name, display in WELL_KNOWN.items():
        for spelling in (name, name.upper(), name.capitalize()):
            resp = http.get(_folders(sandbox, s, f"/{spelling}"), headers=s.auth)
            assert resp.status_code == 200, (spelling, resp.text)
            assert resp.json()["displayName"] == display
            ids.setdefault(name, resp.json()["id"])
            assert resp.json()["id"] == ids[name]
    assert len(set(ids.values())) == len(WELL_KNOWN)
    hidden = {n for n in WELL_KNOWN if http.get(_folders(sandbox, s, f"/{n}"), headers=s.auth).json()["isHidden"]}
    assert hidden == {"searchfolders", "recoverableitemsdeletions"}
    assert http.get(_folders(sandbox, s, "/notafolder"), headers=s.auth).status_code == 404


def test_list_is_the_top_of_information_store_ten_a_page(sandbox, http):
    s = seed(sandbox.state)
    root = http.get(_folders(sandbox, s, "/msgfolderroot"), headers=s.auth).json()
    first = http.get(_folders(sandbox, s), headers=s.auth).json()
    assert len(first["value"]) == 10 and first["@odata.nextLink"].endswith("/mailFolders?%24skip=10")
    items, pages = page_through(http, sandbox, _folders(sandbox, s), s.auth)
    assert pages == 2 and [f["displayName"] for f in items] == TOP_LEVEL      # by display name
    assert root["childFolderCount"] == len(TOP_LEVEL)
    assert all(f["parentFolderId"] == root["id"] and f["isHidden"] is False for f in items)
    # $top pages keep $top and the other options in the nextLink; $count; $select; includeHiddenFolders
    small, pages = page_through(http, sandbox, _folders(sandbox, s, "?$top=4&$count=true&includeHiddenFolders=true"
                                                                  "&$select=displayName"), s.auth)
    assert pages == 3 and small == [{"id": f["id"], "displayName": f["displayName"]} for f in items]
    counted = http.get(_folders(sandbox, s, "?$top=4&$count=true"), headers=s.auth).json()
    assert counted["@odata.count"] == len(TOP_LEVEL) and "%24top=4" in counted["@odata.nextLink"]
    # Sync Issues' children
    sync = next(f for f in items if f["displayName"] == "Sync Issues")
    assert sync["childFolderCount"] == 3
    children = http.get(_folders(sandbox, s, f"/{sync['id']}/childFolders"), headers=s.auth).json()["value"]
    assert [f["displayName"] for f in children] == ["Conflicts", "Local Failures", "Server Failures"]
    assert http.get(_folders(sandbox, s, "/syncissues/childFolders?$top=1"), headers=s.auth).json()[
        "@odata.nextLink"].endswith("/childFolders?%24top=1&%24skip=1")
    bad = http.get(_folders(sandbox, s, "?$select=wellKnownName"), headers=s.auth)     # beta only, not v1.0
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "RequestBroker--ParseUri"


def test_move_to_archive_is_removed_from_inbox_delta_and_created_in_archive_delta(sandbox, http):
    s = seed(sandbox.state)
    msg = deliver_inbound(sandbox.state, s.shared.upn, from_addr="kunde@example.com", subject="Done, thanks",
                          body_html="<p>ok</p>")
    prefer = {**s.auth, "Prefer": "odata.maxpagesize=50"}
    delta = _folders(sandbox, s, "/{}/messages/delta")
    _items, inbox_link, _ = delta_round(http, delta.format("inbox"), prefer)
    _items, archive_link, _ = delta_round(http, delta.format("archive"), prefer)
    old_id = msg.id
    resp = http.post(url(sandbox, f"/users/{s.shared.upn}/messages/{old_id}/move"), headers=s.auth,
                     json={"destinationId": "Archive"})
    assert resp.status_code == 201, resp.text
    archive = http.get(_folders(sandbox, s, "/archive"), headers=s.auth).json()
    assert resp.json()["parentFolderId"] == archive["id"] and archive["totalItemCount"] == 1
    removed, _link, _ = delta_round(http, inbox_link, prefer)
    assert removed == [{"@odata.type": "#microsoft.graph.message", "id": old_id, "@removed": {"reason": "deleted"}}]
    created, _link, _ = delta_round(http, archive_link, prefer)
    assert [m["id"] for m in created] == [resp.json()["id"]] and created[0]["subject"] == "Done, thanks"
    listed = http.get(_folders(sandbox, s, "/archive/messages"), headers=s.auth).json()["value"]
    assert [m["id"] for m in listed] == [resp.json()["id"]]


def test_a_state_file_from_before_gets_the_default_folders(sandbox):
    s = seed(sandbox.state)
    inbox = sandbox.state.folder_by_ref(s.shared.id, "inbox")
    data = json.loads(sandbox.state.to_json())
    legacy = ("inbox", "sentitems", "drafts", "deleteditems")
    data["folders"] = [{k: v for k, v in f.items() if k not in ("parent_id", "hidden")}
                       for f in data["folders"] if f["well_known_name"] in legacy]
    restored = SandboxState()
    restored.load_json(json.dumps(data))
    assert restored.folder_by_ref(s.shared.id, "inbox").id == inbox.id          # kept, under the root now
    root = restored.folder_by_ref(s.shared.id, "msgfolderroot")
    archive = restored.folder_by_ref(s.shared.id, "ARCHIVE")
    assert archive.display_name == "Archive" and archive.parent_id == root.id
    assert restored.folder_by_ref(s.shared.id, "inbox").parent_id == root.id
    assert sorted(f.display_name for f in restored.mailbox_folders(s.shared.id) if f.parent_id == root.id) == \
        TOP_LEVEL
