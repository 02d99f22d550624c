"""Outlook throttling per (app id, mailbox) and injected faults (docs/microsoft-graph.md §5, §7.9)."""
import threading

from m365_sandbox.graph_mail import deliver_inbound

from mail_helpers import seed, url


def _inbox(sandbox, s, mailbox=None):
    return url(sandbox, f"/users/{mailbox or s.shared.upn}/mailFolders/inbox/messages?$top=1")


def _assert_429_envelope(resp):
    assert resp.status_code == 429
    assert resp.headers["Retry-After"].isdigit() and int(resp.headers["Retry-After"]) >= 1
    err = resp.json()["error"]
    assert list(err) == ["code", "innerError", "message"]
    assert err["code"] == "TooManyRequests" and err["message"] == "Please retry again later."
    inner = err["innerError"]
    assert inner["code"] == "429" and inner["status"] == "429" and inner["message"] == "Please retry after"
    assert set(inner) == {"code", "date", "message", "request-id", "status"}


def test_fifth_concurrent_request_gets_429(sandbox, http):
    s = seed(sandbox.state)
    sandbox.state.faults["graph"] = {"latency_ms": 800}
    results, barrier = [], threading.Barrier(5)

    def call():
        import requests
        with requests.Session() as session:
            session.verify = sandbox.ca_path
            barrier.wait()
            results.append(session.get(_inbox(sandbox, s), headers=s.auth))

    threads = [threading.Thread(target=call) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200, 200, 200, 200, 429]
    _assert_429_envelope(next(r for r in results if r.status_code == 429))


def test_concurrency_is_per_mailbox(sandbox, http):
    s = seed(sandbox.state)
    sandbox.state.grant(s.other.id, s.service.id, full_access=True)
    sandbox.state.faults["graph"] = {"latency_ms": 600}
    results, barrier = [], threading.Barrier(8)

    def call(mailbox):
        import requests
        with requests.Session() as session:
            session.verify = sandbox.ca_path
            barrier.wait()
            results.append(session.get(_inbox(sandbox, s, mailbox), headers=s.auth).status_code)

    threads = [threading.Thread(target=call, args=(m,)) for m in [s.shared.upn] * 4 + [s.other.upn] * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 8


def test_request_window_per_app_and_mailbox(sandbox, http):
    s = seed(sandbox.state)
    sandbox.state.settings.update(throttle_window_requests=5, throttle_window_s=600)
    for _ in range(5):
        assert http.get(_inbox(sandbox, s), headers=s.auth).status_code == 200
    throttled = http.get(_inbox(sandbox, s), headers=s.auth)
    _assert_429_envelope(throttled)
    assert 590 <= int(throttled.headers["Retry-After"]) <= 600
    # another mailbox of the same app is not affected
    assert http.get(url(sandbox, "/me/messages"), headers=s.auth).status_code == 200
    # another app on the same mailbox is not affected
    other_app = sandbox.state.add_app(s.tenant.id, "Other", [])
    token, _ = sandbox.state.issue_tokens(other_app.client_id, s.service.id, {"Mail.Read.Shared"})
    assert http.get(_inbox(sandbox, s), headers={"Authorization": f"Bearer {token.token}"}).status_code == 200
    # the window slides
    sandbox.state.advance_clock(601)
    assert http.get(_inbox(sandbox, s), headers=s.auth).status_code == 200


def test_injected_429_503_504(sandbox, http):
    s = seed(sandbox.state)
    sandbox.state.faults["graph"] = {"429": 1, "503": 1, "504": 1, "retry_after": 7}
    first = http.get(_inbox(sandbox, s), headers=s.auth)
    _assert_429_envelope(first)
    assert first.headers["Retry-After"] == "7"
    second = http.get(_inbox(sandbox, s), headers=s.auth)
    assert second.status_code == 503 and second.headers["Retry-After"] == "7"
    assert second.json()["error"]["code"] == "serviceNotAvailable"
    assert http.get(_inbox(sandbox, s), headers=s.auth).status_code == 504
    assert http.get(_inbox(sandbox, s), headers=s.auth).status_code == 200


def test_auth_errors_come_before_throttling(sandbox, http):
    s = seed(sandbox.state)
    sandbox.state.faults["graph"] = {"429": 5}
    assert http.get(_inbox(sandbox, s), headers={"Authorization": "Bearer nope"}).status_code == 401


def test_counts_per_mailbox(sandbox, http):
    s = seed(sandbox.state)
    for _ in range(3):
        http.get(_inbox(sandbox, s), headers=s.auth)
    http.get(url(sandbox, "/me/messages"), headers=s.auth)
    counts = http.get(f"{sandbox.control_base}/mail/counts").json()
    assert counts["mailboxes"] == {s.shared.upn: 3, s.service.upn: 1}
    assert counts["apps"] == {s.app.client_id: 4}


def test_upload_volume_per_five_minutes(sandbox, http):
    s = seed(sandbox.state)
    sandbox.state.settings["throttle_upload_bytes"] = 4000
    msg = deliver_inbound(sandbox.state, s.shared.upn, from_addr="a@example.com", subject="x", body_html="x")
    target = url(sandbox, f"/users/{s.shared.upn}/messages/{msg.id}")
    payload = {"categories": ["x" * 1500]}
    assert http.patch(target, headers=s.auth, json=payload).status_code == 200
    assert http.patch(target, headers=s.auth, json=payload).status_code == 200
    throttled = http.patch(target, headers=s.auth, json=payload)
    _assert_429_envelope(throttled)
    assert 1 <= int(throttled.headers["Retry-After"]) <= 300
    assert http.get(_inbox(sandbox, s), headers=s.auth).status_code == 200    # reads still pass
    sandbox.state.advance_clock(301)
    assert http.patch(target, headers=s.auth, json=payload).status_code == 200


def test_injected_429_unknown_error_variant(sandbox, http):
    s = seed(sandbox.state)
    sandbox.state.faults["graph"] = {"429": 1, "429_code": "UnknownError", "retry_after": 3}
    resp = http.get(_inbox(sandbox, s), headers=s.auth)
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "3"
    assert resp.json()["error"]["code"] == "UnknownError" and resp.json()["error"]["message"] == ""


def test_injected_401_refuses_a_valid_token_then_lets_it_through(sandbox, http):
    """The ``401`` fault: Graph refuses a token it would otherwise accept (revocation under CAE)."""
    state = sandbox.state
    tenant = state.add_tenant("fault401.onmicrosoft.com")
    app = state.add_app(tenant.id, "app", [])
    user = state.add_user(tenant.id, "svc@fault401.onmicrosoft.com", "Service")
    access, _refresh = state.issue_tokens(app.client_id, user.id, {"Mail.Read"})
    state.faults["graph"] = {"401": 1}
    url = sandbox.graph_base + "/me/mailFolders/inbox"
    headers = {"Authorization": "Bearer " + access.token}
    refused = http.get(url, headers=headers)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert refused.headers["WWW-Authenticate"].startswith("Bearer ")
    assert http.get(url, headers=headers).status_code == 200
