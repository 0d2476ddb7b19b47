"""Shopify's privacy requests: delete the kept payloads (and their delivery logs) they cover.

``customers/redact`` names the customer's orders; ``shop/redact`` (48 hours after a shop uninstalls)
covers everything of the store. The ledger holds no personal data, so it stays: it is what keeps
points from being awarded twice.
"""

from __future__ import annotations

from collections.abc import Iterable

from redis import Redis
from rq.job import Job

from workers.event_queue import EventQueue


def store_order_ids(connection: Redis, events: EventQueue, store: str) -> list[str]:
    """Every platform order id of a store that still has jobs kept."""
    prefix = events.order_jobs_key(store, "")
    return [key.decode().removeprefix(prefix) for key in connection.scan_iter(match=f"{prefix}*", count=500)]


def delete_kept_payloads(connection: Redis, events: EventQueue, store: str, order_ids: Iterable[str],
                         keep: str | None = None) -> int:
    """Delete the jobs (payloads included) and delivery logs of these orders; returns how many jobs."""
    deleted = 0
    for order_id in order_ids:
        for job_id in events.job_ids_for(store, order_id):
            if job_id == keep:
                continue
            for job in Job.fetch_many([job_id], connection=connection):
                if job is not None:
                    job.delete(remove_from_queue=True)
                    deleted += 1
            connection.delete(events.arrivals_key(job_id))
        connection.delete(events.order_jobs_key(store, order_id))
    return deleted
