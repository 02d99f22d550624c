"""JSON batching: POST /v1.0/$batch (docs/microsoft-graph.md §5, §7.9)."""
from m365_sandbox.graph_mail import deliver_inbound

from mail_helpers import seed, url


def _batch(sandbox, http, s, requests_, **kw):
    return http.post(url(sandbox, "/$batch"), headers=s.auth, json={"requests": requests_}, **kw)


def test_batch_dispatches_items_to_the_same_handlers(sandbox, http):
    s = seed(sandbox.state)
    msg = deliver_inbound(sandbox.state, s.shared.upn, from_addr="a@example.com", subject="Hallo", body_html="x")
    items = [{"id": "1", "method": "GET", "url": "/me"},
             {"id": "2", "method": "GET", "url": f"/users/{s.shared.upn}/mailFolders/inbox/messages?$select=subject"},
             {"id": "3", "method": "PATCH", "url": f"/users/{s.shared.upn}/messages/{msg.id}",
              "headers": {"Content-Type": "application/json"}, "body": {"isRead": True}},
             {"id": "4", "method": "GET", "url": f"/users/{s.other.upn}/messages"},
             {"id": "5", "method": "GET", "url": "users/nobody@contoso.onmicrosoft.com/messages"}]
    resp = _batch(sandbox, http, s, items)
    assert resp.status_code == 200
    by_id = {r["id"]: r for r in resp.json()["responses"]}
    assert set(by_id) == {"1", "2", "3", "4", "5"}
    assert by_id["1"]["status"] == 200 and by_id["1"]["body"]["id"] == s.service.id
    assert by_id["2"]["body"]["value"][0]["subject"] == "Hallo"
    assert by_id["3"]["status"] == 200 and msg.is_read is True
    assert by_id["4"]["status"] == 403 and by_id["4"]["body"]["error"]["code"] == "ErrorAccessDenied"
    assert by_id["5"]["status"] == 404
    assert by_id["2"]["headers"]["Content-Type"].startswith("application/json")


def test_batch_limits(sandbox, http):
    s = seed(sandbox.state)
    too_many = [{"id": str(i), "method": "GET", "url": "/me"} for i in range(21)]
    assert _batch(sandbox, http, s, too_many).status_code == 400
    assert _batch(sandbox, http, s, too_many[:20]).status_code == 200
    dup = [{"id": "1", "method": "GET", "url": "/me"}, {"id": "1", "method": "GET", "url": "/me"}]
    resp = _batch(sandbox, http, s, dup)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "BadRequest"
    no_type = [{"id": "1", "method": "POST", "url": "/me/sendMail", "body": {"message": {}}}]
    assert _batch(sandbox, http, s, no_type).status_code == 400
    assert http.post(url(sandbox, "/$batch"), headers=s.auth, data=b"{nope").status_code == 400
    unknown_dep = [{"id": "1", "method": "GET", "url": "/me", "dependsOn": ["9"]}]
    assert _batch(sandbox, http, s, unknown_dep).status_code == 400


def test_batch_item_429_has_its_own_retry_after(sandbox, http):
    s = seed(sandbox.state)
    sandbox.state.faults["graph"] = {"429": 1, "retry_after": 13}
    items = [{"id": str(i), "method": "GET", "url": "/me/messages"} for i in range(3)]
    resp = _batch(sandbox, http, s, items)
    assert resp.status_code == 200
    throttled = [r for r in resp.json()["responses"] if r["status"] == 429]
    assert len(throttled) == 1
    assert throttled[0]["headers"]["Retry-After"] == "13"
    assert throttled[0]["body"]["error"]["code"] == "TooManyRequests"


def test_depends_on_orders_and_failed_dependency_is_424(sandbox, http):
    s = seed(sandbox.state)
    msg = deliver_inbound(sandbox.state, s.shared.upn, from_addr="a@example.com", subject="x", body_html="x")
    items = [{"id": "a", "method": "PATCH", "url": f"/users/{s.shared.upn}/messages/{msg.id}",
              "headers": {"Content-Type": "application/json"}, "body": {"isRead": True}},
             {"id": "b", "method": "GET", "url": f"/users/{s.shared.upn}/messages/{msg.id}?$select=isRead",
              "dependsOn": ["a"]},
             {"id": "c", "method": "GET", "url": f"/users/{s.shared.upn}/messages/AAMkMissing",
              "dependsOn": ["b"]},
             {"id": "d", "method": "GET", "url": "/me", "dependsOn": ["c"]}]
    resp = _batch(sandbox, http, s, items)
    assert resp.status_code == 200
    by_id = {r["id"]: r for r in resp.json()["responses"]}
    assert by_id["b"]["body"]["isRead"] is True          # ran after a
    assert by_id["c"]["status"] == 404
    assert by_id["d"]["status"] == 424
    sandbox.state.settings["batch_envelope_424"] = True  # the other reading of the docs
    assert _batch(sandbox, http, s, items).status_code == 424


def test_batch_responses_may_come_out_of_order(sandbox, http):
    s = seed(sandbox.state)
    items = [{"id": str(i), "method": "GET", "url": "/me"} for i in range(20)]
    orders = {tuple(r["id"] for r in _batch(sandbox, http, s, items).json()["responses"]) for _ in range(3)}
    assert any(order != tuple(str(i) for i in range(20)) for order in orders)


def test_batch_item_urls_must_be_relative(sandbox, http):
    s = seed(sandbox.state)
    items = [{"id": "1", "method": "GET", "url": "https://graph.microsoft.com/v1.0/me"}]
    assert _batch(sandbox, http, s, items).status_code == 400


def test_batch_without_a_valid_token_is_401(sandbox, http):
    seed(sandbox.state)
    resp = http.post(url(sandbox, "/$batch"), json={"requests": [{"id": "1", "method": "GET", "url": "/me"}]})
    assert resp.status_code == 401 and "WWW-Authenticate" in resp.headers
