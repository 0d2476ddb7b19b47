"""Shopify's privacy requests: delete the kept payloads (and the orders' journals) they cover.

``customers/redact`` names the customer's orders; ``shop/redact`` (48 hours after a shop uninstalls)
covers everything of the store. The ledger holds no personal data, so it stays: it is what keeps
points from being awarded twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from redis import Redis
from rq.job import Job

from config.stores import StoreConfig
from workers.context import WorkerContext
from workers.event_queue import EventQueue
from workers.events import Event
from workers.orders import mask_email
from workers.outcome import Outcome
from workers.platforms import ADAPTERS

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def mask_emails(text: str) -> str:
    """Every email address in ``text`` masked as in the logs (``j***@example.com``): for text that
    leaves the bridge (alerts), where an error's reason may quote the customer's address."""
    return _EMAIL.sub(lambda m: mask_email(m.group()), text)


def redact(ctx: WorkerContext, store: StoreConfig, ev: Event, data: dict[str, Any], job: Job | None) -> Outcome:
    """The redact job: delete the kept payloads a privacy request covers, then this job's own copy
    of the request (it names the customer)."""
    if ev.order_id == "shop":
        order_ids = store_order_ids(ctx.connection, ctx.events, store.id)
    else:
        order_ids = ADAPTERS[store.platform].orders_to_redact(data)
    own = job.id if job else ev.job_id
    deleted = delete_kept_payloads(ctx.connection, ctx.events, store.id, order_ids, keep=own)
    kept = ctx.events.payloads.get(own)
    if kept is not None:
        ctx.events.payloads.blank(kept)
    if job is not None and len(job.args) > 1:   # queued by an earlier version, with its payload
        job.args = (job.args[0], "{}")
        job.save()
    return Outcome(outcome="redacted", reason=f"deleted the kept payloads of {deleted} jobs ({ev.topic})")


def store_order_ids(connection: Redis, events: EventQueue, store: str) -> list[str]:
    """Every platform order id of a store that still has jobs kept."""
    found: set[str] = set()
    for prefix in (events.order_jobs_key(store, ""), events.old_order_jobs_key(store, "")):
        found.update(key.decode().removeprefix(prefix) for key in connection.scan_iter(match=f"{prefix}*", count=500))
    return sorted(found)


def delete_kept_payloads(connection: Redis, events: EventQueue, store: str, order_ids: Iterable[str],
                         keep: str | None = None) -> int:
    """Delete the kept payloads, the jobs and the journals of these orders; returns how many events'
    payloads (or jobs of earlier versions, which carried theirs) were deleted."""
    deleted = 0
    for order_id in order_ids:
        job_ids = [job_id for job_id in events.job_ids_for(store, order_id) if job_id != keep]
        gone = set()
        for job in Job.fetch_many(job_ids, connection=connection):
            if job is not None:
                job.delete(remove_from_queue=True)
                gone.add(job.id)
        for job_id in job_ids:
            if events.payloads.delete([job_id]):
                gone.add(job_id)
            connection.delete(events.arrivals_key(job_id))
        deleted += len(gone)
        if keep is None or keep not in events.job_ids_for(store, order_id):
            connection.delete(events.order_jobs_key(store, order_id), events.old_order_jobs_key(store, order_id))
    return deleted
