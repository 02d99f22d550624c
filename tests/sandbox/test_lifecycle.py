"""Lifecycle notifications and the reactions they need (docs/microsoft-graph.md §2.4, §7.6, §7.7)."""
from __future__ import annotations

import datetime as dt

import pytest
from subscription_helpers import (  # noqa: F401  (fixtures)
    control, drain, graph, in_minutes, make_message, receiver, receiver_session, world)

from m365_sandbox.delivery import notify_change


def subscribe(graph, receiver, resource="me/mailFolders('Inbox')/messages", token=None, lifecycle=True):
    fields = {"lifecycleNotificationUrl": receiver.url("/lifecycle")} if lifecycle else {}
    response = graph.create(receiver, resource=resource, token=token, **fields)
    assert response.status_code == 201, response.text
    return response.json()



def events(receiver):
    return [(n["subscriptionId"], n["lifecycleEvent"]) for n in receiver.notifications("/lifecycle")]


def status(http, sandbox, sub_id):
    listed = control(http, sandbox, "GET", "/subscriptions")["subscriptions"]
    return next(s["status"] for s in listed if s["id"] == sub_id)


def test_reauthorization_required_on_demand_pauses_until_reauthorize(graph, receiver, world, http, sandbox):
    sub = subscribe(graph, receiver)
    result = control(http, sandbox, "POST", f"/subscriptions/{sub['id']}/lifecycle",
                     json={"event": "reauthorizationRequired"})
    assert result["sent"] and result["paused"]
    receiver.wait_for(lambda: events(receiver))
    notification = receiver.notifications("/lifecycle")[0]
    assert set(notification) == {"subscriptionId", "subscriptionExpirationDateTime", "tenantId", "clientState",
                                 "lifecycleEvent"}
    assert notification["lifecycleEvent"] == "reauthorizationRequired"
    assert notification["clientState"] == "secret-state" and notification["tenantId"] == world.tenant.id
    assert status(http, sandbox, sub["id"]) == "paused"
    # While paused, changes are lost (the client must resync with delta).
    lost = make_message(world.state, world.user)
    notify_change(world.state, lost, "created")
    drain(http, sandbox)
    assert receiver.notifications("/hook") == []
    report = control(http, sandbox, "GET", "/subscriptions/deliveries")
    assert [e["notification"]["resourceData"]["id"] for e in report["lost_while_paused"]] == [lost.id]
    assert graph.call("POST", f"/subscriptions/{sub['id']}/reauthorize").status_code == 204
    assert status(http, sandbox, sub["id"]) == "active"
    kept = make_message(world.state, world.user)
    notify_change(world.state, kept, "created")
    receiver.wait_for(lambda: receiver.notifications("/hook"))
    assert [n["resourceData"]["id"] for n in receiver.notifications("/hook")] == [kept.id]


def test_patch_also_resumes_delivery(graph, receiver, world, http, sandbox):
    sub = subscribe(graph, receiver)
    control(http, sandbox, "POST", f"/subscriptions/{sub['id']}/lifecycle", json={"event": "reauthorizationRequired"})
    response = graph.call("PATCH", f"/subscriptions/{sub['id']}", json={"expirationDateTime": in_minutes(600)})
    assert response.status_code == 200
    assert status(http, sandbox, sub["id"]) == "active"


def test_consent_revoked_sends_reauthorization_required_to_that_app_only(graph, receiver, world, http, sandbox):
    state = sandbox.state
    mine = subscribe(graph, receiver)
    other_app = state.add_app(world.tenant.id, "Other", [])
    theirs = subscribe(graph, receiver, token=world.other_token(client_id=other_app.client_id))
    hooks = state.extra.get("on_consent_revoked", [])
    assert hooks, "the subscriptions room registers its consent-revoked hook"
    for hook in list(hooks):
        hook(state, world.tenant.id, world.app.client_id)
    receiver.wait_for(lambda: events(receiver))
    drain(http, sandbox)
    assert events(receiver) == [(mine["id"], "reauthorizationRequired")]
    assert status(http, sandbox, mine["id"]) == "paused" and status(http, sandbox, theirs["id"]) == "active"
    notify_change(state, make_message(state, world.user), "created")
    receiver.wait_for(lambda: receiver.notifications("/hook"))
    drain(http, sandbox)
    assert {n["subscriptionId"] for n in receiver.notifications("/hook")} == {theirs["id"]}


def test_consent_revoked_through_the_control_plane(graph, receiver, world, http, sandbox):
    """The identity/control room's revoke endpoint runs this room's hook (docs/microsoft-graph.md §7.7)."""
    from m365_sandbox.state import Consent
    state = sandbox.state
    sub = subscribe(graph, receiver)
    with state.lock:
        state.consents[(world.tenant.id, world.app.client_id)] = Consent(
            world.tenant.id, world.app.client_id, {"Mail.Read.Shared"}, state.now())
    response = http.post(f"{sandbox.control_base}/tenants/{world.tenant.id}/consent/revoke",
                         json={"client_id": world.app.client_id})
    if response.status_code == 404:
        pytest.skip("the control room has no consent-revoke endpoint yet")
    assert response.status_code == 200, response.text
    receiver.wait_for(lambda: events(receiver))
    assert events(receiver) == [(sub["id"], "reauthorizationRequired")]
    assert status(http, sandbox, sub["id"]) == "paused"
    # The access token still works until it expires (§1.7): the client can reauthorize with it.
    assert graph.call("POST", f"/subscriptions/{sub['id']}/reauthorize").status_code == 204


def test_subscription_removed(graph, receiver, world, http, sandbox):
    sub = subscribe(graph, receiver)
    result = control(http, sandbox, "POST", f"/subscriptions/{sub['id']}/remove")
    assert result["removed"] and result["sent"]
    receiver.wait_for(lambda: events(receiver))
    assert events(receiver) == [(sub["id"], "subscriptionRemoved")]
    assert graph.call("PATCH", f"/subscriptions/{sub['id']}",
                      json={"expirationDateTime": in_minutes(600)}).status_code == 404
    assert graph.call("GET", "/subscriptions").json()["value"] == []
    assert status(http, sandbox, sub["id"]) == "removed"
    notify_change(world.state, make_message(world.state, world.user), "created")
    drain(http, sandbox)
    assert receiver.notifications("/hook") == []
    # The client's reaction: create a new subscription for the same combination.
    assert graph.create(receiver, lifecycleNotificationUrl=receiver.url("/lifecycle")).status_code == 201


def test_missed_changes_nothing(graph, receiver, world, http, sandbox):
    sub = subscribe(graph, receiver)
    control(http, sandbox, "POST", f"/subscriptions/{sub['id']}/lifecycle", json={"event": "missed"})
    receiver.wait_for(lambda: events(receiver))
    assert events(receiver) == [(sub["id"], "missed")]
    assert status(http, sandbox, sub["id"]) == "active"


def test_lifecycle_events_are_batched(graph, receiver, world, http, sandbox):
    first = subscribe(graph, receiver)
    second = subscribe(graph, receiver, resource="me/messages")
    control(http, sandbox, "POST", f"/subscriptions/{first['id']}/lifecycle", json={"event": "missed"})
    control(http, sandbox, "POST", f"/subscriptions/{second['id']}/lifecycle",
            json={"event": "reauthorizationRequired", "pause": False})
    receiver.wait_for(lambda: len(events(receiver)) == 2)
    assert len([p for p in receiver.posts if p["path"] == "/lifecycle"]) == 1
    assert sorted(events(receiver)) == sorted([(first["id"], "missed"), (second["id"], "reauthorizationRequired")])
    assert status(http, sandbox, second["id"]) == "active"


def test_no_lifecycle_url_means_no_lifecycle_post(graph, receiver, world, http, sandbox):
    sub = subscribe(graph, receiver, lifecycle=False)
    result = control(http, sandbox, "POST", f"/subscriptions/{sub['id']}/remove")
    assert result == {**result, "sent": False, "removed": True}
    drain(http, sandbox)
    assert receiver.posts == []


def test_unknown_event_or_subscription(http, sandbox, graph, receiver):
    sub = subscribe(graph, receiver)
    response = http.post(f"{sandbox.control_base}/subscriptions/{sub['id']}/lifecycle", json={"event": "nap"})
    assert response.status_code == 400
    response = http.post(f"{sandbox.control_base}/subscriptions/nope/lifecycle", json={"event": "missed"})
    assert response.status_code == 404


def test_reauthorize_and_patch_within_ten_minutes_is_a_client_bug(graph, receiver, world, http, sandbox):
    sub = subscribe(graph, receiver)
    assert graph.call("POST", f"/subscriptions/{sub['id']}/reauthorize").status_code == 204
    sandbox.state.advance_clock(9 * 60)
    assert graph.call("PATCH", f"/subscriptions/{sub['id']}",
                      json={"expirationDateTime": in_minutes(600)}).status_code == 200
    bugs = control(http, sandbox, "GET", "/subscriptions/client-bugs")["client_bugs"]
    assert len(bugs) == 1
    assert bugs[0]["subscriptionId"] == sub["id"] and bugs[0]["actions"] == ["reauthorize", "PATCH"]
    assert 539 <= bugs[0]["secondsApart"] <= 545


def test_reauthorize_and_patch_far_apart_is_fine(graph, receiver, world, http, sandbox):
    sub = subscribe(graph, receiver)
    assert graph.call("PATCH", f"/subscriptions/{sub['id']}",
                      json={"expirationDateTime": in_minutes(600)}).status_code == 200
    sandbox.state.advance_clock(11 * 60)
    assert graph.call("POST", f"/subscriptions/{sub['id']}/reauthorize").status_code == 204
    assert control(http, sandbox, "GET", "/subscriptions/client-bugs")["client_bugs"] == []


def test_automatic_reauthorization_reminders_before_expiry(graph, receiver, world, http, sandbox):
    sandbox.state.settings["lifecycle_auto_reauthorization"] = True
    sub = graph.create(receiver, expirationDateTime=in_minutes(50),
                       lifecycleNotificationUrl=receiver.url("/lifecycle")).json()
    receiver.wait_for(lambda: events(receiver))                  # under 60 min left: at once
    sandbox.state.advance_clock(16 * 60)                         # then every 15 min
    receiver.wait_for(lambda: len(events(receiver)) == 2)
    assert events(receiver) == [(sub["id"], "reauthorizationRequired")] * 2
    assert status(http, sandbox, sub["id"]) == "active"          # a reminder does not pause delivery
    far = graph.create(receiver, resource="me/messages", expirationDateTime=in_minutes(600),
                       lifecycleNotificationUrl=receiver.url("/lifecycle")).json()
    sandbox.state.advance_clock(301 * 60)                        # half of the remaining time
    receiver.wait_for(lambda: (far["id"], "reauthorizationRequired") in events(receiver))


def test_password_reset_removes_the_subscription(graph, receiver, world, http, sandbox):
    sub = subscribe(graph, receiver)
    world.user.sessions_valid_from = sandbox.state.now() + dt.timedelta(seconds=1)
    receiver.wait_for(lambda: events(receiver))
    assert events(receiver) == [(sub["id"], "subscriptionRemoved")]
    assert graph.call("GET", f"/subscriptions/{sub['id']}").status_code == 404


def test_disabled_creator_removes_the_subscription(graph, receiver, world, http, sandbox):
    sub = subscribe(graph, receiver)
    world.user.disabled = True
    receiver.wait_for(lambda: events(receiver))
    assert events(receiver) == [(sub["id"], "subscriptionRemoved")]


def test_access_token_expiry_warns_then_pauses_until_reauthorized(graph, receiver, world, http, sandbox):
    state = sandbox.state
    state.settings["lifecycle_token_expiry"] = True
    sub = subscribe(graph, receiver)                        # the token lives 3600 s
    state.advance_clock(46 * 60)
    receiver.wait_for(lambda: events(receiver))
    assert events(receiver) == [(sub["id"], "reauthorizationRequired")]
    assert status(http, sandbox, sub["id"]) == "active"
    state.advance_clock(15 * 60)
    receiver.wait_for(lambda: status(http, sandbox, sub["id"]) == "paused")
    fresh = world.other_token()
    assert graph.call("POST", f"/subscriptions/{sub['id']}/reauthorize", token=fresh).status_code == 204
    assert status(http, sandbox, sub["id"]) == "active"
