"""Realistic bulk mail for a mailbox: threads with replies (In-Reply-To/References, one conversationId),
HTML bodies, inline images and file attachments, non-ASCII names and subjects, spread over ``days``.

Fast enough for 100,000 messages in a few seconds: attachment bytes are shared between messages, and the
messages go into the state in one pass (one delta-log entry each; change callbacks only for small batches).
"""
from __future__ import annotations

import datetime as dt
import random

from .mail_store import (add_message, bump, conversation_index, default_headers, log_change, mailbox_address,
                         new_attachment_id, new_change_key, new_immutable_id, new_message_id, resolve_mailbox_ref,
                         well_known)
from .state import Attachment, Message, SandboxState

NOTIFY_UP_TO = 100   # generate_mail calls the on_mail_change callbacks only for batches this small

PEOPLE = [("Jürgen Müller", "juergen.mueller@example.de"), ("Amélie Dubois", "amelie.dubois@exemple.fr"),
          ("山田 太郎", "taro.yamada@example.jp"), ("Søren Østergaard", "soren@example.dk"),
          ("José Núñez", "jose.nunez@ejemplo.es"), ("Zoë Brontë", "zoe.bronte@example.co.uk"),
          ("Łukasz Wójcik", "lukasz.wojcik@przyklad.pl"), ("Alice Martin", "alice.martin@example.com"),
          ("Bob O'Neill", "bob.oneill@example.ie"), ("Ünal Çelik", "unal.celik@ornek.com.tr"),
          ("Customer Service", "service@shop.example.com"), ("Noreply Billing", "noreply@billing.example.net")]
SUBJECTS = ["Rechnung Nr. {n} – Zahlungserinnerung", "Réunion de projet n°{n}", "見積書のご送付（{n}）",
            "Order #{n} has shipped", "Quarterly report Q{q} draft", "Übergabeprotokoll Zählerstand {n}",
            "Question about contract {n}", "Angebot für Wärmepumpe – Kunde {n}", "Ticket [{n}] cannot log in",
            "Café order for Friday ☕", "Urgent: Vertragsänderung {n}", "Confirmation de rendez-vous {n}"]
PARAGRAPHS = ["Hallo zusammen, anbei die Unterlagen zur Prüfung. Grüße aus Köln!",
              "Bonjour, pourriez-vous confirmer la réception de ce message avant vendredi ?",
              "お世話になっております。添付の資料をご確認ください。",
              "Please find the details below. Let me know if anything is missing.",
              "The meter reading was taken on site; the photo is attached for reference.",
              "Wir benötigen noch die unterschriebene Vollmacht & die IBAN für den Abschlag.",
              "Thanks for the quick reply — that works for us. <b>Next steps</b> follow."]
PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
       b"\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7V\xbd\xfa\x00\x00\x00\x00IEND\xaeB`\x82")
PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n" + b"0" * 2048 + b"\n%%EOF\n"
CSV = "Zählpunkt;Stand;Datum\nDE0001;12345;2024-05-01\nDE0002;67890;2024-05-02\n".encode()
FILES = [("Rechnung_Übersicht.pdf", "application/pdf", PDF), ("Zählerstände.csv", "text/csv", CSV),
         ("見積書.pdf", "application/pdf", PDF), ("photo.png", "image/png", PNG)]


def _att(name: str, ctype: str, content: bytes, when: dt.datetime, inline: bool = False,
         cid: str | None = None) -> Attachment:
    return Attachment(id=new_attachment_id(), name=name, content_type=ctype, content=content, is_inline=inline,
                      content_id=cid, last_modified=when)


def generate_mail(state: SandboxState, mailbox_ref: str, count: int, *, days: int = 30, seed: int = 0,
                  folder: str = "inbox") -> int:
    """Add ``count`` generated messages to ``folder`` of ``mailbox_ref``; returns how many were added."""
    rng = random.Random(seed)
    with state.lock:
        mailbox = resolve_mailbox_ref(state, mailbox_ref)
        target = state.folder_by_ref(mailbox.id, folder) or well_known(state, mailbox.id, folder.lower())
        me = mailbox_address(mailbox)
        now = state.now().replace(microsecond=0)
        span = days * 86400
        offsets = sorted((rng.random() * span for _ in range(count)), reverse=True)
        threads: list[Message] = []
        created = []
        for i, offset in enumerate(offsets):
            when = now - dt.timedelta(seconds=int(offset), microseconds=i % 1000)
            name, addr = PEOPLE[rng.randrange(len(PEOPLE))]
            parent = threads[rng.randrange(len(threads))] if threads and rng.random() < 0.3 else None
            body_parts = [PARAGRAPHS[rng.randrange(len(PARAGRAPHS))] for _ in range(1 + rng.randrange(3))]
            attachments = []
            if rng.random() < 0.05:
                cid = f"image{i}@sandbox"
                body_parts.append(f'<img src="cid:{cid}" alt="logo">')
                attachments.append(_att("logo.png", "image/png", PNG, when, inline=True, cid=cid))
            if rng.random() < 0.12:
                fname, ctype, content = FILES[rng.randrange(len(FILES))]
                attachments.append(_att(fname, ctype, content, when))
            if parent is not None:
                subject = parent.subject if parent.subject.startswith("RE: ") else "RE: " + parent.subject
                conv, refs = parent.conversation_id, parent.references + [parent.internet_message_id]
                quote = f"<blockquote>{parent.body[:400]}</blockquote>"
            else:
                subject = SUBJECTS[rng.randrange(len(SUBJECTS))].format(n=10000 + rng.randrange(90000),
                                                                       q=1 + rng.randrange(4))
                conv, refs, quote = "AAQkAGI2" + new_change_key()[10:] + "=", [], ""
            body = ("<html><head><meta charset=\"utf-8\"></head><body>"
                    + "".join(f"<p>{p}</p>" for p in body_parts)
                    + f"<p>--<br>{name}</p>" + quote + "</body></html>")
            msg = Message(
                id=new_message_id(), immutable_id=new_immutable_id(), mailbox_id=mailbox.id, folder_id=target.id,
                internet_message_id=f"<gen.{seed}.{i}.{rng.getrandbits(40):x}@{addr.rpartition('@')[2]}>",
                conversation_id=conv, subject=subject, body_content_type="html", body=body,
                from_addr={"name": name, "address": addr}, sender_addr={"name": name, "address": addr},
                to=[me], cc=[{"name": n, "address": a} for n, a in ([PEOPLE[rng.randrange(len(PEOPLE))]]
                                                                    if rng.random() < 0.2 else [])],
                received=when, sent=when - dt.timedelta(seconds=rng.randrange(1, 120)), created=when,
                modified=when, is_read=rng.random() < 0.6,
                importance="high" if rng.random() < 0.05 else "normal",
                in_reply_to=parent.internet_message_id if parent else None, references=refs,
                attachments=attachments, change_key=new_change_key(),
                conversation_index=conversation_index(conv, len(refs)))
            msg.internet_headers = default_headers(msg)
            if len(threads) < 500:
                threads.append(msg)
            else:
                threads[rng.randrange(500)] = msg
            created.append(msg)
        if count > NOTIFY_UP_TO:
            for msg in created:
                state.messages[msg.immutable_id] = msg
                log_change(state, target.id, "created", msg)
            bump(state)
    if count <= NOTIFY_UP_TO:
        for msg in created:
            add_message(state, msg)
    return len(created)
