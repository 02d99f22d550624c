"""Every subscription call the addon makes, as Microsoft's own ``msgraph-sdk`` sends it (Kiota request builders:
its JSON casing, ``@odata.type``, its datetime format with offset, its empty-body ``reauthorize``), against the
sandbox; and the sandbox's Graph fault switches (401, 429, 503, latency) on the subscription endpoints, as on
every mail endpoint.
"""
import datetime as dt

import pytest
from subscription_helpers import receiver, receiver_session  # noqa: F401  (fixtures)
from test_msgraph_sdk import run_sdk

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from msgraph.generated.models.o_data_errors.o_data_error import ODataError
    from msgraph.generated.models.subscription import Subscription

from m365_sandbox.seed import CONNECTOR_SCOPES, seed_demo

pytestmark = pytest.mark.filterwarnings("ignore:This class is deprecated:DeprecationWarning")

SUPPORT = "support@contoso.onmicrosoft.com"


@pytest.fixture
def demo_token(sandbox):
    demo = seed_demo(sandbox.state)
    access, _ = sandbox.state.issue_tokens(demo["client_id"], demo["service_account"]["id"], set(CONNECTOR_SCOPES))
    return access.token


def new_subscription(receiver, folder="inbox", minutes=10070 - 1):   # noqa: F811
    return Subscription(
        change_type="created,updated,deleted",
        notification_url=receiver.url("/notify"),
        lifecycle_notification_url=receiver.url("/lifecycle"),
        resource=f"users/{SUPPORT}/mailFolders/{folder}/messages",
        expiration_date_time=dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=minutes),
        client_state="s" * 64,
        latest_supported_tls_version="v1_2",
    )


def immutable():
    config = RequestConfiguration()
    config.headers.add("Prefer", 'IdType="ImmutableId"')
    return config


def test_sdk_create_get_list_patch_reauthorize_delete(sandbox, receiver, demo_token):  # noqa: F811
    sandbox.state.settings["shared_mailbox_subscriptions"] = "lenient"

    async def scenario(client, _adapter):
        created = await client.subscriptions.post(new_subscription(receiver), request_configuration=immutable())
        assert created.id and created.expiration_date_time
        assert created.resource == f"users/{SUPPORT}/mailFolders/inbox/messages"
        fetched = await client.subscriptions.by_subscription_id(created.id).get()
        listed = await client.subscriptions.get()
        later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=5)
        patched = await client.subscriptions.by_subscription_id(created.id).patch(
            Subscription(expiration_date_time=later))
        await client.subscriptions.by_subscription_id(created.id).reauthorize.post()
        await client.subscriptions.by_subscription_id(created.id).delete()
        with pytest.raises(ODataError) as gone:
            await client.subscriptions.by_subscription_id(created.id).patch(Subscription(expiration_date_time=later))
        return created, fetched, listed, patched, gone.value

    created, fetched, listed, patched, gone = run_sdk(sandbox, demo_token, scenario)
    assert fetched.id == created.id and [sub.id for sub in listed.value] == [created.id]
    assert abs((patched.expiration_date_time - dt.datetime.now(dt.timezone.utc)).total_seconds()
               - 5 * 86400) < 120
    assert gone.response_status_code == 404
    assert len(receiver.validations) == 2      # both URLs validated at creation
    # The PATCH, then the reauthorize within 10 minutes: the sandbox flags it as Microsoft would mind it.
    assert sandbox.state.extra["subscriptions_room"]["client_bugs"]


def test_sdk_create_refused_on_a_shared_mailbox_by_default(sandbox, receiver, demo_token):  # noqa: F811
    async def scenario(client, _adapter):
        with pytest.raises(ODataError) as refused:
            await client.subscriptions.post(new_subscription(receiver))
        return refused.value

    refused = run_sdk(sandbox, demo_token, scenario)
    assert refused.response_status_code == 403
    assert refused.error.code == "ExtensionError"


@pytest.mark.parametrize("status", ["401", "429", "503"])
def test_fault_switches_reach_subscription_endpoints(sandbox, http, receiver, demo_token, status):  # noqa: F811
    sandbox.state.settings["shared_mailbox_subscriptions"] = "lenient"
    headers = {"Authorization": f"Bearer {demo_token}"}
    base = sandbox.graph_base
    body = {"changeType": "created", "notificationUrl": receiver.url("/n"), "clientState": "x",
            "resource": f"users/{SUPPORT}/mailFolders/inbox/messages",
            "expirationDateTime": (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2)).isoformat()}
    sandbox.state.faults["graph"] = {status: 1, "retry_after": 3}
    refused = http.post(base + "/subscriptions", json=body, headers=headers, timeout=30)
    assert refused.status_code == int(status)
    assert refused.json()["error"]["code"]
    if status != "401":
        assert refused.headers["Retry-After"] == "3"
    assert sandbox.state.subscriptions == {}, "the injected failure created nothing"
    created = http.post(base + "/subscriptions", json=body, headers=headers, timeout=30)
    assert created.status_code == 201
    sub_id = created.json()["id"]
    for method, path, payload in (("PATCH", f"/subscriptions/{sub_id}", {"expirationDateTime": body[
            "expirationDateTime"]}), ("POST", f"/subscriptions/{sub_id}/reauthorize", None),
            ("DELETE", f"/subscriptions/{sub_id}", None)):
        sandbox.state.faults["graph"] = {status: 1}
        assert http.request(method, base + path, json=payload, headers=headers, timeout=30).status_code == int(status)
        assert http.request(method, base + path, json=payload, headers=headers, timeout=30).status_code < 300
    assert sandbox.state.subscriptions == {}
