"""Change and lifecycle notification delivery for the subscriptions room (contract §2.3, §2.4, §7.4, §7.6).

Graph does not call webhooks from the request that changed the mail: a notification is queued and a delivery
pipeline POSTs it later, in batches, with retries. Here that pipeline is one :class:`DeliveryWorker` per
:class:`~m365_sandbox.state.SandboxState`: a scheduler thread that gathers notifications per target URL for
``delivery_batch_window_s`` and hands each batch to a small thread pool, which POSTs it with ``requests``
(``trust_env`` off, no redirects). The sandbox's own event loops never wait on a receiver.

Everything the pipeline does is recorded in ``state.extra["subscriptions_room"]`` (the delivery log, dropped
notifications, notifications lost while a subscription was paused) and served by the control routes in
:mod:`m365_sandbox.subscriptions`.
"""
from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import heapq
import itertools
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import unquote, urlsplit

import requests

from .state import Message, SandboxState, Subscription, iso, new_guid

# Settings this room reads from ``state.settings`` (each may be absent; these are the defaults).
DEFAULTS = {
    "validation_timeout_s": 10.0,          # §2.2: answer the validation POST within 10 s
    "delivery_timeout_s": 3.0,             # §2.3: first POST must get a 2xx within 3 s
    "delivery_retry_timeout_s": 10.0,      # §2.3: retried POSTs time out after 10 s
    "delivery_backoff_base_s": 1.0,        # retry n waits base * 2**(n-1) seconds (scaled down from Graph's)
    "delivery_max_attempts": 8,            # attempts that fit the (simulated) 4 h retry window; then dropped
    "delivery_batch_window_s": 0.2,        # notifications to one URL within this window share one POST
    "delivery_workers": 8,                 # concurrent POSTs
    "delivery_send_missed_on_drop": True,  # a dropped change notification triggers a ``missed`` lifecycle event
    "notification_ca_bundle": None,        # CA file to verify https receivers; None → verify=False (sandbox only)
    "delivery_throttle_window_s": 600.0,   # §2.3 slow/drop accounting window (only with the fault switched on)
    "delivery_throttle_min_samples": 10,
    "delivery_slow_delay_s": 600.0,        # "slow": new notifications delayed this long
    "client_state_max_length": 128,        # subscription page; the changeNotification page says 255
    "subscription_patch_revalidates": True,  # a PATCHed notificationUrl gets the handshake (undocumented)
    "subscriptions_page_size": 100,
    "reauthorize_patch_bug_window_s": 600,  # §2.4: reauthorize and PATCH within this window = client bug
    "lifecycle_auto_reauthorization": False,  # §2.4 reminders before expiry: every half of the remaining time
                                              # while > 60 min remain, then every 15 min (sandbox clock)
    "lifecycle_token_expiry": False,       # reauthorizationRequired 15 min before the authorizing AT expires,
                                           # delivery paused once it has expired
    "remove_subscriptions_on_session_revoke": True,  # [O] subscriptionRemoved on password reset / disable
}

# Faults this room reads from ``state.faults`` (all off by default).
FAULT_KEYS = (
    "delivery_duplicate",            # int n (next n notifications) or true (all): each is sent twice, in two POSTs
    "delivery_out_of_order",         # true: each batch lists its notifications newest first
    "delivery_drop",                 # int n: the next n change notifications are silently dropped
    "delivery_wrong_client_state",   # int n: the next n batches carry an extra copy with a forged clientState
    "delivery_vary_resource_format",  # true: rotate the three documented ``resource`` spellings
    "delivery_throttling",           # true: §2.3 "slow"/"drop" endpoint throttling
)

LOG_LIMIT = 5000


def setting(state: SandboxState, key: str):
    return state.settings.get(key, DEFAULTS[key])


def graph_datetime(ts: dt.datetime, suffix: str = "Z") -> str:
    """Graph's 7-digit fractional form: ``2024-05-01T10:00:00.1234560Z`` (or ``+00:00`` in notifications)."""
    return ts.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0" + suffix


def room(state: SandboxState) -> dict:
    """This room's private part of ``state.extra`` (wiped by ``state.reset()``)."""
    with state.lock:
        data = state.extra.get("subscriptions_room")
        if data is None:
            data = {"deliveries": [], "dropped": [], "lost_while_paused": [], "client_bugs": [],
                    "skiptokens": {}, "throttle": {}, "counter": itertools.count(1),
                    "resource_format": itertools.count()}
            state.extra["subscriptions_room"] = data
        return data


def _append(state: SandboxState, kind: str, entry: dict, data: dict | None = None) -> dict:
    """Log ``entry`` in ``data`` (default: the current room). A delivery passes the room it was queued in, so one
    still in flight when the sandbox is reset records into that orphaned room, not into the new log."""
    with state.lock:
        data = room(state) if data is None else data
        entry = {"seq": next(data["counter"]), "time": iso(state.now()), **entry}
        log = data[kind]
        log.append(entry)
        del log[:-LOG_LIMIT]
        return entry


def live(sub: Subscription, now: dt.datetime) -> bool:
    return not sub.removed and sub.expiration > now


# --------------------------------------------------------------------------------------------------------
# Building notifications
# --------------------------------------------------------------------------------------------------------

def _resource_path(state: SandboxState, mailbox_id: str, message_id: str) -> str:
    if not state.faults.get("delivery_vary_resource_format"):
        return f"Users/{mailbox_id}/Messages/{message_id}"
    tenant_id = state.users[mailbox_id].tenant_id if mailbox_id in state.users else ""
    forms = (f"Users/{mailbox_id}/Messages/{message_id}",
             f"users/{mailbox_id}@{tenant_id}/messages/{message_id}",
             f"Users('{mailbox_id}')/messages('{message_id}')")
    return forms[next(room(state)["resource_format"]) % len(forms)]


def change_notification(state: SandboxState, sub: Subscription, message: Message, change_type: str) -> dict:
    """One changeNotification (§2.3) for ``message`` under ``sub``."""
    message_id = message.immutable_id if sub.immutable_ids else message.id
    path = _resource_path(state, message.mailbox_id, message_id)
    return {
        "subscriptionId": sub.id,
        "subscriptionExpirationDateTime": graph_datetime(sub.expiration, "+00:00"),
        "changeType": change_type,
        "resource": path,
        "resourceData": {
            "@odata.type": "#Microsoft.Graph.Message",
            "@odata.id": path,
            "@odata.etag": f'W/"{message.change_key}"',
            "id": message_id,
        },
        "clientState": sub.client_state,
        "tenantId": sub.tenant_id,
    }


def lifecycle_notification(sub: Subscription, event: str) -> dict:
    return {"subscriptionId": sub.id,
            "subscriptionExpirationDateTime": graph_datetime(sub.expiration, "+00:00"),
            "tenantId": sub.tenant_id, "clientState": sub.client_state, "lifecycleEvent": event}


def _take_count(faults: dict, key: str) -> bool:
    """Consume one unit of a counted fault (``True`` never runs out)."""
    value = faults.get(key)
    if value is True:
        return True
    if isinstance(value, int) and value > 0:
        faults[key] = value - 1
        return True
    return False


_CLAUSE = re.compile(r"^\s*(isRead|hasAttachments|isDraft|importance|subject)\s+(eq|ne)\s+"
                     r"('(?:[^']|'')*'|true|false)\s*$", re.IGNORECASE)


def resource_filter(resource: str) -> list | None:
    """The ``$filter`` inside a subscription ``resource`` as ``[(prop, op, value)]``; None when there is none
    or it is beyond this sandbox (then it is tolerated and not applied).

    Understood: ``eq``/``ne`` on isRead, hasAttachments, isDraft, importance and subject, joined by ``and``.
    """
    query = resource.partition("?")[2]
    expr = next((unquote(part.partition("=")[2]) for part in query.split("&")
                 if part.partition("=")[0].lower() == "$filter"), None)
    if not expr:
        return None
    clauses = []
    for text in re.split(r"\s+and\s+", expr, flags=re.IGNORECASE):
        match = _CLAUSE.match(text)
        if match is None:
            return None
        prop, op, literal = match.groups()
        value = literal[1:-1].replace("''", "'") if literal.startswith("'") else literal.lower() == "true"
        clauses.append((prop.lower(), op.lower(), value))
    return clauses


def _matches(message: Message, clauses: list) -> bool:
    actual = {"isread": message.is_read, "isdraft": message.is_draft,
              "hasattachments": any(not a.is_inline for a in message.attachments),
              "importance": message.importance.lower(), "subject": message.subject}
    for prop, op, value in clauses:
        value = value.lower() if prop == "importance" else value
        if (actual[prop] == value) != (op == "eq"):
            return False
    return True


def filtered_change_type(state: SandboxState, sub: Subscription, message: Message, change_type: str) -> str | None:
    """The change type ``sub`` sees: with a ``$filter`` a message entering the filtered set is ``created``,
    leaving it is ``deleted`` (Outlook: with ``isRead eq false``, marking read gives ``deleted``), and a message
    outside it is not notified at all."""
    clauses = resource_filter(sub.resource)
    if clauses is None:
        return change_type
    seen = room(state).setdefault("filter_matches", {})
    key = (sub.id, message.immutable_id)
    before = seen.pop(key, None)
    if change_type == "deleted":
        return "deleted" if before or (before is None and _matches(message, clauses)) else None
    now = seen[key] = _matches(message, clauses)
    if change_type == "created":
        return "created" if now else None
    if now:
        return "updated" if before in (True, None) else "created"
    return "deleted" if before else None


def notify_change(state: SandboxState, message: Message, change_type: str) -> int:
    """Queue a change notification for every live subscription that covers ``message``; return how many.

    This is what the mail room's ``state.extra["on_mail_change"]`` callback runs.
    """
    queued = 0
    with state.lock:
        now = state.now()
        for sub in list(state.subscriptions.values()):
            if not live(sub, now) or sub.mailbox_id != message.mailbox_id:
                continue
            if sub.folder_id and sub.folder_id != message.folder_id:
                continue
            effective = filtered_change_type(state, sub, message, change_type)
            if effective is None or effective not in sub.change_type.split(","):
                continue
            notification = change_notification(state, sub, message, effective)
            if sub.paused:
                _append(state, "lost_while_paused", {"subscriptionId": sub.id, "notification": notification})
                continue
            if _take_count(state.faults, "delivery_drop"):
                _append(state, "dropped", {"reason": "fault:delivery_drop", "url": sub.notification_url,
                                           "notification": notification})
                continue
            worker_for(state).enqueue(sub.notification_url, "change", notification)
            if _take_count(state.faults, "delivery_duplicate"):
                worker_for(state).enqueue(sub.notification_url, "change", copy.deepcopy(notification),
                                          extra_delay=setting(state, "delivery_batch_window_s") * 2)
            queued += 1
    return queued


def lifecycle_event(state: SandboxState, sub: Subscription, event: str, pause: bool = True) -> dict:
    """Send ``event`` to the lifecycle URL and apply its effect on ``sub`` (§2.4).

    ``reauthorizationRequired`` pauses delivery (unless ``pause`` is false) until a reauthorize or PATCH;
    ``subscriptionRemoved`` removes the subscription (PATCH then answers 404); ``missed`` changes nothing.
    """
    with state.lock:
        if event == "reauthorizationRequired" and pause:
            sub.paused = True
        elif event == "subscriptionRemoved":
            sub.removed = True
        notification = lifecycle_notification(sub, event)
        if sub.lifecycle_notification_url:
            worker_for(state).enqueue(sub.lifecycle_notification_url, "lifecycle", notification)
            sent = True
        else:
            _append(state, "dropped", {"reason": "no lifecycleNotificationUrl", "url": None,
                                       "notification": notification})
            sent = False
        return {"subscriptionId": sub.id, "lifecycleEvent": event, "sent": sent, "paused": sub.paused,
                "removed": sub.removed}


# --------------------------------------------------------------------------------------------------------
# HTTP to the receiver
# --------------------------------------------------------------------------------------------------------

def post_to_receiver(state: SandboxState, url: str, *, data: bytes, content_type: str,
                     timeout: float) -> tuple[requests.Response | None, float, str | None]:
    """POST ``data`` to a client's endpoint; return (response, seconds, error). Never raises.

    https receivers are verified against ``notification_ca_bundle`` when set, otherwise not at all: the
    receiver is the client's own webhook with whatever certificate it has (sandbox-only shortcut).
    """
    verify = setting(state, "notification_ca_bundle") or False
    started = time.monotonic()
    try:
        with requests.Session() as session:
            session.trust_env = False        # never route a loopback webhook through an http(s)_proxy
            response = session.post(url, data=data, headers={"Content-Type": content_type},
                                    timeout=(timeout, timeout), verify=verify, allow_redirects=False)
    except requests.Timeout:
        return None, time.monotonic() - started, "timeout"
    except requests.RequestException as exc:
        return None, time.monotonic() - started, f"{type(exc).__name__}: {exc}"
    return response, time.monotonic() - started, None


def record_attempt(state: SandboxState, *, kind: str, url: str, attempt: int, response, seconds: float,
                   error: str | None, outcome: str, payload, data: dict | None = None) -> dict:
    return _append(state, "deliveries", {
        "kind": kind, "url": url, "attempt": attempt,
        "status": response.status_code if response is not None else None,
        "latency_ms": round(seconds * 1000), "outcome": outcome, "error": error, "payload": payload}, data)


# --------------------------------------------------------------------------------------------------------
# The worker
# --------------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class _Batch:
    url: str
    kind: str                       # "change" | "lifecycle"
    notifications: list
    room: dict                      # the room the batch was queued in; a reset orphans it
    attempt: int = 1
    first_attempted: float | None = None


class DeliveryWorker:
    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.cond = threading.Condition()
        self.heap: list = []                # (due monotonic, seq, _Batch | key of self.gathering)
        self.gathering: dict = {}           # (url, kind, id(room)) -> _Batch being gathered
        self.inflight = 0
        self.seq = itertools.count()
        self.pool = ThreadPoolExecutor(max_workers=setting(state, "delivery_workers"),
                                       thread_name_prefix="m365-delivery")
        self.thread = threading.Thread(target=self._run, name="m365-delivery-scheduler", daemon=True)
        self.thread.start()

    # --- queueing (any thread; may hold state.lock: the worker never takes state.lock under self.cond) ---

    def enqueue(self, url: str, kind: str, notification: dict, extra_delay: float = 0.0) -> None:
        data = room(self.state)
        window = setting(self.state, "delivery_batch_window_s")
        with self.cond:
            due = time.monotonic() + window + extra_delay
            if extra_delay:
                self._push(due, _Batch(url, kind, [notification], data))
            else:
                key = (url, kind, id(data))
                batch = self.gathering.get(key)
                if batch is None:
                    batch = self.gathering[key] = _Batch(url, kind, [], data)
                    self._push(due, key)
                batch.notifications.append(notification)
            self.cond.notify_all()

    def _push(self, due: float, item) -> None:
        heapq.heappush(self.heap, (due, next(self.seq), item))

    def drain(self, timeout: float) -> bool:
        """Wait until nothing is queued, gathering or in flight; False on timeout."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.heap or self.gathering or self.inflight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.05))
            return True

    def pending(self) -> dict:
        with self.cond:
            return {"scheduled": len(self.heap), "gathering": len(self.gathering), "in_flight": self.inflight}

    # --- scheduling --------------------------------------------------------------------------------------

    def _run(self) -> None:
        last_tick = 0.0
        while True:
            if time.monotonic() - last_tick >= 0.5:
                last_tick = time.monotonic()
                self._remind()
            with self.cond:
                now = time.monotonic()
                ready = []
                while self.heap and self.heap[0][0] <= now:
                    _, _, item = heapq.heappop(self.heap)
                    batch = item if isinstance(item, _Batch) else self.gathering.pop(item, None)
                    if batch is not None:
                        ready.append(batch)
                self.inflight += len(ready)
                if not ready:
                    self.cond.wait(min(self.heap[0][0] - now, 0.5) if self.heap else 0.5)
                    continue
            for batch in ready:
                self.pool.submit(self._deliver, batch)

    def _deliver(self, batch: _Batch) -> None:
        try:
            if self.state.extra.get("subscriptions_room") is batch.room:
                self._attempt(batch)
        except Exception as exc:  # a bug here must not kill the pool thread silently
            _append(self.state, "dropped", {"reason": f"internal error: {exc!r}", "url": batch.url,
                                            "notification": batch.notifications})
        finally:
            with self.cond:
                self.inflight -= 1
                self.cond.notify_all()

    def _first_attempt_faults(self, batch: _Batch) -> bool:
        """Apply batch-level faults and throttling before the first POST; False when the batch is gone."""
        state = self.state
        if batch.kind == "change":
            with state.lock:
                if state.faults.get("delivery_out_of_order"):
                    batch.notifications.reverse()
                if batch.notifications and _take_count(state.faults, "delivery_wrong_client_state"):
                    forged = copy.deepcopy(batch.notifications[0])
                    forged["clientState"] = f"forged-{new_guid()}"
                    batch.notifications.append(forged)
        throttle = self._throttle_status(batch.url)
        if throttle == "drop":
            for notification in batch.notifications:
                _append(state, "dropped", {"reason": "throttled:drop", "url": batch.url,
                                           "notification": notification})
            return False
        if throttle == "slow" and batch.first_attempted is None:
            batch.first_attempted = time.monotonic()
            self._reschedule(batch, setting(state, "delivery_slow_delay_s"))
            return False
        return True

    def _attempt(self, batch: _Batch) -> None:
        state = self.state
        if batch.attempt == 1 and batch.first_attempted is None and not self._first_attempt_faults(batch):
            return
        timeout = setting(state, "delivery_timeout_s" if batch.attempt == 1 else "delivery_retry_timeout_s")
        payload = {"value": batch.notifications}
        response, seconds, error = post_to_receiver(state, batch.url, data=json.dumps(payload).encode(),
                                                    content_type="application/json; charset=utf-8",
                                                    timeout=timeout)
        if error is None and seconds > timeout:
            error = "timeout"            # answered, but after the deadline: Graph had already given up
        ok = error is None and 200 <= response.status_code < 300
        self._account(batch.url, seconds, error == "timeout")
        outcome = "delivered" if ok else ("timeout" if error == "timeout" else "failed")
        record_attempt(state, kind=batch.kind, url=batch.url, attempt=batch.attempt, response=response,
                       seconds=seconds, error=error, outcome=outcome, payload=payload, data=batch.room)
        if ok:
            return
        if batch.attempt >= setting(state, "delivery_max_attempts"):
            self._drop(batch)
            return
        delay = setting(state, "delivery_backoff_base_s") * 2 ** (batch.attempt - 1)
        batch.attempt += 1
        self._reschedule(batch, delay)

    def _reschedule(self, batch: _Batch, delay: float) -> None:
        with self.cond:
            self._push(time.monotonic() + delay, batch)
            self.cond.notify_all()

    def _drop(self, batch: _Batch) -> None:
        state = self.state
        for notification in batch.notifications:
            _append(state, "dropped", {"reason": "retries exhausted", "url": batch.url,
                                       "notification": notification}, batch.room)
        if batch.kind != "change" or not setting(state, "delivery_send_missed_on_drop"):
            return
        with state.lock:
            for sub_id in dict.fromkeys(n["subscriptionId"] for n in batch.notifications):
                sub = state.subscriptions.get(sub_id)
                if sub is not None and live(sub, state.now()):
                    lifecycle_event(state, sub, "missed")

    def _remind(self) -> None:
        """Lifecycle events the sandbox raises by itself, checked twice a second (§2.4).

        * ``lifecycle_auto_reauthorization``: ``reauthorizationRequired`` ahead of expiry, no pause;
        * ``lifecycle_token_expiry``: ``reauthorizationRequired`` 15 min before the access token that created,
          PATCHed or reauthorized the subscription expires; at expiry delivery pauses until the next one;
        * ``remove_subscriptions_on_session_revoke``: ``subscriptionRemoved`` once the creator is disabled or
          their sessions are revoked (password reset) after the last authorization ([O] Outlook behaviour).
        """
        state = self.state
        try:
            with state.lock:
                now = state.now()
                authorizations = room(state).setdefault("authorizations", {})
                for sub in list(state.subscriptions.values()):
                    if not live(sub, now):
                        continue
                    auth = authorizations.get(sub.id)
                    if auth and setting(state, "remove_subscriptions_on_session_revoke"):
                        creator = state.users.get(sub.creator_id)
                        if creator is None or creator.disabled or (
                                creator.sessions_valid_from and creator.sessions_valid_from > auth["at"]):
                            lifecycle_event(state, sub, "subscriptionRemoved")
                            continue
                    if auth and setting(state, "lifecycle_token_expiry"):
                        if not auth["warned"] and now >= auth["token_expires_at"] - dt.timedelta(minutes=15):
                            auth["warned"] = True
                            lifecycle_event(state, sub, "reauthorizationRequired", pause=False)
                        if not auth["expired"] and now >= auth["token_expires_at"]:
                            auth["expired"] = sub.paused = True
                    if setting(state, "lifecycle_auto_reauthorization") and sub.lifecycle_notification_url:
                        if now >= plan_reminder(state, sub):
                            lifecycle_event(state, sub, "reauthorizationRequired", pause=False)
                            plan_reminder(state, sub, after_sending=True)
        except Exception as exc:  # keep the scheduler alive
            _append(state, "dropped", {"reason": f"internal error in lifecycle checks: {exc!r}", "url": None,
                                       "notification": None})

    # --- §2.3 slow/drop throttling ----------------------------------------------------------------------

    def _account(self, url: str, seconds: float, timed_out: bool) -> None:
        if not self.state.faults.get("delivery_throttling"):
            return
        with self.state.lock:
            samples = room(self.state)["throttle"].setdefault(url, [])
            samples.append((time.monotonic(), seconds, timed_out))

    def _throttle_status(self, url: str) -> str | None:
        state = self.state
        if not state.faults.get("delivery_throttling"):
            return None
        with state.lock:
            samples = room(state)["throttle"].get(url, [])
            horizon = time.monotonic() - setting(state, "delivery_throttle_window_s")
            samples[:] = [s for s in samples if s[0] >= horizon]
            if len(samples) < setting(state, "delivery_throttle_min_samples"):
                return None
            slow_limit = setting(state, "delivery_timeout_s")
            drop_limit = setting(state, "delivery_retry_timeout_s")
            over_drop = sum(1 for _, secs, _t in samples if secs >= drop_limit) / len(samples)
            over_slow = sum(1 for _, secs, timed_out in samples if secs > slow_limit or timed_out) / len(samples)
        if over_drop > 0.15:
            return "drop"
        if over_slow > 0.10:
            return "slow"
        return None


def note_authorization(state: SandboxState, sub: Subscription, token) -> None:
    """Create, PATCH and reauthorize (re)authorize ``sub`` with ``token`` (an AccessToken)."""
    with state.lock:
        room(state).setdefault("authorizations", {})[sub.id] = {
            "at": state.now(), "token_expires_at": token.expires_at, "warned": False, "expired": False}


def plan_reminder(state: SandboxState, sub: Subscription, after_sending: bool = False) -> dt.datetime:
    """When the next automatic ``reauthorizationRequired`` is due; planned anew when the expiry changes.

    Every half of the remaining time while more than 60 minutes remain, then every 15 minutes.
    """
    with state.lock:
        schedule = room(state).setdefault("reminders", {})   # sub id -> (due, the expiration it was for)
        due, planned_for = schedule.get(sub.id, (None, None))
        if due is None or planned_for != sub.expiration or after_sending:
            now = state.now()
            remaining = sub.expiration - now
            hour = dt.timedelta(minutes=60)
            if remaining > hour:
                due = now + remaining / 2
            else:
                due = now + dt.timedelta(minutes=15) if after_sending else now
            schedule[sub.id] = (due, sub.expiration)
        return due


_WORKERS: dict = {}
_WORKERS_LOCK = threading.Lock()


def worker_for(state: SandboxState) -> DeliveryWorker:
    with _WORKERS_LOCK:
        worker = _WORKERS.get(id(state))
        if worker is None or worker.state is not state:
            worker = _WORKERS[id(state)] = DeliveryWorker(state)
        return worker


def is_loopback_host(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")
