"""The alert kinds and the words a person reads for each: what, which store, what to run.

One function per kind, dispatched through :data:`TEXTS`, each given the condition's record and the
state being told. Every text goes through :func:`workers.privacy.mask_emails` on the way out; the
reasons quoted come from errors that never carry a header, a key or a secret.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from workers.alerts.records import AlertRecord

PREFIX = "loyalty-bridge"
# Failures a job_failed digest names one by one (the count says how many there were).
DIGEST_NAMED = 10


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


def _job_failed(r: AlertRecord, firing: bool) -> str:
    store = r.store
    failures: list[dict[str, Any]] = r.details.get("failures", [])
    if not firing:
        return f"store {store} has no failed events left ({r.count} failed since {r.first_seen:%Y-%m-%d %H:%M} UTC)."
    if r.count == 1 and failures:
        f = failures[0]
        return (f"{f.get('event')} of order {f.get('reference')} (store {store}) failed for good: {f.get('reason')}\n"
                f"Once the cause is fixed: bridge replay {f.get('reference')} --store {store}")
    first = failures[0] if failures else {}
    return (f"{r.count} events of store {store} failed for good (first: {first.get('reference')}: "
            f"{first.get('reason')})\nSee them: bridge failed --store {store}; once the cause is fixed: "
            f"bridge replay --failed --store {store}")


def _credentials(r: AlertRecord, firing: bool) -> str:
    if not firing:
        return f"Loyalty.lt accepts store {r.store}'s API key again."
    return (f"Loyalty.lt answers {r.details.get('status')} to store {r.store}'s API key: no points are awarded "
            f"or taken back for it.\nCheck the key pair in the stores file, then: bridge check")


def _refused(r: AlertRecord, firing: bool) -> str:
    call = r.details.get("endpoint", r.key)
    if not firing:
        return f"Loyalty.lt accepts store {r.store}'s {call} calls again."
    hint = (" The deduct body is inferred (README, \"The deduct-points endpoint\"): compare it with what "
            "Loyalty.lt expects." if "deduct" in call else "")
    return (f"Loyalty.lt refused {r.details.get('in_row')} {call} calls of store {r.store} in a row "
            f"({r.details.get('status')}).{hint}\nSee why: bridge failed --store {r.store}")


def _subscription(r: AlertRecord, firing: bool) -> str:
    if not firing:
        return f"store {r.store}'s webhook subscriptions are all active again."
    parts = []
    for topic in r.details.get("topics", []):
        fixed = f" ({topic['action']} it)" if topic.get("action") else " (not fixed)"
        parts.append(f"{topic['topic']} {', '.join(topic['problems'])}{fixed}")
    return (f"Store {r.store}'s webhook subscriptions need attention: {'; '.join(parts)}.\n"
            f"Check: bridge connect {r.store} --check (add --fix to mend them)")


def _unreachable(r: AlertRecord, firing: bool) -> str:
    if not firing:
        return f"the sync reads store {r.store}'s shop again."
    return (f"The sync could not read store {r.store}'s shop for {r.details.get('runs')} runs in a row "
            f"({r.details.get('outcome')}: {r.details.get('error')}).\nOrders missed meanwhile are read when it "
            f"answers again. Check: bridge check")


def _missing(r: AlertRecord, firing: bool) -> str:
    if not firing:
        return f"the last sync of store {r.store} found no order that its webhooks had not brought."
    return (f"The sync of store {r.store} found {r.details.get('events_queued')} events no webhook brought "
            f"(queued now): deliveries may fail while the subscriptions look active.\n"
            f"Check: bridge connect {r.store} --check")


def _workers_down(r: AlertRecord, firing: bool) -> str:
    if not firing:
        return "a bridge worker is alive again; waiting events are being processed."
    return (f"No bridge worker has been alive for {_duration(r.details.get('down_for', 0))} and "
            f"{r.details.get('waiting')} events are waiting: no points are awarded.\n"
            f"Start one: bridge worker (the Procfile's worker process)")


def _backlog(r: AlertRecord, firing: bool) -> str:
    if not firing:
        return "the waiting events are being processed in time again."
    return (f"The oldest waiting event has waited {_duration(r.details.get('oldest_age', 0))} "
            f"({r.details.get('waiting')} waiting): the workers are stuck or too few.\n"
            f"See: bridge status; more workers: bridge worker --processes N")


def _redis(r: AlertRecord, firing: bool) -> str:
    if not firing:
        return "Redis is safe for the bridge again."
    return (f"Redis is unsafe for the bridge: {'; '.join(r.details.get('problems', []))}.\n"
            "See all of it: bridge check")


def _test(r: AlertRecord, firing: bool) -> str:
    return "A test alert from bridge alerts test: this receiver gets loyalty-bridge's alerts."


TEXTS: dict[str, Callable[[AlertRecord, bool], str]] = {
    "job_failed": _job_failed, "credentials_rejected": _credentials, "calls_refused": _refused,
    "shop_subscription": _subscription, "shop_unreachable": _unreachable, "webhooks_missing": _missing,
    "workers_down": _workers_down, "backlog_stale": _backlog, "redis": _redis, "test": _test,
}


def text_for(record: AlertRecord, firing: bool) -> str:
    """The one or two lines a person reads, prefixed so a shared channel shows where they come from."""
    words = TEXTS[record.alert](record, firing)
    return f"[{PREFIX}] {'' if firing else 'Resolved: '}{words}"
