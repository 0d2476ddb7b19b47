"""The intake's metrics: what the internet sends never becomes a label value."""

from __future__ import annotations

from prometheus_client import REGISTRY

from workers.metrics import observe_webhook


def count(platform: str, store: str, outcome: str) -> float:
    labels = {"platform": platform, "store": store, "outcome": outcome}
    return REGISTRY.get_sample_value("bridge_webhooks_total", labels) or 0.0


def test_unknown_platforms_and_stores_are_counted_as_unknown() -> None:
    before = count("unknown", "unknown", "rejected_404"), count("woocommerce", "unknown", "rejected_404")
    observe_webhook({"platform": "../../etc", "store": "x' OR 1", "http_status": 404, "outcome": "error",
                     "duration_ms": 0.5})
    observe_webhook({"platform": "woocommerce", "store": "nope", "http_status": 404, "outcome": "error"})
    assert (count("unknown", "unknown", "rejected_404"), count("woocommerce", "unknown", "rejected_404")) == \
        (before[0] + 1, before[1] + 1)


def test_each_webhook_is_counted_and_timed_under_its_store() -> None:
    before = count("shopify", "coffee-shopify", "queued")
    timed = REGISTRY.get_sample_value("bridge_webhook_seconds_count", {"platform": "shopify"}) or 0.0
    for _ in range(3):
        observe_webhook({"platform": "shopify", "store": "coffee-shopify", "http_status": 202, "outcome": "queued",
                         "duration_ms": 1.5})
    assert count("shopify", "coffee-shopify", "queued") == before + 3
    assert REGISTRY.get_sample_value("bridge_webhook_seconds_count", {"platform": "shopify"}) == timed + 3
