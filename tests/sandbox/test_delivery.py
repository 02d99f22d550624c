"""Change-notification delivery to a real webhook: batching, retries, deadline and faults (§2.3, §7.4)."""
from __future__ import annotations

import time

import pytest
from subscription_helpers import (  # noqa: F401  (fixtures)
    control, drain, graph, https_receiver, mail_changed, make_message, receiver, receiver_session, world)

from m365_sandbox.delivery import notify_change


def subscribe(graph, receiver, **fields):
    response = graph.create(receiver, **fields)
    assert response.status_code == 201, response.text
    return response.json()


def deliveries(http, sandbox, **params):
    return control(http, sandbox, "GET", "/subscriptions/deliveries", params=params)



def test_batch_carries_several_notifications_and_subscriptions(graph, receiver, world, http, sandbox):
    inbox_sub = subscribe(graph, receiver)
    mailbox_sub = subscribe(graph, receiver, resource="me/messages", changeType="created",
                            clientState="other-state")
    # A wide batching window: on a loaded machine the two changes below may be more than the default 0.2 s apart.
    world.state.settings["delivery_batch_window_s"] = 1.5
    first, second = make_message(world.state, world.user), make_message(world.state, world.user)
    mail_changed(world.state, first, "created")
    mail_changed(world.state, second, "created")
    receiver.wait_for(lambda: len(receiver.notifications()) == 4)
    assert len(receiver.posts) == 1, "one POST for the whole burst"
    post = receiver.posts[0]
    assert post["path"] == "/hook" and post["content_type"].startswith("application/json")
    by_sub = {}
    for notification in post["body"]["value"]:
        by_sub.setdefault(notification["subscriptionId"], []).append(notification)
    assert set(by_sub) == {inbox_sub["id"], mailbox_sub["id"]}
    assert {n["clientState"] for n in by_sub[inbox_sub["id"]]} == {"secret-state"}
    assert {n["clientState"] for n in by_sub[mailbox_sub["id"]]} == {"other-state"}
    notification = by_sub[inbox_sub["id"]][0]
    assert notification["changeType"] == "created" and notification["tenantId"] == world.tenant.id
    assert notification["resource"] == f"Users/{world.user.id}/Messages/{first.id}"
    assert notification["resourceData"] == {"@odata.type": "#Microsoft.Graph.Message",
                                            "@odata.id": f"Users/{world.user.id}/Messages/{first.id}",
                                            "@odata.etag": f'W/"{first.change_key}"', "id": first.id}
    assert notification["subscriptionExpirationDateTime"].endswith("+00:00")
    log = deliveries(http, sandbox, kind="change")["deliveries"]
    assert [(e["attempt"], e["status"], e["outcome"]) for e in log] == [(1, 202, "delivered")]
    assert log[0]["payload"] == post["body"] and log[0]["latency_ms"] >= 0


def test_folder_and_change_type_matching(graph, receiver, world):
    subscribe(graph, receiver, changeType="created")          # Inbox, created only
    sent = make_message(world.state, world.user, folder="sentitems")
    inbox = make_message(world.state, world.user)
    notify_change(world.state, sent, "created")                # other folder
    notify_change(world.state, inbox, "updated")               # change type not subscribed
    notify_change(world.state, inbox, "created")
    receiver.wait_for(lambda: receiver.notifications())
    assert [(n["changeType"], n["resourceData"]["id"]) for n in receiver.notifications()] == [("created", inbox.id)]


def test_filter_in_resource_turns_mark_as_read_into_deleted(graph, receiver, world):
    subscribe(graph, receiver, resource="me/mailFolders('Inbox')/messages?$filter=isRead eq false")
    unread, already_read = make_message(world.state, world.user), make_message(world.state, world.user)
    already_read.is_read = True
    notify_change(world.state, unread, "created")
    notify_change(world.state, already_read, "created")           # outside the filter: nothing
    receiver.wait_for(lambda: receiver.notifications())
    unread.is_read = True
    notify_change(world.state, unread, "updated")                 # leaves the filtered set
    receiver.wait_for(lambda: len(receiver.notifications()) == 2)
    assert [(n["changeType"], n["resourceData"]["id"]) for n in receiver.notifications()] == [
        ("created", unread.id), ("deleted", unread.id)]


def test_notification_url_query_is_replayed(graph, receiver, world):
    subscribe(graph, receiver, notificationUrl=receiver.url("/hook?company=7&db=odoo"))
    assert receiver.validations[0]["raw_query"].startswith("company=7&db=odoo&validationToken=")
    notify_change(world.state, make_message(world.state, world.user), "created")
    receiver.wait_for(lambda: receiver.posts)
    assert receiver.posts[0]["query"] == "company=7&db=odoo"


def test_immutable_id_subscription_gets_immutable_ids(graph, receiver, world):
    subscribe(graph, receiver, headers={"Prefer": 'IdType="ImmutableId"'})
    message = make_message(world.state, world.user)
    notify_change(world.state, message, "created")
    receiver.wait_for(lambda: receiver.notifications())
    assert receiver.notifications()[0]["resourceData"]["id"] == message.immutable_id


def test_retry_with_backoff_after_500(graph, receiver, world, http, sandbox):
    subscribe(graph, receiver)
    receiver.statuses = [500, 503]
    notify_change(world.state, make_message(world.state, world.user), "created")
    receiver.wait_for(lambda: len(receiver.posts) == 3)
    drain(http, sandbox)
    log = deliveries(http, sandbox, kind="change")["deliveries"]
    assert [(e["attempt"], e["status"], e["outcome"]) for e in log] == [
        (1, 500, "failed"), (2, 503, "failed"), (3, 202, "delivered")]
    gaps = [b["at"] - a["at"] for a, b in zip(receiver.posts, receiver.posts[1:])]
    assert gaps[0] >= 0.09 and gaps[1] >= 0.19, gaps      # base 0.1 s, doubling
    assert receiver.posts[0]["body"] == receiver.posts[2]["body"]


def test_three_second_deadline_counts_as_failure(graph, receiver, world, http, sandbox):
    sandbox.state.settings["delivery_timeout_s"] = 0.5      # the 3 s deadline, scaled down
    subscribe(graph, receiver)
    receiver.delays = [1.0]                                  # answers 202, but too late
    notify_change(world.state, make_message(world.state, world.user), "created")
    receiver.wait_for(lambda: len(receiver.posts) == 2)
    drain(http, sandbox)
    log = deliveries(http, sandbox, kind="change")["deliveries"]
    assert [(e["attempt"], e["outcome"]) for e in log] == [(1, "timeout"), (2, "delivered")]
    assert log[0]["status"] is None and log[0]["error"] == "timeout"


def test_retries_exhausted_drops_and_sends_missed(graph, receiver, world, http, sandbox):
    sandbox.state.settings["delivery_max_attempts"] = 3
    sub = subscribe(graph, receiver, lifecycleNotificationUrl=receiver.url("/lifecycle"))
    receiver.statuses = [500, 500, 500]
    notify_change(world.state, make_message(world.state, world.user), "created")
    receiver.wait_for(lambda: receiver.notifications("/lifecycle"))
    drain(http, sandbox)
    report = deliveries(http, sandbox)
    assert [e["outcome"] for e in report["deliveries"] if e["kind"] == "change"] == ["failed"] * 3
    assert [d["reason"] for d in report["dropped"]] == ["retries exhausted"]
    assert receiver.notifications("/lifecycle") == [{
        "subscriptionId": sub["id"], "subscriptionExpirationDateTime": receiver.notifications("/lifecycle")[0][
            "subscriptionExpirationDateTime"], "tenantId": world.tenant.id, "clientState": "secret-state",
        "lifecycleEvent": "missed"}]


def test_duplicate_fault(graph, receiver, world, http, sandbox):
    subscribe(graph, receiver)
    control(http, sandbox, "POST", "/subscriptions/faults", json={"faults": {"delivery_duplicate": 1}})
    message = make_message(world.state, world.user)
    notify_change(world.state, message, "created")
    notify_change(world.state, make_message(world.state, world.user), "created")
    receiver.wait_for(lambda: len(receiver.notifications()) == 3)
    drain(http, sandbox)
    ids = [n["resourceData"]["id"] for n in receiver.notifications()]
    assert ids.count(message.id) == 2 and len(receiver.posts) == 2


def test_out_of_order_fault(graph, receiver, world, http, sandbox):
    subscribe(graph, receiver)
    control(http, sandbox, "POST", "/subscriptions/faults", json={"faults": {"delivery_out_of_order": True}})
    messages = [make_message(world.state, world.user, subject=str(i)) for i in range(3)]
    for message in messages:
        notify_change(world.state, message, "created")
    receiver.wait_for(lambda: len(receiver.notifications()) == 3)
    assert [n["resourceData"]["id"] for n in receiver.notifications()] == [m.id for m in reversed(messages)]


def test_drop_fault(graph, receiver, world, http, sandbox):
    subscribe(graph, receiver)
    control(http, sandbox, "POST", "/subscriptions/faults", json={"faults": {"delivery_drop": 1}})
    lost, kept = make_message(world.state, world.user), make_message(world.state, world.user)
    notify_change(world.state, lost, "created")
    notify_change(world.state, kept, "created")
    receiver.wait_for(lambda: receiver.notifications())
    drain(http, sandbox)
    assert [n["resourceData"]["id"] for n in receiver.notifications()] == [kept.id]
    dropped = deliveries(http, sandbox)["dropped"]
    assert [(d["reason"], d["notification"]["resourceData"]["id"]) for d in dropped] == [
        ("fault:delivery_drop", lost.id)]


def test_wrong_client_state_fault(graph, receiver, world, http, sandbox):
    subscribe(graph, receiver)
    control(http, sandbox, "POST", "/subscriptions/faults", json={"faults": {"delivery_wrong_client_state": 1}})
    message = make_message(world.state, world.user)
    notify_change(world.state, message, "created")
    receiver.wait_for(lambda: receiver.notifications())
    states = [n["clientState"] for n in receiver.notifications()]
    assert states[0] == "secret-state" and len(states) == 2 and states[1] != "secret-state"
    assert {n["resourceData"]["id"] for n in receiver.notifications()} == {message.id}


def test_vary_resource_format_fault(graph, receiver, world, http, sandbox):
    subscribe(graph, receiver)
    control(http, sandbox, "POST", "/subscriptions/faults", json={"faults": {"delivery_vary_resource_format": True}})
    messages = [make_message(world.state, world.user) for _ in range(3)]
    for message in messages:
        notify_change(world.state, message, "created")
    receiver.wait_for(lambda: len(receiver.notifications()) == 3)
    resources = [n["resource"] for n in receiver.notifications()]
    assert len({r.split(messages[0].id)[0][:8] for r in resources}) > 1 or len(set(map(len, resources))) > 1
    assert resources[1] == f"users/{world.user.id}@{world.tenant.id}/messages/{messages[1].id}"
    assert resources[2] == f"Users('{world.user.id}')/messages('{messages[2].id}')"


def test_control_faults_endpoint(http, sandbox):
    response = http.post(sandbox.control_base + "/subscriptions/faults", json={"faults": {"nope": 1}})
    assert response.status_code == 400
    config = control(http, sandbox, "POST", "/subscriptions/faults",
                     json={"settings": {"shared_mailbox_subscriptions": "lenient", "delivery_timeout_s": 1}})
    assert config["settings"]["shared_mailbox_subscriptions"] == "lenient"
    assert sandbox.state.settings["delivery_timeout_s"] == 1
    assert config["faults"]["delivery_drop"] is None


def test_https_delivery_with_ca_bundle(graph, https_receiver, world, sandbox):
    https_receiver.reset()
    sandbox.state.settings["notification_ca_bundle"] = https_receiver.ca_path
    sandbox.state.settings["delivery_batch_window_s"] = 0.05
    subscribe(graph, https_receiver)
    notify_change(world.state, make_message(world.state, world.user), "created")
    https_receiver.wait_for(lambda: https_receiver.notifications())


def test_mail_room_changes_are_delivered(graph, receiver, world, http, sandbox):
    mail_store = pytest.importorskip("m365_sandbox.mail_store")
    subscribe(graph, receiver)
    message = mail_store.deliver_inbound(world.state, world.user.upn, from_addr="customer@example.com",
                                         subject="Order 42", body_html="<p>Hi</p>")
    receiver.wait_for(lambda: receiver.notifications())
    assert receiver.notifications()[0]["resourceData"]["id"] == message.id


def test_subscription_deleted_or_expired_gets_nothing(graph, receiver, world, http, sandbox):
    sub = subscribe(graph, receiver)
    graph.call("DELETE", f"/subscriptions/{sub['id']}")
    other = subscribe(graph, receiver, resource="me/messages")
    control(http, sandbox, "POST", f"/subscriptions/{other['id']}/expire")
    notify_change(world.state, make_message(world.state, world.user), "created")
    drain(http, sandbox)
    assert receiver.posts == []


def test_throttling_slow_then_drop(graph, receiver, world, http, sandbox):
    settings = {"delivery_timeout_s": 0.3, "delivery_retry_timeout_s": 5, "delivery_throttle_min_samples": 2,
                "delivery_slow_delay_s": 1.0, "delivery_max_attempts": 1, "delivery_send_missed_on_drop": False}
    control(http, sandbox, "POST", "/subscriptions/faults",
            json={"faults": {"delivery_throttling": True}, "settings": settings})
    subscribe(graph, receiver)
    receiver.delays = [0.4, 0.4]
    for count in (1, 2):
        notify_change(world.state, make_message(world.state, world.user), "created")
        receiver.wait_for(lambda: len(receiver.posts) == count)
        drain(http, sandbox)
    # Every answer took longer than the 3 s deadline (scaled): "slow", new notifications wait 10 min (scaled).
    started = time.monotonic()
    notify_change(world.state, make_message(world.state, world.user), "created")
    receiver.wait_for(lambda: len(receiver.posts) == 3)
    assert receiver.posts[2]["at"] - started >= 1.0
    # Every answer also exceeded the 10 s retry timeout (scaled): "drop".
    control(http, sandbox, "POST", "/subscriptions/faults", json={"settings": {"delivery_retry_timeout_s": 0.3}})
    notify_change(world.state, make_message(world.state, world.user), "created")
    drain(http, sandbox)
    assert len(receiver.posts) == 3
    assert deliveries(http, sandbox)["dropped"][-1]["reason"] == "throttled:drop"


def test_a_delivery_in_flight_during_a_reset_is_not_logged_after_it(graph, receiver, world, http, sandbox):
    """A reset sandbox starts with an empty delivery log, even while a POST from before it is still answered."""
    subscribe(graph, receiver)
    receiver.delays = [0.8]                                  # the receiver is slow to answer the first POST
    notify_change(world.state, make_message(world.state, world.user), "created")
    receiver.wait_for(lambda: len(receiver.posts) == 1)     # it is in flight now
    sandbox.state.reset()
    time.sleep(1.2)                                          # ... and has been answered since
    assert deliveries(http, sandbox)["deliveries"] == []
