"""The on-call story: a 422 from Loyalty.lt → `bridge failed` → fix → `bridge replay --failed` →
`bridge status`; plus check, send-test and reconcile. Real Redis, the real sandbox over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner, Result
from redis import Redis
from werkzeug.serving import make_server

from bridge.app import create_app
from bridge.cli import main
from bridge.sandbox import FailRule, SandboxConfig, SandboxServer
from tests.conftest import context_from_env, run_jobs, sandbox_stores_env
from tests.conftest import deliver_woo as deliver
from workers import context
from workers.context import WorkerContext


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxConfig(rate_limit_per_minute=0)) as server:
        yield server


@pytest.fixture
def env(tmp_path: Path, redis_url: str, sandbox: SandboxServer) -> dict[str, str]:
    return sandbox_stores_env(tmp_path / "stores.toml", redis_url, sandbox.url)


@pytest.fixture
def ctx(env: dict[str, str], redis_conn: Redis) -> Iterator[WorkerContext]:
    built = context_from_env(env, redis_conn)
    context.install(built)
    yield built
    context.install(None)


def cli(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def force_422(sandbox: SandboxServer, order_id: str = "WC-4210") -> None:
    config = sandbox.sandbox.config.model_copy(update={"fail_rules": [FailRule(
        path="transactions/create", match={"order_id": order_id}, status=422, code="VALIDATION_ERROR",
        message="Validation failed", errors={"user_email": ["The user email domain is blocked."]})]})
    sandbox.sandbox.configure(config)


@pytest.fixture
def worker_process(env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """A real `bridge worker` process, for commands that wait on workers."""
    process = subprocess.Popen([str(Path(sys.executable).parent / "bridge"), "worker"],
                               env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    yield process
    process.terminate()
    process.wait(20)


def test_forced_failure_then_failed_replay_and_status(env: dict[str, str], ctx: WorkerContext,
                                                      sandbox: SandboxServer,
                                                      worker_process: subprocess.Popen[bytes]) -> None:
    force_422(sandbox)
    deliver(ctx)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and cli(env, "failed").exit_code == 0:
        time.sleep(0.2)

    failed = cli(env, "failed")
    assert failed.exit_code == 2
    assert "paid-coffee-woo-4210" in failed.output
    assert "WC-4210" in failed.output
    assert "422 VALIDATION_ERROR: Validation failed (user_email: The user email domain is blocked.)" in failed.output
    rows = json.loads(cli(env, "failed", "--json", "--store", "coffee-woo", "--since", "1h").output)
    assert [(r["reference"], r["event"], r["attempts"]) for r in rows] == [("WC-4210", "paid", 1)]
    assert json.loads(cli(env, "failed", "--json", "--store", "coffee-shopify").output) == []

    status = cli(env, "status", "WC-4210")
    assert status.exit_code == 2
    assert "FAILED    paid: Loyalty.lt refused" in status.output

    dry = cli(env, "replay", "--failed", "--dry-run")
    assert "would replay" in dry.output and dry.exit_code == 0
    assert cli(env, "failed").exit_code == 2                      # a dry run changes nothing

    sandbox.sandbox.configure(sandbox.sandbox.config.model_copy(update={"fail_rules": []}))  # the cause is fixed
    replay = cli(env, "replay", "--failed", "--wait", "20")
    assert replay.exit_code == 0, replay.output
    assert "replayed: 1, already done: 0, still failing: 0" in replay.output

    story = json.loads(cli(env, "status", "WC-4210", "--json").output)[0]
    assert story["ledger"]["award"]["points"] == 278
    assert story["ledger"]["failed"] is None
    (job,) = story["jobs"]
    assert (job["status"], job["outcome"]["outcome"]) == ("finished", "awarded")
    assert [a["outcome"] for a in job["arrivals"]] == ["queued"]
    assert cli(env, "status", "WC-4210").exit_code == 0
    assert cli(env, "failed").output.strip() == "No failed jobs."

    again = cli(env, "replay", "WC-4210", "--store", "coffee-woo")
    assert "already awarded (278 points" in again.output
    balances = requests.get(sandbox.url + "/_sandbox/balances", timeout=5).json()["data"]
    assert balances == {"jonas.jonaitis@example.com": 278}


def test_status_of_an_unknown_order_exits_1(env: dict[str, str], ctx: WorkerContext) -> None:
    result = cli(env, "status", "WC-0000")
    assert result.exit_code == 1
    assert "nothing known" in result.output


def test_replay_needs_a_choice(env: dict[str, str], ctx: WorkerContext) -> None:
    assert cli(env, "replay").exit_code == 2
    assert cli(env, "replay", "WC-1").exit_code == 2                # --store is required


def test_replay_of_references_queues_their_kept_payloads(env: dict[str, str], ctx: WorkerContext,
                                                         sandbox: SandboxServer) -> None:
    force_422(sandbox)
    deliver(ctx)
    run_jobs(ctx)
    sandbox.sandbox.configure(sandbox.sandbox.config.model_copy(update={"fail_rules": []}))
    result = cli(env, "replay", "WC-4210", "WC-9999", "--store", "coffee-woo", "--event", "paid", "--wait", "0")
    assert "WC-9999: no kept payload" in result.output
    assert "not finished yet: 1" in result.output
    run_jobs(ctx)
    assert ctx.ledger.get("coffee-woo", "WC-4210").award is not None


def test_check_validates_each_store(env: dict[str, str], sandbox: SandboxServer,
                                   redis_config: Callable[..., None]) -> None:
    redis_config(save="3600 1")  # the test Redis persists nothing, which `check` rightly fails
    ok = cli(env, "check")
    assert ok.exit_code == 0, ok.output
    assert "coffee-woo" in ok.output and "partner 'Sandbox Partner'" in ok.output
    bad = cli({**env, "SHOPIFY_API_SECRET": "wrong-secret"}, "check")
    assert bad.exit_code == 1
    line = next(x for x in bad.output.splitlines() if "coffee-shopify" in x)
    assert "FAIL" in line and "401" in line and "wrong-secret" not in bad.output


def test_a_bad_stores_file_is_one_line(env: dict[str, str], tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text('[stores.x]\nplatform = "woocommerce"\n')
    result = CliRunner().invoke(main, ["check"], env={**env, "BRIDGE_STORES_FILE": str(broken)})
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and "store 'x'" in result.output
    assert "Traceback" not in result.output


def test_pool_metrics_without_a_shared_folder_are_refused(env: dict[str, str]) -> None:
    """The pool's processes would count jobs nobody can see: say so instead of serving half a page."""
    clean = {k: v for k, v in env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    result = CliRunner().invoke(main, ["worker", "--processes", "2", "--metrics-port", "9199", "--burst"],
                                env={**clean, "PROMETHEUS_MULTIPROC_DIR": ""})
    assert result.exit_code == 2
    assert "PROMETHEUS_MULTIPROC_DIR" in result.output


def test_send_test_goes_through_the_intake(env: dict[str, str], ctx: WorkerContext) -> None:
    app = create_app(ctx.settings, ctx.stores, ctx.connection)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        for store in ("coffee-woo", "coffee-shopify"):
            result = cli(env, "send-test", store, "--url", url)
            assert result.exit_code == 0, result.output
            assert ": 202 " in result.output and "bridge status" in result.output
        order_id = result.output.split("--order ")[1].split()[0]
        refund = cli(env, "send-test", "coffee-shopify", "--event", "refund", "--order", order_id, "--url", url)
        assert ": 202 " in refund.output
    finally:
        server.shutdown()
    run_jobs(ctx)
    awarded = ctx.ledger.awarded_between("coffee-shopify", 0, time.time() + 1)
    record = ctx.ledger.get("coffee-shopify", awarded[0])
    assert record.award is not None and record.points_taken_back > 0


def test_send_test_reports_an_unreachable_bridge(env: dict[str, str]) -> None:
    result = cli(env, "send-test", "coffee-woo", "--url", "http://127.0.0.1:9")
    assert result.exit_code == 1 and "cannot reach the bridge" in result.output


def test_reconcile_finds_and_fixes_differences(env: dict[str, str], ctx: WorkerContext,
                                               sandbox: SandboxServer) -> None:
    deliver(ctx)                                              # WC-4210: awarded normally
    run_jobs(ctx)
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert cli(env, "reconcile", "--store", "coffee-woo", "--since", today).exit_code == 0

    # Someone awarded an order outside the bridge (unknown here), and the bridge's record of another
    # award has no transaction there (missing there).
    state = sandbox.sandbox.state
    from bridge.sandbox.state import CreateTransaction
    partner = state.config.partners[0]
    state.create_purchase(partner, CreateTransaction(user_email="x@example.com", order_id="WC-7777", order_total=10,
                                                     meta_data={"store": "coffee-woo"}))
    from workers.ledger import Award
    ctx.ledger.record_award("coffee-woo", "WC-4211", Award(
        transaction_id=1, points=5, base=1, order_total=1, currency="EUR", order_id="4211",
        at="2026-11-22T00:00:00+00:00" if False else time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())))
    result = cli(env, "reconcile", "--store", "coffee-woo", "--since", today, "--json")
    assert result.exit_code == 2
    kinds = {(d["kind"], d["reference"]) for d in json.loads(result.output)}
    assert kinds == {("unknown here", "WC-7777"), ("missing there", "WC-4211")}

    fixed = cli(env, "reconcile", "--store", "coffee-woo", "--since", today, "--fix", "--json")
    notes = {d["reference"]: d["fixed"] for d in json.loads(fixed.output)}
    assert notes["WC-7777"].startswith("cannot fix")          # no kept payload: not from this bridge
    assert notes["WC-4211"].startswith("cannot fix")


def test_reconcile_counts_deductions_filed_under_their_own_reference(env: dict[str, str], ctx: WorkerContext,
                                                                     sandbox: SandboxServer) -> None:
    """Listed as the docs' example shows a refund (REFUND-…, metadata of its own): still this order's."""
    sandbox.sandbox.configure(sandbox.sandbox.config.model_copy(update={"deduction_listing": "docs"}))
    deliver(ctx)
    deliver(ctx, "partial_refund", "order.updated")
    run_jobs(ctx)
    assert ctx.ledger.get("coffee-woo", "WC-4210").points_taken_back == 48
    listed = requests.get(sandbox.url + "/_sandbox/state", timeout=5).json()["data"]["transactions"]
    assert [t["reference_number"][:7] for t in listed if t["type"] == "refund"] == ["REFUND-"]
    today = time.strftime("%Y-%m-%d", time.gmtime())
    result = cli(env, "reconcile", "--store", "coffee-woo", "--since", today)
    assert result.exit_code == 0, result.output


def test_resolve_records_or_releases_a_deduction_a_person_checked(env: dict[str, str], ctx: WorkerContext) -> None:
    from decimal import Decimal

    from workers.ledger import AppliedRefund, Award

    ctx.ledger.record_award("coffee-woo", "WC-4210", Award(
        transaction_id=1, points=278, base=Decimal("27.83"), order_total=Decimal("27.83"), currency="EUR",
        order_id="4210", at="2026-11-27T10:00:00+00:00", loyalty_card_id=501))
    draft = AppliedRefund(points=48, amount=Decimal("4.84"), at="2026-11-27T10:05:00+00:00", kind="refund")
    for refund_id in ("4301", "4302"):
        ctx.ledger.mark_in_flight("coffee-woo", "WC-4210", f"refund:{refund_id}", "job", deduction=draft)
    assert cli(env, "resolve", "WC-4210", "--store", "coffee-woo", "--refund", "4301").exit_code == 2  # which?
    landed = cli(env, "resolve", "WC-4210", "--store", "coffee-woo", "--refund", "4301", "--landed", "777")
    assert landed.exit_code == 0 and "recorded as landed (48 points, transaction 777)" in landed.output
    released = cli(env, "resolve", "WC-4210", "--store", "coffee-woo", "--refund", "4302", "--not-landed")
    assert released.exit_code == 0 and "bridge replay WC-4210 --store coffee-woo --event refund" in released.output
    record = ctx.ledger.get("coffee-woo", "WC-4210")
    assert record.refunds["4301"].transaction_id == 777 and record.inflight == {}
    again = cli(env, "resolve", "WC-4210", "--store", "coffee-woo", "--refund", "4302", "--not-landed")
    assert again.exit_code == 1 and "no call of refund 4302 is in flight" in again.output


def test_dismissing_a_failed_order_records_who_why_and_when(env: dict[str, str], ctx: WorkerContext,
                                                             sandbox: SandboxServer) -> None:
    """A person has dealt with a failed order otherwise: its job leaves `bridge failed`, and the
    ledger keeps who gave up on it, why and when, for `bridge status`."""
    force_422(sandbox)
    deliver(ctx)
    run_jobs(ctx)
    assert cli(env, "failed").exit_code == 2
    assert cli(env, "failed", "--dismiss", "WC-4210").exit_code == 2               # no reason: refused
    assert cli(env, "failed", "--reason", "why").exit_code == 2                   # a reason for nothing
    unknown = cli(env, "failed", "--dismiss", "WC-9999", "--reason", "x")
    assert unknown.exit_code == 1 and "WC-9999: no failed job in coffee-woo, coffee-shopify" in unknown.output

    ctx.events.opened("paid-coffee-woo-4210")  # as a job RQ failed by itself (a timeout) may still be
    reason = "Customer got the points at the till (ticket 8812)"
    dismissed = cli({**env, "LOGNAME": "ona"}, "failed", "--dismiss", "WC-4210", "--reason", reason)
    assert dismissed.exit_code == 0, dismissed.output
    assert "WC-4210 (coffee-woo): dismissed paid-coffee-woo-4210 for ona" in dismissed.output
    assert cli(env, "failed").output.strip() == "No failed jobs."
    assert ctx.connection.exists("rq:job:paid-coffee-woo-4210") == 0
    assert ctx.connection.zscore(ctx.events.open_jobs_key, "paid-coffee-woo-4210") is None  # no sweep brings it back

    status = cli(env, "status", "WC-4210")
    assert status.exit_code == 0                                                 # nothing needs anyone now
    assert "dismissed paid-coffee-woo-4210 by ona (" in status.output
    assert f"): {reason} (it had failed: Loyalty.lt refused: POST /en/shop/transactions/create -> 422" in status.output
    assert "FAILED" not in status.output
    story = json.loads(cli(env, "status", "WC-4210", "--json").output)[0]
    assert story["ledger"]["failed"] is None
    assert {k: story["ledger"]["dismissed"][k] for k in ("by", "reason", "jobs")} == {
        "by": "ona", "reason": reason, "jobs": ["paid-coffee-woo-4210"]}
    key = ctx.ledger.key("coffee-woo", "WC-4210")   # the JSON in chunks of 64 bytes (workers.ledger_format)
    size = sum(ctx.connection.hstrlen(key, f) for f in ctx.connection.hkeys(key) if f.split(b"+")[0] == b"dismissed")
    assert size == len(ctx.ledger.get("coffee-woo", "WC-4210").dismissed.model_dump_json())  # type: ignore[union-attr]
    again = cli(env, "failed", "--dismiss", "WC-4210", "--reason", reason, "--by", "jonas")
    assert again.exit_code == 1 and "no failed job" in again.output


def test_status_without_a_reference_lists_what_happened_lately(env: dict[str, str], ctx: WorkerContext,
                                                              sandbox: SandboxServer) -> None:
    """An operator's first question: newest first, a line per event, from what RQ keeps anyway."""
    deliver(ctx)                                                   # WC-4210 paid
    deliver(ctx, "pending", "order.created")                       # ignored at the door: no event
    run_jobs(ctx)
    deliver(ctx, "partial_refund", "order.updated")                # then a refund of it
    deliver(ctx, "cancelled_after_payment", "order.updated")       # never awarded: kept for the award
    run_jobs(ctx)
    result = cli(env, "status")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["WHEN", "STORE", "REFERENCE", "EVENT", "OUTCOME", "POINTS", "REASON"]
    assert "paid" in lines[-1] and "awarded" in lines[-1] and "278" in lines[-1]     # the oldest last
    events = json.loads(cli(env, "status", "--json", "--limit", "2").output)
    assert len(events) == 2
    everything = json.loads(cli(env, "status", "--json").output)
    assert [(e["reference"], e["event"], e["outcome"], e["points"]) for e in everything][-1] == (
        "WC-4210", "paid", "awarded", 278)
    assert {(e["reference"], e["event"], e["outcome"]) for e in everything} == {
        ("WC-4210", "paid", "awarded"), ("WC-4210", "refund", "deducted"), ("WC-4214", "cancel", "pending the award")}
    assert json.loads(cli(env, "status", "--json", "--store", "coffee-shopify").output) == []
    assert cli(env, "status", "--store", "nope").exit_code == 1


@pytest.mark.parametrize("stores_option", [True, False])
def test_commands_find_a_running_bridge_dev_whatever_the_stores_option(env: dict[str, str], ctx: WorkerContext,
                                                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      stores_option: bool) -> None:
    """No REDIS_URL here, but `bridge dev` runs in this folder: its Redis, with --stores or without."""
    from bridge.devenv import DATA_DIR, DevSession

    here = tmp_path / "project"
    (here / DATA_DIR).mkdir(parents=True)
    DevSession(pid=os.getpid(), redis_url=env["REDIS_URL"], web_url="http://127.0.0.1:9",
               stores_file=env["BRIDGE_STORES_FILE"]).save(here / DATA_DIR)
    monkeypatch.chdir(here)
    deliver(ctx)
    run_jobs(ctx)
    options = ["--stores", env["BRIDGE_STORES_FILE"]] if stores_option else []
    result = cli({**env, "REDIS_URL": None, "BRIDGE_STORES_FILE": None}, *options, "status", "WC-4210", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[0]["ledger"]["award"]["points"] > 0


def test_a_command_waits_for_a_rate_limit_slot_instead_of_failing(env: dict[str, str], ctx: WorkerContext,
                                                                  redis_conn: Redis) -> None:
    """A person's command has no scheduler to come back through: with the key's window full it waits
    for a slot, says so, and finishes (it once ended in a traceback about a `Wait`)."""
    deliver(ctx)
    run_jobs(ctx)
    # A window longer than the limiter's tick, so that a full one is refused rather than waited out.
    window = {**env, "BRIDGE_RATE_LIMIT_WINDOW": "4", "BRIDGE_RATE_LIMIT_MARGIN": "0"}
    full = context_from_env(window, redis_conn)
    store = full.stores["coffee-woo"]
    while full.rate_limiter.acquire(store) == 0:      # spend the whole window
        pass
    today = time.strftime("%Y-%m-%d", time.gmtime())
    result = CliRunner().invoke(main, ["reconcile", "--store", "coffee-woo", "--since", today], env=window,
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "rate limit of" in result.stderr and "waiting" in result.stderr
