"""Non-delivery reports and automatic replies as Exchange Online puts them in a mailbox (microsoft-graph.md §3.3.1).

**Bounces.** Mail sent through Graph (``sendMail``, ``reply``…, a sent draft) to an address the sandbox refuses
comes back as one NDR per sent message, delivered into the Inbox of the mailbox it was sent as (the ``From``):

* from ``"Microsoft Outlook" <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@{tenant domain}>``, subject
  ``Undeliverable: {subject}``, in the sent message's conversation;
* headers ``X-MS-Exchange-Message-Is-Ndr`` (empty), ``In-Reply-To``/``References`` (the sent message's
  Message-ID), ``Auto-Submitted: auto-replied``, ``Content-Language: en-US`` (``$select=internetMessageHeaders``);
* an HTML body like Exchange's: "Your message to … couldn't be delivered.", "Status code: 550 5.1.1", the
  original message's details, "Reported error: …", and its headers under "Original Message Headers";
* the sent message attached as an item attachment (``#microsoft.graph.itemAttachment``, ``message/rfc822``).

Refused: any address at a ``.invalid`` domain (RFC 2606; 550 5.4.310, the domain does not exist), and the
addresses in ``state.settings["bounce_addresses"]`` (``{address: status}``, status one of :data:`REFUSALS`).

Control routes (JSON, no auth):

    POST /control/mail/bounce     {"id" (immutable or REST id of the sent copy) | "internetMessageId",
                                   "recipient"?: the first recipient, "status"?: "5.1.1"}
                                   -> 201 {"id", "immutable_id", "internetMessageId", "mailbox"}: an NDR for
                                   mail already sent (a late bounce, or one for a recipient the rules accept).
    POST /control/mail/auto-reply {"mailbox", "from", "in_reply_to"?: a Message-ID the mailbox sent,
                                   "subject"?, "body_html"?, "headers"?: [{"name", "value"}] (replace the default)}
                                   -> 201 {"id", "immutable_id", "internetMessageId", "conversationId"}: an
                                   out-of-office reply as Exchange sends one: subject ``Automatic reply: …``,
                                   ``Auto-Submitted: auto-replied``, ``X-Auto-Response-Suppress: All``,
                                   ``X-MS-Exchange-Inbox-Rules-Loop: {from}``.
"""
from __future__ import annotations

import html

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .mail_paging import control_json
from .mail_store import deliver_inbound, message_mime
from .state import Message, SandboxState, new_guid

NDR_SENDER = "MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e"
# status -> (SMTP reply, the report's explanation for the sender); {domain} is the recipient's domain.
REFUSALS = {
    "5.1.1": ("550 5.1.1 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
              "{domain} couldn't find a mailbox by that name."),
    "5.1.10": ("550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
               "The email address wasn't found at the destination domain."),
    "5.4.310": ("550 5.4.310 DNS domain {domain} does not exist [Message=InfoDomainNonexistent]",
                "The domain {domain} doesn't exist."),
    "5.2.2": ("552 5.2.2 Mailbox full; the recipient's mailbox is over its storage limit",
              "The recipient's mailbox is full and can't accept messages now."),
    "5.7.1": ("550 5.7.1 Delivery not authorized, message refused",
              "{domain} refused your message: you aren't allowed to send to this recipient."),
}


def refusal(state: SandboxState, address: str) -> str | None:
    """The status the sandbox refuses ``address`` with, or None when it is delivered."""
    address = (address or "").strip().lower()
    configured = {str(k).lower(): v for k, v in (state.settings.get("bounce_addresses") or {}).items()}
    if address in configured:
        return configured[address] if configured[address] in REFUSALS else "5.1.1"
    if address.rpartition("@")[2].endswith(".invalid"):
        return "5.4.310"
    return None


def bounce_sent(state: SandboxState, msg: Message) -> Message | None:
    """The NDR of a message just sent, when some of its recipients are refused (one report for all of them)."""
    failures = [(rcpt.get("address", ""), status) for rcpt in msg.to + msg.cc + msg.bcc
                if (status := refusal(state, rcpt.get("address", "")))]
    return deliver_ndr(state, msg, failures) if failures else None


def deliver_ndr(state: SandboxState, msg: Message, failures: list) -> Message:
    """Deliver Exchange's NDR of ``msg`` for ``failures`` (``[(address, status)]``) into the sending mailbox."""
    with state.lock:
        mailbox = state.user_by_ref(msg.from_addr.get("address", "")) or state.users[msg.mailbox_id]
        tenant = state.tenants.get(mailbox.tenant_id)
        domain = tenant.domain if tenant else mailbox.upn.rpartition("@")[2]
        report = deliver_inbound(
            state, mailbox.id,
            from_addr={"name": "Microsoft Outlook", "address": f"{NDR_SENDER}@{domain}"},
            subject=f"Undeliverable: {msg.subject}", body_html=_ndr_body(msg, failures),
            to=[{"name": mailbox.display_name, "address": mailbox.upn}],
            in_reply_to=msg.internet_message_id,
            internet_message_id=f"<{new_guid()}@{domain.partition('.')[0].upper()}.prod.outlook.com>",
            attachments=[{"name": msg.subject or "Untitled", "content_type": "message/rfc822", "kind": "item",
                          "content": message_mime(msg)}],
            headers=[{"name": "X-MS-Exchange-Message-Is-Ndr", "value": ""},
                     {"name": "Auto-Submitted", "value": "auto-replied"},
                     {"name": "Content-Language", "value": "en-US"}])
        state.extra.setdefault("mail_bounced", []).append({
            "internetMessageId": msg.internet_message_id, "ndr": report.immutable_id,
            "failures": [{"recipient": address, "status": status} for address, status in failures]})
        return report


def deliver_auto_reply(state: SandboxState, mailbox_ref: str, from_addr, *, in_reply_to: str | None = None,
                       subject: str | None = None, body_html: str | None = None, headers=None) -> Message:
    """An out-of-office reply from ``from_addr`` into ``mailbox_ref``'s Inbox (to a message it sent)."""
    with state.lock:
        parent = next((m for m in state.messages.values() if in_reply_to
                       and m.internet_message_id == in_reply_to), None)
        sender = from_addr if isinstance(from_addr, dict) else {"name": from_addr, "address": from_addr}
        if subject is None:
            subject = "Automatic reply: " + (parent.subject if parent else "")
        if headers is None:
            headers = [{"name": "Auto-Submitted", "value": "auto-replied"},
                       {"name": "X-Auto-Response-Suppress", "value": "All"},
                       {"name": "X-MS-Exchange-Inbox-Rules-Loop", "value": sender.get("address", "")}]
        return deliver_inbound(state, mailbox_ref, from_addr=sender, subject=subject,
                               body_html=body_html or "<p>I am out of the office and will answer when I am back."
                               "</p>", in_reply_to=in_reply_to, headers=headers)


def _ndr_body(msg: Message, failures: list) -> str:
    first, status = failures[0]
    domain = first.rpartition("@")[2]
    reply, explanation = (text.format(domain=domain) for text in REFUSALS[status])
    esc = html.escape
    recipients = "".join(f"Recipient Address: {esc(address)}<br>" for address, _status in failures)
    errors = "".join(f"Reported error: {esc(REFUSALS[s][0].format(domain=a.rpartition('@')[2]))}<br>"
                     for a, s in failures)
    headers = "\n".join(f"{h['name']}: {h['value']}" for h in msg.internet_headers)
    return (
        '<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8"><title>DSN</title></head>'
        '<body><table width="548" cellspacing="0" cellpadding="0"><tbody>'
        '<tr><td style="font-family: \'Segoe UI\', Frutiger, Arial, sans-serif; font-size: 16px;">Your message to '
        f'<span style="color: #0072c6;">{esc(first)}</span> couldn\'t be delivered.<br></td></tr>'
        f'<tr><td style="font-size: 24px; text-align: center;">{esc(explanation)}</td></tr>'
        '<tr><td><b>How to Fix It</b><br>Check the recipient\'s address, then resend the message.</td></tr>'
        f'<tr><td><b>More Info for Email Admins</b><br>Status code: {esc(reply.split(" ")[0])} {esc(status)}<br>'
        f'<br>Original Message Details<br>Created Date: {msg.sent:%m/%d/%Y %I:%M:%S %p}<br>'
        f'Sender Address: {esc(msg.from_addr.get("address", ""))}<br>{recipients}'
        f'Subject: {esc(msg.subject)}<br><br>Error Details<br>{errors}'
        'DSN generated by: SANDBOX01MB0001.prod.outlook.com<br></td></tr></tbody></table>'
        f'<p>Original Message Headers</p><pre>{esc(headers)}</pre></body></html>')


def control_routes(state: SandboxState) -> list:
    async def bounce(request: Request):
        data = await control_json(request)
        ref, message_id = data.get("id"), data.get("internetMessageId")
        with state.lock:
            msg = state.messages.get(ref) if ref else None
            msg = msg or next((m for m in state.messages.values() if (ref and m.id == ref) or (
                message_id and m.internet_message_id == message_id and not m.is_draft)), None)
        if msg is None:
            return JSONResponse({"error": "unknown message"}, status_code=404)
        status = data.get("status") or "5.1.1"
        if status not in REFUSALS:
            return JSONResponse({"error": f"status must be one of {sorted(REFUSALS)}"}, status_code=400)
        recipient = data.get("recipient") or next(
            (a.get("address") for a in msg.to + msg.cc + msg.bcc if a.get("address")), "")
        report = deliver_ndr(state, msg, [(recipient, status)])
        return JSONResponse({"id": report.id, "immutable_id": report.immutable_id,
                             "internetMessageId": report.internet_message_id,
                             "mailbox": state.users[report.mailbox_id].upn}, status_code=201)

    async def auto_reply(request: Request):
        data = await control_json(request)
        try:
            msg = deliver_auto_reply(state, data["mailbox"], data["from"], in_reply_to=data.get("in_reply_to"),
                                     subject=data.get("subject"), body_html=data.get("body_html"),
                                     headers=data.get("headers"))
        except KeyError as exc:
            return JSONResponse({"error": f"missing or unknown: {exc}"}, status_code=400)
        return JSONResponse({"id": msg.id, "immutable_id": msg.immutable_id,
                             "internetMessageId": msg.internet_message_id,
                             "conversationId": msg.conversation_id}, status_code=201)

    return [Route("/control/mail/bounce", bounce, methods=["POST"]),
            Route("/control/mail/auto-reply", auto_reply, methods=["POST"])]
