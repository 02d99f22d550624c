"""POST/GET/PATCH/DELETE /subscriptions and the validation handshake, over HTTPS (contract §2.1, §2.2, §2.5, §7.1, §7.5)."""
from __future__ import annotations

import datetime as dt
import threading

import pytest
from subscription_helpers import (  # noqa: F401  (fixtures)
    Graph, control, graph, https_receiver, in_minutes, parse_graph_time, receiver, receiver_session, world)

FORBIDDEN = "Operation: Create; Exception: [Status Code: Forbidden; Reason: Forbidden]"


def error_code(response) -> str:
    return response.json()["error"]["code"]


# --- creation and the handshake ------------------------------------------------------------------------

def test_create_runs_handshake_and_returns_subscription(graph, receiver, world):
    response = graph.create(receiver, lifecycleNotificationUrl=receiver.url("/lifecycle"))
    assert response.status_code == 201, response.text
    sub = response.json()
    assert sub["@odata.context"].endswith("/v1.0/$metadata#subscriptions/$entity")
    assert sub["applicationId"] == world.app.client_id and sub["creatorId"] == world.user.id
    assert sub["changeType"] == "created,updated,deleted"
    assert sub["resource"] == "me/mailFolders('Inbox')/messages"
    assert sub["clientState"] == "secret-state"
    assert sub["notificationUrl"] == receiver.url("/hook")
    assert sub["lifecycleNotificationUrl"] == receiver.url("/lifecycle")
    assert sub["includeResourceData"] is False and sub["latestSupportedTlsVersion"] == "v1_2"
    assert sub["notificationContentType"] == "application/json"
    assert response.headers["client-request-id"] and response.headers["request-id"]
    # Both URLs were validated, each with an empty text/plain POST and a token that needs decoding.
    assert [v["path"] for v in receiver.validations] == ["/hook", "/lifecycle"]
    for validation in receiver.validations:
        assert validation["content_type"] == "text/plain; charset=utf-8"
        assert validation["body"] == b""
        token, raw = validation["token"], validation["raw_query"]
        assert " " in token and ":" in token and "+" in token and "/" in token
        assert "%2f" in raw.lower() and "%2b" in raw.lower() and "%3a" in raw.lower() and "+" in raw


@pytest.mark.parametrize("mode", ["encoded", "unquote", "json", "wrong", "status500"])
def test_bad_validation_answer_fails_create(graph, receiver, sandbox, mode):
    receiver.validation = mode
    response = graph.create(receiver)
    assert response.status_code == 400
    assert error_code(response) == "ValidationError"
    assert response.json()["error"]["message"].startswith("Subscription validation request failed.")
    assert sandbox.state.subscriptions == {}


def test_bad_lifecycle_url_answer_fails_create(graph, receiver, sandbox):
    receiver.validation = "echo"
    response = graph.create(receiver, lifecycleNotificationUrl=receiver.base + "/missing-route-but-json")
    assert response.status_code == 201       # the receiver echoes on every path
    receiver.reset()
    receiver.validation = "json"
    response = graph.create(receiver, resource="me/messages",
                            lifecycleNotificationUrl=receiver.url("/lifecycle"))
    assert response.status_code == 400 and error_code(response) == "ValidationError"


def test_slow_validation_fails_and_does_not_block_the_sandbox(graph, receiver, sandbox, http):
    sandbox.state.settings["validation_timeout_s"] = 1.5
    receiver.validation_delay = 3
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("create", graph.create(receiver)))
    thread.start()
    receiver.wait_for(lambda: receiver.validations)
    listing = graph.call("GET", "/subscriptions")           # served while the handshake is pending
    assert listing.status_code == 200 and thread.is_alive()
    thread.join()
    assert result["create"].status_code == 400 and error_code(result["create"]) == "ValidationError"
    assert "1.5 seconds" in result["create"].json()["error"]["message"]


def test_http_notification_url_rejected_by_default(graph, receiver, sandbox):
    sandbox.state.settings["allow_http_loopback_notification_urls"] = False
    response = graph.create(receiver)
    assert response.status_code == 400 and receiver.validations == []
    response = graph.create(notificationUrl="http://odoo.example.com/hook")
    assert response.status_code == 400


def test_http_non_loopback_rejected_even_when_allowed(graph, receiver):
    response = graph.create(notificationUrl="http://odoo.example.com/hook")
    assert response.status_code == 400


def test_https_receiver_with_its_own_ca(graph, https_receiver, sandbox):
    https_receiver.reset()
    sandbox.state.settings["notification_ca_bundle"] = https_receiver.ca_path
    response = graph.create(https_receiver)
    assert response.status_code == 201, response.text
    sandbox.state.settings["notification_ca_bundle"] = sandbox.ca_path   # a CA that did not sign it
    response = graph.create(https_receiver, resource="me/messages")
    assert response.status_code == 400 and error_code(response) == "ValidationError"


def test_expiration_under_45_minutes_is_raised(graph, receiver):
    before = dt.datetime.now(dt.timezone.utc)
    response = graph.create(receiver, expirationDateTime=in_minutes(5))
    assert response.status_code == 201
    stored = parse_graph_time(response.json()["expirationDateTime"])
    assert before + dt.timedelta(minutes=44, seconds=59) <= stored <= before + dt.timedelta(minutes=46)
    assert graph.call("GET", f"/subscriptions/{response.json()['id']}").json()["expirationDateTime"] == \
        response.json()["expirationDateTime"]


def test_expiration_cap_is_10070_minutes(graph, receiver):
    response = graph.create(receiver, expirationDateTime=in_minutes(10071))
    assert response.status_code == 400
    assert response.json()["error"] == {**response.json()["error"], "code": "ExtensionError",
                                        "message": "Subscription expiration can only be 10070 minutes in the "
                                                   "future."}
    assert receiver.validations == []
    assert graph.create(receiver, expirationDateTime=in_minutes(10069)).status_code == 201


def test_duplicate_is_409(graph, receiver):
    first = graph.create(receiver)
    assert first.status_code == 201
    second = graph.create(receiver, changeType="deleted,updated,created")
    assert second.status_code == 409
    assert second.json()["error"]["message"] == \
        f"Subscription Id {first.json()['id']} already exists for the requested combination"
    assert graph.create(receiver, changeType="created").status_code == 201


def test_shared_mailbox_documented_is_403(graph, receiver, world):
    response = graph.create(receiver, resource=f"users/{world.shared.upn}/mailFolders/inbox/messages")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "ExtensionError"
    assert response.json()["error"]["message"] == FORBIDDEN
    assert receiver.validations == []


def test_shared_mailbox_lenient_is_accepted_with_full_access(graph, receiver, world, sandbox):
    sandbox.state.settings["shared_mailbox_subscriptions"] = "lenient"
    response = graph.create(receiver, resource=f"Users/{world.shared.id}/messages")
    assert response.status_code == 201, response.text
    sandbox.state.grant(world.shared.id, world.user.id, full_access=False, send_as=True)
    response = graph.create(receiver, resource=f"users/{world.shared.upn}/mailFolders('Inbox')/messages")
    assert response.status_code == 403 and error_code(response) == "ExtensionError"


@pytest.mark.parametrize("resource", [
    "me/messages", "/me/mailfolders('inbox')/messages", "me/mailFolders/Inbox/messages",
    "users/{upn}/messages", "Users/{id}/mailFolders/inbox/messages", "users('{id}')/messages",
    "me/mailFolders('Inbox')/messages?$filter=isRead eq false&$select=subject,bodyPreview",
])
def test_resource_forms(graph, receiver, world, resource):
    resource = resource.format(upn=world.user.upn.upper(), id=world.user.id)
    response = graph.create(receiver, resource=resource)
    assert response.status_code == 201, response.text
    assert response.json()["resource"] == resource


@pytest.mark.parametrize("fields", [
    {"changeType": None}, {"changeType": "created,moved"}, {"notificationUrl": None},
    {"expirationDateTime": None}, {"expirationDateTime": "tomorrow"}, {"clientState": "x" * 129},
    {"resource": "me/events"}, {"resource": "me/mailFolders/nosuchfolder/messages"},
    {"latestSupportedTlsVersion": "v2_0"},
])
def test_invalid_bodies(graph, receiver, fields):
    response = graph.create(receiver, **fields)
    assert 400 <= response.status_code < 500 and "error" in response.json(), response.text
    assert receiver.validations == []


def test_client_state_of_128_is_fine(graph, receiver):
    assert graph.create(receiver, clientState="x" * 128).status_code == 201


def test_needs_a_mail_read_scope(graph, receiver, world):
    token = world.other_token(scopes={"User.Read"})
    response = graph.create(receiver, token=token)
    assert response.status_code == 403 and error_code(response) == "ExtensionError"


def test_no_token_is_401(graph, receiver, http, sandbox):
    response = http.post(sandbox.graph_base + "/subscriptions", json={})
    assert response.status_code == 401 and error_code(response) == "InvalidAuthenticationToken"


def test_immutable_id_preference_is_applied(graph, receiver):
    response = graph.create(receiver, headers={"Prefer": 'IdType="ImmutableId"'})
    assert response.status_code == 201
    assert response.headers["Preference-Applied"] == 'IdType="ImmutableId"'


# --- management --------------------------------------------------------------------------------------

def test_patch_renews_and_returns_the_object(graph, receiver):
    sub = graph.create(receiver).json()
    response = graph.call("PATCH", f"/subscriptions/{sub['id']}", json={"expirationDateTime": in_minutes(3000)})
    assert response.status_code == 200
    renewed = response.json()
    assert renewed["id"] == sub["id"] and renewed["clientState"] == "secret-state"
    assert parse_graph_time(renewed["expirationDateTime"]) > parse_graph_time(sub["expirationDateTime"])
    response = graph.call("PATCH", f"/subscriptions/{sub['id']}", json={"expirationDateTime": in_minutes(20000)})
    assert response.status_code == 400 and error_code(response) == "ExtensionError"


def test_patch_notification_url_revalidates(graph, receiver):
    sub = graph.create(receiver).json()
    receiver.validation = "json"
    response = graph.call("PATCH", f"/subscriptions/{sub['id']}", json={"notificationUrl": receiver.url("/new")})
    assert response.status_code == 400 and error_code(response) == "ValidationError"
    receiver.validation = "echo"
    response = graph.call("PATCH", f"/subscriptions/{sub['id']}", json={"notificationUrl": receiver.url("/new")})
    assert response.status_code == 200 and response.json()["notificationUrl"] == receiver.url("/new")


def test_patch_cannot_add_lifecycle_url(graph, receiver):
    sub = graph.create(receiver).json()
    response = graph.call("PATCH", f"/subscriptions/{sub['id']}",
                          json={"lifecycleNotificationUrl": receiver.url("/lifecycle")})
    assert response.status_code == 400
    assert graph.call("PATCH", f"/subscriptions/{sub['id']}", json={}).status_code == 400


def test_patch_after_removal_is_404(graph, receiver, http, sandbox):
    sub = graph.create(receiver).json()
    control(http, sandbox, "POST", f"/subscriptions/{sub['id']}/remove")
    response = graph.call("PATCH", f"/subscriptions/{sub['id']}", json={"expirationDateTime": in_minutes(600)})
    assert response.status_code == 404 and error_code(response) == "ResourceNotFound"


def test_expired_subscription_disappears(graph, receiver, http, sandbox):
    sub = graph.create(receiver, expirationDateTime=in_minutes(50)).json()
    sandbox.state.advance_clock(51 * 60)
    assert graph.call("GET", f"/subscriptions/{sub['id']}").status_code == 404
    response = graph.call("PATCH", f"/subscriptions/{sub['id']}", json={"expirationDateTime": in_minutes(600)})
    assert response.status_code == 404
    assert graph.call("GET", "/subscriptions").json()["value"] == []
    # Expired subscriptions no longer block a new one for the same combination.
    assert graph.create(receiver, expirationDateTime=in_minutes(600)).status_code == 201


def test_control_expire(graph, receiver, http, sandbox):
    sub = graph.create(receiver).json()
    control(http, sandbox, "POST", f"/subscriptions/{sub['id']}/expire")
    assert graph.call("GET", f"/subscriptions/{sub['id']}").status_code == 404
    listed = control(http, sandbox, "GET", "/subscriptions")["subscriptions"]
    assert [(s["id"], s["status"]) for s in listed] == [(sub["id"], "expired")]


def test_delete(graph, receiver):
    sub = graph.create(receiver).json()
    response = graph.call("DELETE", f"/subscriptions/{sub['id']}")
    assert response.status_code == 204 and response.content == b""
    assert graph.call("GET", f"/subscriptions/{sub['id']}").status_code == 404
    assert graph.call("DELETE", f"/subscriptions/{sub['id']}").status_code == 404


def test_reauthorize(graph, receiver):
    sub = graph.create(receiver).json()
    response = graph.call("POST", f"/subscriptions/{sub['id']}/reauthorize")
    assert response.status_code == 204 and response.content == b""
    assert graph.call("POST", "/subscriptions/00000000-0000-0000-0000-000000000000/reauthorize").status_code == 404


def test_list_is_scoped_to_app_and_user_and_paged(graph, receiver, world, sandbox):
    state = sandbox.state
    other_app = state.add_app(world.tenant.id, "Other app", [])
    other_user = state.add_user(world.tenant.id, "jane@contoso.onmicrosoft.com", "Jane")
    mine = [graph.create(receiver, resource=r).json()["id"]
            for r in ("me/messages", "me/mailFolders/inbox/messages", "me/mailFolders/drafts/messages")]
    assert graph.create(receiver, token=world.other_token(client_id=other_app.client_id)).status_code == 201
    assert graph.create(receiver, token=world.other_token(user_id=other_user.id)).status_code == 201
    state.settings["subscriptions_page_size"] = 2
    first = graph.call("GET", "/subscriptions").json()
    assert first["@odata.context"].endswith("/$metadata#subscriptions") and len(first["value"]) == 2
    second = graph.call("GET", first["@odata.nextLink"]).json()
    assert "@odata.nextLink" not in second
    assert sorted(s["id"] for s in first["value"] + second["value"]) == sorted(mine)
    # Another app cannot read mine.
    other = graph.call("GET", f"/subscriptions/{mine[0]}", token=world.other_token(client_id=other_app.client_id))
    assert other.status_code == 404
    # The skiptoken is opaque and bound to the caller.
    stolen = graph.call("GET", first["@odata.nextLink"], token=world.other_token(user_id=other_user.id))
    assert stolen.status_code == 400
    assert len(control(http_session(graph), sandbox, "GET", "/subscriptions")["subscriptions"]) == 5


def http_session(graph: Graph):
    return graph.http
