"""The live probe's small parts: where it may run, what it says before real points, and what it keeps."""

from __future__ import annotations

from decimal import Decimal

import pytest
from redis import Redis

from tests.conftest import make_stores
from workers.probe.observed import ApiObservations, Observations
from workers.probe.steps import plan, where


@pytest.mark.parametrize(("url", "expected"), [
    ("https://staging-api.loyalty.lt", "staging"),
    ("https://staging-api.loyalty.lt/", "staging"),
    ("http://127.0.0.1:8787", "sandbox"),
    ("http://localhost:8787", "sandbox"),
    ("http://[::1]:8787", "sandbox"),
    ("https://api.loyalty.lt", "elsewhere"),
    ("https://staging-api.loyalty.lt.example.com", "elsewhere"),
    ("http://10.0.0.5:8787", "elsewhere"),
])
def test_where_the_probe_may_run_without_real_points(url: str, expected: str) -> None:
    assert where(url) == expected


def test_the_plan_says_what_it_creates_and_takes_back() -> None:
    text = plan(make_stores()["coffee-woo"], "https://api.loyalty.lt", "ona@example.com", Decimal("2.50"))
    assert "2.50 EUR for ona@example.com on https://api.loyalty.lt" in text
    assert "take back every point" in text and "loyalty-bridge probe" in text


def test_observations_are_one_small_document_per_api_url(redis_conn: Redis) -> None:
    observations = Observations(redis_conn)
    url = "https://staging-api.loyalty.lt"
    assert observations.get(url) is None
    seen = ApiObservations(api_url=url, at="2026-12-03T14:00:00+00:00", store="coffee-woo", passed=True,
                           deduct_body="sdk", refused_fields=["currency", "meta_data", "order_id", "reason",
                                                              "refund_amount", "refund_id", "user_id"],
                           deduction_filed="own reference", deduction_named_by=["description"], list_lag=2.1,
                           rate_limit=100)
    observations.save(seen)
    assert observations.get(url + "/") == seen
    key = Observations.key(url)
    assert key == "lb:api-observed:https://staging-api.loyalty.lt" and redis_conn.ttl(key) == -1  # no expiry
    assert int(redis_conn.memory_usage(key)) <= 500  # type: ignore[arg-type]  # the docstring's "about 400 bytes"
    assert "the full body was refused: currency, meta_data" in seen.summary()
