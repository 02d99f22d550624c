"""Bulk control endpoints for benchmarks at scale (issue 18, item 6): a thousand shared mailboxes with the service
account's rights in one call (``POST /control/mailboxes``), and one inbound message into each of a list of
mailboxes in one call (``POST /control/mail/deliver-many``), both with their ``ctl`` commands."""
import time

from m365_sandbox.__main__ import ctl_request, parser
from m365_sandbox.seed import seed_demo

DOMAIN = "contoso.onmicrosoft.com"
SVC = f"svc-helpdesk@{DOMAIN}"
FULL = {"user": SVC, "full_access": True, "send_as": True}


def control(sandbox, http, path, body, status):
    resp = http.post(f"{sandbox.control_base}{path}", json=body)
    assert resp.status_code == status, resp.text
    return resp.json()


def service_headers(sandbox, demo):
    svc = sandbox.state.users[demo["service_account"]["id"]]
    access, _refresh = sandbox.state.issue_tokens(demo["client_id"], svc.id, {"Mail.ReadWrite.Shared"})
    return {"Authorization": f"Bearer {access.token}", "Prefer": 'IdType="ImmutableId"'}


def test_a_thousand_shared_mailboxes_with_rights_in_one_call(sandbox, http):
    demo = seed_demo(sandbox.state, messages=False)
    started = time.perf_counter()
    made = control(sandbox, http, "/mailboxes", {"prefix": "shared", "count": 1000, "grant": FULL}, 201)
    elapsed = time.perf_counter() - started
    assert elapsed < 5, elapsed
    addresses = made["addresses"]
    assert len(addresses) == len(set(addresses)) == 1000
    assert addresses[0] == f"shared0001@{DOMAIN}" and addresses[-1] == f"shared1000@{DOMAIN}"
    assert set(made["shared_mailboxes"]) == set(addresses)
    state = sandbox.state
    box = state.user_by_ref(addresses[-1])
    assert box.kind == "shared" and box.id == made["shared_mailboxes"][addresses[-1]]["id"]
    perm = state.permission(box.id, demo["service_account"]["id"])
    assert perm.full_access and perm.send_as and not perm.send_on_behalf
    # The service account reads each of them through Graph, as it does the demo's support@.
    headers = service_headers(sandbox, demo)
    for address in (addresses[0], addresses[499], addresses[-1]):
        resp = http.get(f"{sandbox.graph_base}/users/{address}/mailFolders/inbox", headers=headers)
        assert resp.status_code == 200 and resp.json()["displayName"] == "Inbox", resp.text
    # Names already taken: nothing is made; another prefix, a start and no rights: made, unreadable.
    count = len(state.users)
    taken = control(sandbox, http, "/mailboxes", {"prefix": "shared", "count": 2, "start": 1000}, 409)["error"]
    assert "shared1000@" in taken and "shared1001" not in taken
    assert len(state.users) == count
    more = control(sandbox, http, "/mailboxes", {"prefix": "desk-", "count": 3, "start": 8, "domain": DOMAIN}, 201)
    assert more["addresses"] == [f"desk-{n:02d}@{DOMAIN}" for n in (8, 9, 10)]
    resp = http.get(f"{sandbox.graph_base}/users/desk-08@{DOMAIN}/mailFolders/inbox", headers=headers)
    assert resp.status_code == 403
    control(sandbox, http, "/mailboxes", {"prefix": "x", "count": 2, "grant": {"user": "nobody@x"}}, 404)
    control(sandbox, http, "/mailboxes", {"prefix": "x", "count": 0}, 400)
    control(sandbox, http, "/mailboxes", {"prefix": "x", "count": 2, "domain": "fabrikam.example"}, 404)
    assert len(state.users) == count + 3


def test_one_message_into_each_of_a_thousand_mailboxes_in_one_call(sandbox, http):
    demo = seed_demo(sandbox.state, messages=False)
    addresses = control(sandbox, http, "/mailboxes", {"prefix": "shared", "count": 1000, "grant": FULL},
                        201)["addresses"]
    headers = service_headers(sandbox, demo)
    links = {}
    for address in (addresses[0], addresses[-1]):     # a delta round before: the delivery shows in the next
        resp = http.get(f"{sandbox.graph_base}/users/{address}/mailFolders/inbox/messages/delta", headers=headers)
        links[address] = resp.json()["@odata.deltaLink"]
    before = time.time()
    delivered = control(sandbox, http, "/mail/deliver-many", {
        "mailboxes": addresses, "from": "customer@example.com", "subject": "Help", "body_html": "<p>Hi</p>"}, 201)
    assert delivered["seconds"] < 1, delivered["seconds"]
    assert before - 1 <= delivered["delivered_at"] <= time.time() + 1
    value = delivered["value"]
    assert [item["mailbox"] for item in value] == addresses
    assert len({item["immutable_id"] for item in value}) == 1000
    assert len({item["receivedDateTime"] for item in value}) == 1      # all at the same moment
    for item in (value[0], value[-1]):
        resp = http.get(links[item["mailbox"]], headers=headers)
        changes = resp.json()["value"]
        assert [(c["id"], c["subject"]) for c in changes] == [(item["immutable_id"], "Help")]
        msg = sandbox.state.messages[item["immutable_id"]]
        assert msg.from_addr["address"] == "customer@example.com" and msg.to[0]["address"] == item["mailbox"]
    # An unknown mailbox in the list: nothing is delivered.
    count = len(sandbox.state.messages)
    resp = http.post(f"{sandbox.control_base}/mail/deliver-many", json={
        "mailboxes": [addresses[0], f"nobody@{DOMAIN}"], "from": "customer@example.com"})
    assert resp.status_code == 404 and "nobody" in resp.json()["error"]
    control(sandbox, http, "/mail/deliver-many", {"mailboxes": [], "from": "customer@example.com"}, 400)
    control(sandbox, http, "/mail/deliver-many", {"mailboxes": [addresses[0]]}, 400)
    assert len(sandbox.state.messages) == count


def test_ctl_commands_of_the_bulk_endpoints():
    args = parser().parse_args(["ctl", "--control-url", "https://x/control", "mailboxes", "shared", "1000",
                                "--grant", SVC, "--full-access", "--send-as"])
    assert ctl_request(args) == ("POST", "/mailboxes", {
        "prefix": "shared", "count": 1000, "start": 1, "grant": {"user": SVC, "full_access": True, "send_as": True,
                                                                 "send_on_behalf": False}})
    args = parser().parse_args(["ctl", "--control-url", "https://x/control", "mailboxes", "desk", "3",
                                "--start", "5", "--domain", DOMAIN])
    assert ctl_request(args) == ("POST", "/mailboxes", {"prefix": "desk", "count": 3, "start": 5, "domain": DOMAIN})
    args = parser().parse_args(["ctl", "--control-url", "https://x/control", "deliver-many", "a@x", "b@x",
                                "--from", "c@example.com", "--subject", "S"])
    assert ctl_request(args) == ("POST", "/mail/deliver-many", {
        "mailboxes": ["a@x", "b@x"], "from": "c@example.com", "subject": "S",
        "body_html": "<p>Hello from the sandbox.</p>"})
