"""A password change or reset of the user who created subscriptions (docs/microsoft-graph.md §1.7, §2.4.1).

Microsoft removes the subscriptions a user's token created when that user's password changes or is reset (or
the account is disabled), with a ``subscriptionRemoved`` lifecycle notification; an admin's reset in the Entra
or Microsoft 365 admin center also revokes the refresh tokens of confidential clients (AADSTS50173), the user's
own change does not. Access tokens already issued keep working until they expire.
"""
from __future__ import annotations

import pytest
from signin import assert_aad, grant_consent, login, refresh
from subscription_helpers import (  # noqa: F401  (fixtures)
    Graph, control, drain, receiver, receiver_session)

from m365_sandbox.__main__ import ctl_request, parser
from m365_sandbox.seed import seed_demo

SUPPORT = "support@contoso.onmicrosoft.com"


@pytest.fixture
def signed_in(sandbox, http, receiver):
    """The demo tenant, its service account signed in through the pages (a confidential client), and the
    sandbox accepting subscriptions on shared mailboxes (its lenient mode), as the Odoo connector uses it."""
    demo = seed_demo(sandbox.state, messages=False)
    grant_consent(sandbox.state, demo)
    sandbox.state.settings["shared_mailbox_subscriptions"] = "lenient"
    _app, result = login(sandbox, http, demo)
    return demo, result


def subscribe(http, sandbox, receiver, token, folder="inbox", lifecycle=True):
    fields = {"lifecycleNotificationUrl": receiver.url("/lifecycle")} if lifecycle else {}
    response = Graph(http, sandbox, token).create(
        receiver, resource=f"users/{SUPPORT}/mailFolders('{folder}')/messages", **fields)
    assert response.status_code == 201, response.text
    return response.json()


def removed_events(receiver):
    return [(n["subscriptionId"], n["clientState"]) for n in receiver.notifications("/lifecycle")
            if n["lifecycleEvent"] == "subscriptionRemoved"]


def status(http, sandbox, sub_id):
    listed = control(http, sandbox, "GET", "/subscriptions")["subscriptions"]
    return next(s["status"] for s in listed if s["id"] == sub_id)


def test_reset_password_removes_the_subscriptions_and_revokes_the_sign_in(sandbox, http, receiver, signed_in):
    demo, result = signed_in
    token = result["access_token"]
    inbox = subscribe(http, sandbox, receiver, token)
    sent = subscribe(http, sandbox, receiver, token, folder="sentitems")
    quiet = subscribe(http, sandbox, receiver, token, folder="archive", lifecycle=False)
    svc = demo["service_account"]["id"]

    out = control(http, sandbox, "POST", f"/users/{svc}/reset-password", json={"password": "N3w-pass"})

    # Every subscription the user's token created is gone at once, each with its notification when it has a
    # lifecycle URL (the one without is removed silently, recorded as not sent).
    assert sorted(out["subscriptions_removed"]) == sorted([inbox["id"], sent["id"], quiet["id"]])
    drain(http, sandbox)
    receiver.wait_for(lambda: len(removed_events(receiver)) == 2)
    assert sorted(removed_events(receiver)) == sorted([(inbox["id"], "secret-state"), (sent["id"], "secret-state")])
    for sub in (inbox, sent, quiet):
        assert status(http, sandbox, sub["id"]) == "removed"
        # The access token issued before the reset still works (until it expires), but the subscription is gone.
        assert Graph(http, sandbox, token).call("GET", f"/subscriptions/{sub['id']}").status_code == 404
    dropped = control(http, sandbox, "GET", "/subscriptions/deliveries")["dropped"]
    assert [d["notification"]["subscriptionId"] for d in dropped if d["reason"] == "no lifecycleNotificationUrl"] \
        == [quiet["id"]]
    # The refresh token is revoked, with Microsoft's code and text for a password change or reset.
    refused = refresh(sandbox, demo, result["refresh_token"])
    assert_aad(refused, "invalid_grant", 50173)
    assert "The user might have changed or reset their password." in refused["error_description"]
    # A new sign-in, with the new password, works and may subscribe again: that one stays.
    demo["service_account"]["password"] = "N3w-pass"
    _app, again = login(sandbox, http, demo)
    fresh = subscribe(http, sandbox, receiver, again["access_token"])
    drain(http, sandbox)
    assert status(http, sandbox, fresh["id"]) == "active"
    assert len(removed_events(receiver)) == 2


def test_own_password_change_removes_the_subscriptions_and_keeps_the_refresh_token(
        sandbox, http, receiver, signed_in):
    demo, result = signed_in
    inbox = subscribe(http, sandbox, receiver, result["access_token"])
    svc = demo["service_account"]["username"]

    out = control(http, sandbox, "POST", f"/users/{svc}/change-password", json={"password": "Own-N3w"})

    assert out["password"] == "Own-N3w" and out["subscriptions_removed"] == [inbox["id"]]
    receiver.wait_for(lambda: removed_events(receiver))
    assert removed_events(receiver) == [(inbox["id"], "secret-state")]
    # A confidential client's refresh token survives the user's own change (Microsoft's revocation table).
    renewed = refresh(sandbox, demo, result["refresh_token"])
    assert "access_token" in renewed, renewed
    fresh = subscribe(http, sandbox, receiver, renewed["access_token"])
    drain(http, sandbox)
    assert status(http, sandbox, fresh["id"]) == "active"
    # The old password no longer signs in; the new one does.
    with pytest.raises(AssertionError):
        login(sandbox, http, demo)
    demo["service_account"]["password"] = "Own-N3w"
    login(sandbox, http, demo)


def test_other_users_subscriptions_are_left_alone(sandbox, http, receiver, signed_in):
    demo, result = signed_in
    mine = subscribe(http, sandbox, receiver, result["access_token"])
    # The tenant admin's own subscription, on their own mailbox.
    _app, admin = login(sandbox, http, demo, who="admin")
    theirs = Graph(http, sandbox, admin["access_token"]).create(
        receiver, lifecycleNotificationUrl=receiver.url("/lifecycle")).json()

    out = control(http, sandbox, "POST", f"/users/{demo['admin']['id']}/change-password")
    assert out["subscriptions_removed"] == [theirs["id"]] and out["password"]
    drain(http, sandbox)
    assert status(http, sandbox, mine["id"]) == "active"
    response = http.post(f"{sandbox.control_base}/users/nobody@contoso.onmicrosoft.com/change-password")
    assert response.status_code == 404


def test_ctl_change_password_and_reset_password():
    args = parser().parse_args(["ctl", "--control-url", "https://x/control", "change-password",
                                "svc@contoso.onmicrosoft.com", "--password", "Pw-1"])
    assert ctl_request(args) == ("POST", "/users/svc@contoso.onmicrosoft.com/change-password", {"password": "Pw-1"})
    args = parser().parse_args(["ctl", "--control-url", "https://x/control", "change-password", "svc"])
    assert ctl_request(args) == ("POST", "/users/svc/change-password", {})
    args = parser().parse_args(["ctl", "--control-url", "https://x/control", "reset-password", "svc"])
    assert ctl_request(args) == ("POST", "/users/svc/reset-password", {})
