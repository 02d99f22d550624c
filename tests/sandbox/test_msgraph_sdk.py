"""Microsoft's own Graph SDK (``msgraph-sdk``: Kiota request builders over httpx) against the sandbox, for every
Graph call the mail sync makes. The URLs, query strings, headers and bodies are the SDK's, not hand-written, so
this holds the sandbox to what Microsoft's clients send: ``%24``-encoded or bare ``$`` options in the SDK's own
order, URL-encoded ``$filter`` values and UPNs, ``$count=true``, ``delta()`` with parentheses, ``@odata.type`` in
PATCH bodies and the SDK's ``$batch`` body (lower-case item headers, a ``depends_on`` member). Section (g): the
actions' parameters as the SDK spells them (``Message``, ``SaveToSentItems``, ``Comment``, ``DestinationId``), and
the mailbox's well-known folders.

The SDK is async; each test runs one coroutine with :func:`run_sdk`, which builds a fresh client inside the event
loop (an httpx client must not outlive its loop).
"""
import asyncio
import datetime as dt
import json
import ssl
import warnings
from urllib.parse import urlsplit

import httpx
import pytest

# The SDK's generated request builders warn "This class is deprecated" for their own per-request configuration
# classes as they are defined (at import) and used; nothing here to act on.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kiota_abstractions.authentication import (AccessTokenProvider, AllowedHostsValidator,
                                                   BaseBearerTokenAuthenticationProvider)
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from msgraph import GraphRequestAdapter, GraphServiceClient
    from msgraph.generated.models.body_type import BodyType
    from msgraph.generated.models.email_address import EmailAddress
    from msgraph.generated.models.item_body import ItemBody
    from msgraph.generated.models.message import Message
    from msgraph.generated.models.o_data_errors.o_data_error import ODataError
    from msgraph.generated.models.recipient import Recipient
    from msgraph.generated.users.item.mail_folders.item.mail_folder_item_request_builder import (
        MailFolderItemRequestBuilder)
    from msgraph.generated.users.item.mail_folders.item.messages.delta.delta_request_builder import DeltaRequestBuilder
    from msgraph.generated.users.item.mail_folders.item.messages.messages_request_builder import MessagesRequestBuilder
    from msgraph.generated.users.item.messages.item.message_item_request_builder import MessageItemRequestBuilder
    from msgraph.generated.users.item.messages.item.move.move_post_request_body import MovePostRequestBody
    from msgraph.generated.users.item.messages.item.reply.reply_post_request_body import ReplyPostRequestBody
    from msgraph.generated.users.item.send_mail.send_mail_post_request_body import SendMailPostRequestBody
    from msgraph_core import GraphClientFactory
    from msgraph_core.requests.batch_request_content import BatchRequestContent
    from msgraph_core.requests.batch_request_item import BatchRequestItem

from m365_sandbox.graph_mail import deliver_inbound
from m365_sandbox.mailgen import generate_mail
from m365_sandbox.seed import CONNECTOR_SCOPES, seed_demo

from mail_helpers import delta_round

pytestmark = pytest.mark.filterwarnings("ignore:This class is deprecated:DeprecationWarning")

DOMAIN = "contoso.onmicrosoft.com"
SUPPORT = "support@" + DOMAIN          # demo seed: the service account has Full Access
HR = "hr@" + DOMAIN                    # demo seed: the service account has no rights
IMMUTABLE = 'IdType="ImmutableId"'
# What the sync selects on a message list or a single message.
SYNC_SELECT = ["id", "subject", "body", "internetMessageHeaders", "conversationId", "changeKey", "isRead", "from",
               "sender", "toRecipients", "ccRecipients", "replyTo", "sentDateTime", "receivedDateTime",
               "lastModifiedDateTime", "internetMessageId", "parentFolderId", "hasAttachments"]
DELTA_SELECT = ["id", "changeKey", "isRead", "lastModifiedDateTime", "subject", "receivedDateTime", "parentFolderId"]


class _SandboxToken(AccessTokenProvider):
    """Hands the SDK a sandbox access token, for the sandbox's host only (Kiota compares host names, not ports)."""

    def __init__(self, token: str, host: str):
        self._token, self._hosts = token, AllowedHostsValidator([host])

    async def get_authorization_token(self, uri, additional_authentication_context=None) -> str:
        return self._token if self._hosts.is_url_host_valid(uri) else ""

    def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
        return self._hosts


def run_sdk(sandbox, token, scenario):
    """``await scenario(client, adapter)`` with a GraphServiceClient on the sandbox's ``/v1.0``, the SDK's
    default middleware (retry, redirect, parameter-name decoding, telemetry) and the sandbox's CA."""
    async def main():
        # trust_env=False: no proxy from the environment for a loopback server; the CA is the sandbox's own.
        async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=sandbox.ca_path),
                                     trust_env=False) as http:
            client = GraphClientFactory.create_with_default_middleware(client=http)
            auth = BaseBearerTokenAuthenticationProvider(_SandboxToken(token, urlsplit(sandbox.graph_base).hostname))
            adapter = GraphRequestAdapter(auth, client)
            adapter.base_url = sandbox.graph_base
            return await scenario(GraphServiceClient(request_adapter=adapter), adapter)
    return asyncio.run(main())


def prefer(*values: str, query=None) -> RequestConfiguration:
    config = RequestConfiguration(query_parameters=query)
    config.headers.add("Prefer", ", ".join(values))
    return config


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def demo(sandbox):
    return seed_demo(sandbox.state)


@pytest.fixture
def token(sandbox, demo):
    access, _ = sandbox.state.issue_tokens(demo["client_id"], demo["service_account"]["id"], set(CONNECTOR_SCOPES))
    return access.token


def folder_messages(state, upn, folder, since=None):
    """The folder's messages in the sandbox's store (received at or after ``since``)."""
    box = state.user_by_ref(upn)
    target = state.folder_by_ref(box.id, folder)
    return [m for m in state.messages.values()
            if m.folder_id == target.id and (since is None or m.received >= since)]


# === (a) one folder === #

@pytest.mark.parametrize("folder", ["inbox", "sentitems"])
def test_get_mail_folder(sandbox, token, folder):
    generate_mail(sandbox.state, SUPPORT, 5, seed=1, folder="sentitems")
    box = sandbox.state.user_by_ref(SUPPORT)
    expected = sandbox.state.folder_by_ref(box.id, folder)

    async def scenario(client, _adapter):
        query = MailFolderItemRequestBuilder.MailFolderItemRequestBuilderGetQueryParameters(
            select=["id", "displayName", "totalItemCount"])
        return await client.users.by_user_id(SUPPORT).mail_folders.by_mail_folder_id(folder).get(
            RequestConfiguration(query_parameters=query))

    got = run_sdk(sandbox, token, scenario)
    assert got.id == expected.id
    assert got.display_name == expected.display_name
    assert got.total_item_count == len(folder_messages(sandbox.state, SUPPORT, folder)) > 0


# === (b) a received-date window, newest first, full messages, all pages === #

@pytest.mark.parametrize("folder", ["inbox", "sentitems"])
def test_message_window_pages_to_the_end(sandbox, token, folder):
    generate_mail(sandbox.state, SUPPORT, 160, days=30, seed=2, folder=folder)
    since = sandbox.state.now() - dt.timedelta(days=20)
    window = folder_messages(sandbox.state, SUPPORT, folder, since)
    assert len(window) > 100            # several pages of 50

    async def scenario(client, _adapter):
        messages = client.users.by_user_id(SUPPORT).mail_folders.by_mail_folder_id(folder).messages
        query = MessagesRequestBuilder.MessagesRequestBuilderGetQueryParameters(
            filter=f"receivedDateTime ge {iso(since)}", orderby=["receivedDateTime desc"], top=50, count=True,
            select=SYNC_SELECT, expand=["attachments"])
        headers = (IMMUTABLE, 'outlook.body-content-type="html"')
        pages = [await messages.get(prefer(*headers, query=query))]
        while pages[-1].odata_next_link:
            pages.append(await messages.with_url(pages[-1].odata_next_link).get(prefer(*headers)))
        return pages

    pages = run_sdk(sandbox, token, scenario)
    items = [m for page in pages for m in page.value]
    ids = [m.id for m in items]
    assert len(ids) == len(set(ids)) == len(window)
    assert set(ids) == {m.immutable_id for m in window}          # ImmutableId honoured on every page
    assert pages[0].odata_count == len(window)
    assert len(pages) >= 3
    received = [m.received_date_time for m in items]
    assert received == sorted(received, reverse=True)
    by_id = {m.immutable_id: m for m in window}
    for got in items:
        want = by_id[got.id]
        assert got.subject == want.subject and got.conversation_id == want.conversation_id
        assert got.change_key == want.change_key and got.internet_message_id == want.internet_message_id
        assert got.body.content_type.value == "html" and got.body.content == want.body
        assert got.from_.email_address.address == want.from_addr["address"]
        assert got.internet_message_headers is not None
        assert len(got.attachments) == len(want.attachments)
    assert any(got.attachments for got in items)                 # $expand=attachments really expanded some


# === (c) delta: initial round, a delivery, a read flag === #

def test_delta_rounds_see_a_delivery_and_a_read_flag(sandbox, http, token):
    generate_mail(sandbox.state, SUPPORT, 420, days=30, seed=3)
    since = sandbox.state.now() - dt.timedelta(days=20)
    window = folder_messages(sandbox.state, SUPPORT, "inbox", since)
    assert len(window) > 200            # more than one page at odata.maxpagesize=200
    headers = (IMMUTABLE, "odata.maxpagesize=200")

    async def delta_round(delta, link=None):
        query = None if link else DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(
            select=DELTA_SELECT, filter=f"receivedDateTime ge {iso(since)}")
        page = await (delta.with_url(link) if link else delta).get(prefer(*headers, query=query))
        items, pages = list(page.value), 1
        while page.odata_next_link:
            assert page.odata_delta_link is None
            page = await delta.with_url(page.odata_next_link).get(prefer(*headers))
            items.extend(page.value)
            pages += 1
        assert page.odata_delta_link
        return items, page.odata_delta_link, pages

    async def scenario(client, _adapter):
        box = client.users.by_user_id(SUPPORT)
        delta = box.mail_folders.by_mail_folder_id("inbox").messages.delta
        first, link, pages = await delta_round(delta)
        resp = http.post(sandbox.control_base + "/mail/deliver", json={
            "mailbox": SUPPORT, "from": "customer@example.com", "subject": "Delivered during the test",
            "body_html": "<p>Hello</p>"})
        assert resp.status_code == 201, resp.text
        delivered = resp.json()["immutable_id"]
        second, link, _ = await delta_round(delta, link)
        target = window[0].immutable_id
        patched = await box.messages.by_message_id(target).patch(Message(is_read=True), prefer(IMMUTABLE))
        third, _link, _ = await delta_round(delta, link)
        return first, pages, delivered, second, target, patched, third

    first, pages, delivered, second, target, patched, third = run_sdk(sandbox, token, scenario)
    assert pages >= 2
    assert {m.id for m in first} == {m.immutable_id for m in window}      # replays allowed, nothing missing
    assert all(m.change_key and m.subject is not None for m in first)
    assert [m.id for m in second] == [delivered]
    assert second[0].subject == "Delivered during the test" and second[0].is_read is False
    assert patched.id == target and patched.is_read is True
    assert sandbox.state.messages[target].is_read is True
    assert [(m.id, m.is_read) for m in third] == [(target, True)]


# === (d) one message === #

def test_get_one_message_with_attachments(sandbox, http, token):
    resp = http.post(sandbox.control_base + "/mail/deliver", json={
        "mailbox": SUPPORT, "from": "customer@example.com", "subject": "Invoice", "body_html": "<p>See PDF</p>",
        "attachments": [{"name": "invoice.pdf", "content_type": "application/pdf", "content_b64": "JVBERi0xLjQ="}]})
    assert resp.status_code == 201, resp.text
    immutable_id = resp.json()["immutable_id"]

    async def scenario(client, _adapter):
        query = MessageItemRequestBuilder.MessageItemRequestBuilderGetQueryParameters(
            select=SYNC_SELECT, expand=["attachments"])
        return await client.users.by_user_id(SUPPORT).messages.by_message_id(immutable_id).get(
            prefer(IMMUTABLE, query=query))

    got = run_sdk(sandbox, token, scenario)
    assert got.id == immutable_id and got.subject == "Invoice" and got.has_attachments is True
    assert [a.name for a in got.attachments] == ["invoice.pdf"]
    assert got.attachments[0].content_bytes == b"%PDF-1.4"
    assert got.parent_folder_id == sandbox.state.messages[immutable_id].folder_id


def test_an_id_differing_only_in_case_is_not_found(sandbox, token):
    """Message ids are case-sensitive (contract §3.3), whatever the path's case rules."""
    msg = folder_messages(sandbox.state, SUPPORT, "inbox")[0]
    swapped = msg.immutable_id.swapcase()

    async def scenario(client, _adapter):
        with pytest.raises(ODataError) as info:
            await client.users.by_user_id(SUPPORT).messages.by_message_id(swapped).get(prefer(IMMUTABLE))
        return info.value

    error = run_sdk(sandbox, token, scenario)
    assert error.response_status_code == 404 and error.error.code == "ErrorItemNotFound"


# === (e) $batch === #

def test_batch_of_twenty_with_a_per_item_403(sandbox, token):
    generate_mail(sandbox.state, SUPPORT, 12, seed=5)
    generate_mail(sandbox.state, SUPPORT, 3, seed=5, folder="sentitems")
    inbox = sorted(folder_messages(sandbox.state, SUPPORT, "inbox"), key=lambda m: m.immutable_id)
    assert len(inbox) >= 17
    box = sandbox.state.user_by_ref(SUPPORT)

    async def scenario(client, adapter):
        support, hr = client.users.by_user_id(SUPPORT), client.users.by_user_id(HR)
        folder_query = MailFolderItemRequestBuilder.MailFolderItemRequestBuilderGetQueryParameters(
            select=["id", "displayName", "totalItemCount"])
        message_query = MessageItemRequestBuilder.MessageItemRequestBuilderGetQueryParameters(
            select=SYNC_SELECT, expand=["attachments"])
        sender_query = MessagesRequestBuilder.MessagesRequestBuilderGetQueryParameters(
            top=1, select=["from", "sender"])
        infos = {
            "inbox": support.mail_folders.by_mail_folder_id("inbox").to_get_request_information(
                RequestConfiguration(query_parameters=folder_query)),
            "hr": hr.mail_folders.by_mail_folder_id("inbox").to_get_request_information(
                RequestConfiguration(query_parameters=folder_query)),
            "sender": support.mail_folders.by_mail_folder_id("sentitems").messages.to_get_request_information(
                RequestConfiguration(query_parameters=sender_query)),
        }
        for n, msg in enumerate(inbox[:17]):
            infos[f"m{n}"] = support.messages.by_message_id(msg.immutable_id).to_get_request_information(
                prefer(IMMUTABLE, query=message_query))
        assert len(infos) == 20
        content = BatchRequestContent({key: BatchRequestItem(info, id=key) for key, info in infos.items()})
        statuses = (await client.batch.post(content)).get_response_status_codes()
        # msgraph-core 1.5 drops JSON item bodies while parsing (BatchResponseItem reads ``body`` as base64
        # bytes); read the same SDK-built request's envelope raw to check the bodies.
        raw = await adapter.send_primitive_async(await client.batch.to_post_request_information(content),
                                                 "bytes", {"XXX": ODataError})
        return statuses, {item["id"]: item for item in json.loads(raw)["responses"]}

    statuses, items = run_sdk(sandbox, token, scenario)
    assert statuses == {key: item["status"] for key, item in items.items()}
    assert len(items) == 20
    assert items["hr"]["status"] == 403 and items["hr"]["body"]["error"]["code"] == "ErrorAccessDenied"
    assert items["inbox"]["status"] == 200
    assert items["inbox"]["body"]["id"] == sandbox.state.folder_by_ref(box.id, "inbox").id
    assert items["inbox"]["body"]["totalItemCount"] == len(inbox)
    sent = items["sender"]["body"]["value"]
    assert items["sender"]["status"] == 200 and len(sent) == 1
    newest_sent = max(folder_messages(sandbox.state, SUPPORT, "sentitems"), key=lambda m: m.received)
    assert sent[0]["id"] == newest_sent.id                   # no Prefer on this item: the REST id
    assert sent[0]["from"]["emailAddress"]["address"] == newest_sent.from_addr["address"]
    assert sent[0]["sender"]["emailAddress"]["address"] == newest_sent.sender_addr["address"]
    for n, msg in enumerate(inbox[:17]):
        item = items[f"m{n}"]
        assert item["status"] == 200, item
        assert item["body"]["id"] == msg.immutable_id and item["body"]["subject"] == msg.subject
        assert len(item["body"]["attachments"]) == len(msg.attachments)


# === (f) ids only, 1000 a page === #

def test_ids_only_window_pages_by_a_thousand(sandbox, token):
    generate_mail(sandbox.state, SUPPORT, 1300, days=30, seed=6)
    since = sandbox.state.now() - dt.timedelta(days=25)
    window = folder_messages(sandbox.state, SUPPORT, "inbox", since)
    assert len(window) > 1000

    async def scenario(client, adapter):
        # The requests are the SDK's (builder, with_url, middleware); the pages are read as raw JSON because
        # Kiota's model parsing costs ~10 ms a message, 20 s for this window.
        messages = client.users.by_user_id(SUPPORT).mail_folders.by_mail_folder_id("inbox").messages
        query = MessagesRequestBuilder.MessagesRequestBuilderGetQueryParameters(
            filter=f"receivedDateTime ge {iso(since)}", select=["id"], top=1000)
        info = messages.to_get_request_information(RequestConfiguration(query_parameters=query))
        pages = []
        while info:
            pages.append(json.loads(await adapter.send_primitive_async(info, "bytes", {"XXX": ODataError})))
            link = pages[-1].get("@odata.nextLink")
            info = link and messages.with_url(link).to_get_request_information()
        return pages

    pages = run_sdk(sandbox, token, scenario)
    ids = [m["id"] for page in pages for m in page["value"]]
    assert len(ids) == len(set(ids)) == len(window)
    assert set(ids) == {m.id for m in window}                # no Prefer: the mutable REST ids
    assert max(len(page["value"]) for page in pages) == 1000 and len(pages) >= 2
    assert all(set(m) == {"id", "@odata.etag"} for page in pages for m in page["value"])


# === (e) sending: a new draft, a large attachment through an upload session, send === #

def test_draft_upload_session_and_send(sandbox, http, token):
    """The SDK's own request builders for ``POST …/messages``, ``createUploadSession`` and ``send``; the byte ranges
    are plain PUTs (msgraph_core's ``LargeFileUploadTask`` cannot parse Outlook's ``nextExpectedRanges: ["{start}"]``,
    which the docs specify for attachments: it raises on the ``"{start}-"`` it builds from it)."""
    from msgraph.generated.models.attachment_item import AttachmentItem
    from msgraph.generated.models.attachment_type import AttachmentType
    from msgraph.generated.models.body_type import BodyType
    from msgraph.generated.models.email_address import EmailAddress
    from msgraph.generated.models.item_body import ItemBody
    from msgraph.generated.models.recipient import Recipient
    from msgraph.generated.users.item.messages.item.attachments.create_upload_session.\
        create_upload_session_post_request_body import CreateUploadSessionPostRequestBody

    content = bytes(range(256)) * (3 * 1024 * 1024 // 256 + 11)      # over 3 MB

    async def scenario(client, _adapter):
        messages = client.users.by_user_id(SUPPORT).messages
        draft = await messages.post(Message(
            subject="Large file", body=ItemBody(content_type=BodyType.Html, content="<p>see file</p>"),
            to_recipients=[Recipient(email_address=EmailAddress(address="kunde@example.com"))],
            from_=Recipient(email_address=EmailAddress(address=SUPPORT))), prefer(IMMUTABLE))
        session = await messages.by_message_id(draft.id).attachments.create_upload_session.post(
            CreateUploadSessionPostRequestBody(attachment_item=AttachmentItem(
                attachment_type=AttachmentType.File, name="big.bin", size=len(content))))
        assert session.next_expected_ranges == ["0"]
        start, step = 0, 1024 * 1024
        while start < len(content):
            chunk = content[start:start + step]
            resp = http.put(session.upload_url, data=chunk, headers={
                "Content-Range": "bytes %d-%d/%d" % (start, start + len(chunk) - 1, len(content))})
            start += len(chunk)
            assert resp.status_code == (201 if start == len(content) else 200), resp.text
        await messages.by_message_id(draft.id).send.post()
        return draft

    draft = run_sdk(sandbox, token, scenario)
    sent = sandbox.state.messages[draft.id]
    assert draft.is_draft is True and sent.is_draft is False
    assert [a.name for a in sent.attachments] == ["big.bin"] and sent.attachments[0].content == content
    assert sent.from_addr["address"] == SUPPORT


# === (g) actions with the SDK's parameter names; Exchange's well-known folders === #
# The SDK serializes action parameters as Graph's metadata spells them (``Message``, ``SaveToSentItems``,
# ``Comment``, ``DestinationId``); Microsoft documents them in camelCase and Graph takes either.

@pytest.mark.parametrize("save", [True, False])
def test_send_mail_takes_the_sdks_message_and_save_to_sent_items(sandbox, token, save):
    billing = "billing@" + DOMAIN

    async def scenario(client, _adapter):
        await client.users.by_user_id(SUPPORT).send_mail.post(SendMailPostRequestBody(
            message=Message(subject="Your meter reading", body=ItemBody(content_type=BodyType.Html,
                                                                        content="<p>Thanks</p>"),
                            to_recipients=[Recipient(email_address=EmailAddress(address=billing))]),
            save_to_sent_items=save))

    run_sdk(sandbox, token, scenario)
    [record] = sandbox.state.extra["mail_sent"]
    assert record["subject"] == "Your meter reading" and record["from"]["address"] == SUPPORT
    copies = [m for m in folder_messages(sandbox.state, SUPPORT, "sentitems") if m.subject == "Your meter reading"]
    assert len(copies) == (1 if save else 0) and bool(record["sentCopy"]) is save
    [delivered] = [m for m in folder_messages(sandbox.state, billing, "inbox") if m.subject == "Your meter reading"]
    assert delivered.body == "<p>Thanks</p>"


def test_reply_keeps_the_sdks_comment(sandbox, token):
    msg = deliver_inbound(sandbox.state, SUPPORT, from_addr="kunde@example.com", subject="Meter broken",
                          body_html="<p>It is broken</p>")

    async def scenario(client, _adapter):
        await client.users.by_user_id(SUPPORT).messages.by_message_id(msg.immutable_id).reply.post(
            ReplyPostRequestBody(comment="We send a technician on Monday."))

    run_sdk(sandbox, token, scenario)
    [record] = sandbox.state.extra["mail_sent"]
    assert record["to"] == [{"name": "kunde@example.com", "address": "kunde@example.com"}]
    assert record["subject"] == "RE: Meter broken" and record["inReplyTo"] == msg.internet_message_id
    assert "We send a technician on Monday." in record["body"]["content"]


def test_move_to_archive_with_the_sdk_and_inbox_delta_reports_it_removed(sandbox, http, token):
    msg = deliver_inbound(sandbox.state, SUPPORT, from_addr="kunde@example.com", subject="Done, thanks",
                          body_html="<p>All good</p>")
    box = sandbox.state.user_by_ref(SUPPORT)
    auth = {"Authorization": f"Bearer {token}", "Prefer": "odata.maxpagesize=100"}
    first_delta = f"{sandbox.graph_base}/users/{SUPPORT}/mailFolders/inbox/messages/delta?$select=subject"
    _items, link, _pages = delta_round(http, first_delta, auth)
    old_id = msg.id

    async def scenario(client, _adapter):
        return await client.users.by_user_id(SUPPORT).messages.by_message_id(old_id).move.post(
            MovePostRequestBody(destination_id="archive"))

    moved = run_sdk(sandbox, token, scenario)
    archive = sandbox.state.folder_by_ref(box.id, "archive")
    assert archive is not None and archive.display_name == "Archive"
    assert moved.parent_folder_id == archive.id and moved.id == msg.id != old_id
    assert sandbox.state.messages[msg.immutable_id].folder_id == archive.id
    items, _link, _pages = delta_round(http, link, auth)
    assert {"@odata.type": "#microsoft.graph.message", "id": old_id, "@removed": {"reason": "deleted"}} in items


def test_list_mail_folders_with_the_sdk_pages_through_the_well_known_folders(sandbox, token):
    async def scenario(client, _adapter):
        folders = client.users.by_user_id(SUPPORT).mail_folders
        pages = [await folders.get()]
        while pages[-1].odata_next_link:
            pages.append(await folders.with_url(pages[-1].odata_next_link).get())
        junk = await folders.by_mail_folder_id("junkemail").get()
        return pages, junk

    pages, junk = run_sdk(sandbox, token, scenario)
    assert len(pages[0].value) == 10 and len(pages) == 2          # Graph's default page: 10 folders
    names = [f.display_name for page in pages for f in page.value]
    assert {"Archive", "Conversation History", "Deleted Items", "Drafts", "Inbox", "Junk Email", "Outbox",
            "Sent Items"} <= set(names)
    assert names == sorted(names, key=str.lower) and len(names) == len(set(names))
    assert junk.display_name == "Junk Email" and junk.id in {f.id for page in pages for f in page.value}
