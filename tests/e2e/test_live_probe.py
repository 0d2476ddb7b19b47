"""`bridge check <store> --live` over real HTTP against the sandbox in each of its variants (the full
deduct body refused, deductions under their own reference, a slow list), and the workers' real jobs
following what it saw: the deduct body the API took, and where recovery looks for a lost deduction."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner, Result
from redis import Redis

from bridge.cli import main
from bridge.embedded_redis import free_port
from bridge.sandbox import FailRule, SandboxConfig, SandboxServer
from tests.conftest import context_from_env, run_jobs, sandbox_stores_env
from tests.conftest import deliver_woo as deliver
from workers import context
from workers.context import WorkerContext
from workers.probe.observed import Observations

pytestmark = pytest.mark.e2e
DEMO = "demo1@loyalty.lt"
# Jobs run right after a probe: a limit that neither paces them beyond run_jobs' horizon nor refuses them.
FAST = 600
STEPS = ["credentials", "award", "award again", "award listed", "take back", "deduction listed", "balance",
         "rate limit"]


def stores_env(tmp_path: Path, redis_url: str, sandbox_url: str, per_minute: int = 60) -> dict[str, str]:
    env = sandbox_stores_env(tmp_path / "stores.toml", redis_url, sandbox_url, f"rate_limit_per_minute = {per_minute}")
    return {**env, "BRIDGE_API_READ_TIMEOUT": "0.5"}


def cli(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def probe(env: dict[str, str]) -> dict[str, Any]:
    """`bridge check coffee-woo --live --json`, which must pass."""
    result = cli(env, "check", "coffee-woo", "--live", "--json")
    report = json.loads(result.output)
    assert result.exit_code == 0, result.output
    assert [s["name"] for s in report["steps"]] == STEPS and all(s["ok"] for s in report["steps"]), report
    return report


def differs(report: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["differs"] for s in report["steps"] if s["differs"]}


@pytest.fixture
def installed() -> Iterator[list[WorkerContext]]:
    """Contexts a test installs for its jobs; uninstalled after it."""
    contexts: list[WorkerContext] = []
    yield contexts
    context.install(None)


VARIANTS = {
    "the bridge's listing": ({}, set()),
    "strict deduct": ({"strict_deduct": True}, {"take back", "deduction listed"}),
    "deductions under their own reference": ({"deduction_listing": "docs"}, {"deduction listed"}),
    "slow list": ({"list_lag_seconds": 1.0}, {"award listed"}),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_the_probe_passes_in_each_variant_says_what_differs_and_leaves_the_card_as_it_was(
        variant: str, tmp_path: Path, redis_url: str, redis_conn: Redis, redis_config: Callable[..., None]) -> None:
    config, differing = VARIANTS[variant]
    redis_config(save="3600 1")  # the test Redis persists nothing, which `check` rightly fails
    with SandboxServer(SandboxConfig(**config, rate_limit_per_minute=FAST)) as sandbox:
        env = stores_env(tmp_path, redis_url, sandbox.url, FAST)
        report = probe(env)
        assert set(differs(report)) == differing
        state = requests.get(sandbox.url + "/_sandbox/state", timeout=5).json()["data"]
        shown = cli(env, "check")  # plain check shows what the workers now follow
        today = time.strftime("%Y-%m-%d", time.gmtime())
        reconciled = cli(env, "reconcile", "--store", "coffee-woo", "--since", today)

    assert [u["balance"] for u in state["users"] if u["email"] == DEMO] == [0]  # where it started
    made = [tx for tx in state["transactions"] if report["reference"] in (tx["description"] or "")
            or tx["reference_number"] == report["reference"]]
    assert sorted(tx["type"] for tx in made) == ["purchase", "refund"]
    assert all("loyalty-bridge probe" in tx["description"] for tx in made)  # the partner's staff can tell
    purchase = next(tx for tx in made if tx["type"] == "purchase")
    assert purchase["metadata"]["note"] == "loyalty-bridge probe"

    kept = Observations(redis_conn).get(sandbox.url)
    assert kept is not None and kept.passed and kept == context_from_env(env, redis_conn).observed(
        context_from_env(env, redis_conn).stores["coffee-woo"])
    if variant == "strict deduct":
        assert kept.deduct_body == "sdk"
        assert {"order_id", "refund_id", "meta_data"} <= set(kept.refused_fields)
        assert "order_id" in differs(report)["take back"]
        assert kept.deduction_filed == "no reference" and kept.deduction_named_by == ["description"]
    elif variant == "deductions under their own reference":
        assert (kept.deduct_body, kept.deduction_filed, kept.deduction_named_by) == ("full", "own reference",
                                                                                     ["description"])
    else:
        assert (kept.deduct_body, kept.deduction_filed) == ("full", "order reference")
        assert kept.deduction_named_by == ["metadata", "description"]
    if variant == "slow list":
        assert kept.list_lag is not None and kept.list_lag >= 1.0
    assert shown.exit_code == 0 and f"deduct body: {kept.deduct_body}" in shown.output
    # The probe's order is in the ledger like any order's, so the ledger and Loyalty.lt still agree.
    assert reconciled.exit_code == 0, reconciled.output


def test_a_refused_full_body_is_what_a_real_refund_job_then_avoids(tmp_path: Path, redis_url: str, redis_conn: Redis,
                                                                  installed: list[WorkerContext]) -> None:
    with SandboxServer(SandboxConfig(strict_deduct=True, rate_limit_per_minute=FAST)) as sandbox:
        env = stores_env(tmp_path, redis_url, sandbox.url, FAST)
        ctx = context_from_env(env, redis_conn)
        context.install(ctx)
        deliver(ctx, "processing", "order.created")
        deliver(ctx, "partial_refund", "order.updated")
        run_jobs(ctx)
        # Before any probe: the full body, refused, and the job fails with the API's reason.
        failed = cli(env, "failed", "--json")
        assert failed.exit_code == 2 and "order id field is prohibited" in failed.output
        assert ctx.ledger.get("coffee-woo", "WC-4210").refunds == {}

        probe(env)
        assert cli(env, "replay", "--failed", "--wait", "0").exit_code == 0
        run_jobs(ctx)
        record = ctx.ledger.get("coffee-woo", "WC-4210")
        assert record.refunds["4301"].points == 48 and record.refunds["4301"].source == "created"
        refunds = [tx for tx in sandbox.sandbox.state.snapshot()["transactions"]
                   if tx["description"] == "Refund 4301 of WC-4210"]
        assert [tx["points"] for tx in refunds] == [-48]


@pytest.mark.parametrize("listing", ["bridge", "docs"])
def test_recovery_looks_for_a_lost_deduction_where_the_probe_saw_it(listing: str, tmp_path: Path, redis_url: str,
                                                                    redis_conn: Redis,
                                                                    installed: list[WorkerContext]) -> None:
    with SandboxServer(SandboxConfig(deduction_listing=listing, rate_limit_per_minute=FAST)) as sandbox:
        env = stores_env(tmp_path, redis_url, sandbox.url, FAST)
        probe(env)
        ctx = context_from_env(env, redis_conn)
        context.install(ctx)
        deliver(ctx, "processing", "order.created")
        run_jobs(ctx)
        # The deduction lands, but its answer comes only after the worker gave up (read timeout 0.5 s).
        sandbox.sandbox.configure(sandbox.sandbox.config.model_copy(
            update={"slow_commit_rate": 1.0, "slow_commit_seconds": 0, "timeout_seconds": 1.0}))
        deliver(ctx, "partial_refund", "order.updated")
        run_jobs(ctx)
        asked = [r["query"] for r in sandbox.sandbox.state.recent_requests()
                 if r["endpoint"] == "GET /{locale}/shop/transactions" and r["query"].get("type") == "refund"
                 and "PROBE-" not in r["query"].get("reference_number", "")]
        deductions = [tx for tx in sandbox.sandbox.state.snapshot()["transactions"]
                      if tx["description"] == "Refund 4301 of WC-4210"]

    record = ctx.ledger.get("coffee-woo", "WC-4210")
    assert record.refunds["4301"].source == "recovered" and len(deductions) == 1  # found, not made twice
    by_reference = [q for q in asked if q.get("reference_number") == "WC-4210"]
    on_the_card = [q for q in asked if "loyalty_card_id" in q]
    if listing == "bridge":  # the probe saw deductions under the order's reference: asked there, found there
        assert by_reference and not on_the_card
    else:                    # under their own reference: straight to the card's deductions
        assert on_the_card and not by_reference


def test_bridge_sandbox_selects_its_variants_from_the_environment(tmp_path: Path, redis_url: str) -> None:
    port = free_port()
    process = subprocess.Popen([str(Path(sys.executable).parent / "bridge"), "sandbox", "--port", str(port)],
                               env={**os.environ, "BRIDGE_SANDBOX_STRICT_DEDUCT": "1",
                                    "BRIDGE_SANDBOX_DEDUCTION_LISTING": "docs"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                config = requests.get(url + "/_sandbox/config", timeout=1).json()["data"]
                break
            except requests.RequestException:
                time.sleep(0.1)
        assert (config["strict_deduct"], config["deduction_listing"]) == (True, "docs")
        report = probe(stores_env(tmp_path, redis_url, url))
        assert set(differs(report)) == {"take back", "deduction listed"}
        assert "its own reference REFUND-" in report["steps"][STEPS.index("deduction listed")]["saw"]
    finally:
        process.terminate()
        process.wait(10)


def test_the_probe_refuses_an_api_with_real_points(tmp_path: Path, redis_url: str) -> None:
    env = stores_env(tmp_path, redis_url, "https://api.loyalty.lt")
    refused = cli(env, "check", "coffee-woo", "--live")
    assert refused.exit_code == 1
    assert "where points are real" in refused.output and "--real-points" in refused.output
    assert "https://staging-api.loyalty.lt" in refused.output
    assert cli(env, "check", "--live").exit_code == 2  # which store?


def test_a_deduction_refused_in_both_bodies_fails_the_probe_and_says_what_the_card_keeps(
        tmp_path: Path, redis_url: str, redis_conn: Redis) -> None:
    refuse = FailRule(path="transactions/deduct-points", status=422, code="VALIDATION_ERROR",
                      message="The given data was invalid.", errors={"points": ["The points may not be deducted."]})
    with SandboxServer(SandboxConfig(fail_rules=[refuse])) as sandbox:
        env = stores_env(tmp_path, redis_url, sandbox.url)
        result = cli(env, "check", "coffee-woo", "--live")
        balances = sandbox.sandbox.state.balances(DEMO)
    assert result.exit_code == 1
    assert [line.split()[1:3] for line in result.output.splitlines() if line.startswith("  FAIL")] == [["take", "back"]]
    assert "points: The points may not be deducted." in result.output and "SDKs' body" in result.output
    assert "The card still holds 10 probe points" in result.output and balances["balance"] == 10
    kept = Observations(redis_conn).get(sandbox.url)
    assert kept is not None and not kept.passed and kept.deduct_body == "full"  # nothing better was found


def test_answers_without_rate_limit_headers_do_not_match(tmp_path: Path, redis_url: str) -> None:
    with SandboxServer(SandboxConfig(rate_limit_per_minute=0)) as sandbox:
        result = cli(stores_env(tmp_path, redis_url, sandbox.url), "check", "coffee-woo", "--live", "--json")
    report = json.loads(result.output)
    assert result.exit_code == 1 and not report["passed"]
    assert [(s["name"], s["saw"]) for s in report["steps"] if not s["ok"]] == [
        ("rate limit", "no X-RateLimit-Limit on the answers")]
