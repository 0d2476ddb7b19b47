"""The ``bridge`` command: one small function per command, the work done by the modules they call."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import click

from bridge.alert_commands import alerts
from bridge.cli_state import CliState
from bridge.shop_commands import backfill, connect as connect_command
from config.log_format import setup_logging
from config.settings import Settings
from config.stores import ConfigError, Stores
from workers.connection import UNAVAILABLE, InvalidRedisUrl, unavailable_message

if TYPE_CHECKING:
    from workers.context import WorkerContext


class RedisUnavailable(click.ClickException):
    """Redis cannot be used (down, unknown host, refused credentials, a malformed URL): exit code 2."""

    exit_code = 2


class BridgeGroup(click.Group):
    """The ``bridge`` group. Every command reaches Redis through :attr:`CliState.connection`; when Redis
    cannot be used, whichever command it is ends here with one line naming the masked URL and the error."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except InvalidRedisUrl as exc:
            raise RedisUnavailable(str(exc)) from None
        except UNAVAILABLE as exc:
            state = ctx.find_object(CliState)
            url = state.settings.redis_url if state is not None else None
            raise RedisUnavailable(unavailable_message(url, exc)) from None


@click.group(cls=BridgeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--stores", "stores_file", type=click.Path(path_type=Path), default=None,
              help="Stores file (default: $BRIDGE_STORES_FILE or config/stores.toml).")
@click.pass_context
def main(ctx: click.Context, stores_file: Path | None) -> None:
    """loyalty-bridge: shop webhooks in, Loyalty.lt points out."""
    ctx.obj = CliState(stores_file)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.pass_obj
def web(state: CliState, host: str, port: int) -> None:
    """Serve the intake with the development server (production: the Procfile's gunicorn)."""
    from bridge.app import ALERTS, create_app

    setup_logging(state.settings.log_level)
    try:
        app = create_app(state.settings, state.stores, state.connection)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    app.extensions[ALERTS].start()
    app.run(host=host, port=port, threaded=True)


@main.command()
@click.option("--burst", is_flag=True, help="Stop when the queue is empty.")
@click.option("--processes", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Worker processes (RQ's worker pool).")
@click.option("--fork", is_flag=True, help="Run each job in its own process (RQ's forking worker).")
@click.option("--metrics-port", type=int, envvar="BRIDGE_WORKER_METRICS_PORT",
              help="Serve the jobs' Prometheus metrics on this port (with --processes or --fork, set "
                   "PROMETHEUS_MULTIPROC_DIR to an empty folder too).")
@click.pass_obj
def worker(state: CliState, burst: bool, processes: int, fork: bool, metrics_port: int | None) -> None:
    """Process queued events: award points, take them back."""
    if metrics_port and (processes > 1 or fork) and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Jobs then run in other processes; their counts would silently be missing from the page.
        raise click.UsageError("--metrics-port with --processes or --fork needs PROMETHEUS_MULTIPROC_DIR "
                               "(an empty folder the worker processes share their metrics through)")
    from workers.context import WorkerContext
    from workers.worker import run_worker

    setup_logging(state.settings.log_level)
    ctx = WorkerContext.build(state.settings, state.stores, state.connection)
    run_worker(ctx, burst=burst, processes=processes, fork=fork, logging_level=state.settings.log_level,
               metrics_port=metrics_port)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int, envvar="BRIDGE_DEV_PORT")
@click.option("--sandbox-port", default=8787, show_default=True, type=int, envvar="BRIDGE_SANDBOX_PORT")
@click.option("--sandbox", "force_sandbox", is_flag=True,
              help="Send your stores' calls to the local sandbox instead of Loyalty.lt.")
@click.option("--shops-port", default=8788, show_default=True, type=int, envvar="BRIDGE_SHOPS_PORT",
              help="The emulated WooCommerce and Shopify shops of the demo stores.")
@click.option("--fresh", is_flag=True,
              help="Start from nothing: forget the Redis data and the sandbox's data kept in .bridge/.")
@click.pass_obj
def dev(state: CliState, host: str, port: int, sandbox_port: int, force_sandbox: bool, shops_port: int,
        fresh: bool) -> None:
    """Everything on this machine: Redis, the sandbox, the web app and a worker. Ctrl-C stops it all.

    Queued jobs, the ledger and the sandbox's data are kept in .bridge/ from one run to the next.
    """
    from bridge.devenv import run_dev
    from bridge.embedded_redis import EmbeddedRedisError
    from bridge.sandbox.persistence import SavedStateError

    settings = Settings()
    if state.stores_file is not None:
        settings = settings.model_copy(update={"stores_file": state.stores_file})
    setup_logging(settings.log_level)
    try:
        run_dev(settings, host=host, port=port, sandbox_port=sandbox_port, force_sandbox=force_sandbox,
                fresh=fresh, echo=lambda line: click.secho(line, fg="green", err=True), shops_port=shops_port)
    except (ConfigError, EmbeddedRedisError, SavedStateError, OSError) as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8787, show_default=True, type=int)
@click.option("--latency-ms", default=0, show_default=True, type=int, help="Added to every answer.")
@click.option("--error-rate", default=0.0, show_default=True, type=float, help="Share of 500 answers.")
@click.option("--timeout-rate", default=0.0, show_default=True, type=float, help="Share of hung requests.")
@click.option("--rate-limit", default=60, show_default=True, type=int, help="Requests per minute per key (0: off).")
@click.option("--api-key", default="lty_sandbox_demo", show_default=True)
@click.option("--api-secret", default="sandbox-secret", show_default=True)
@click.option("--strict-deduct", is_flag=True, envvar="BRIDGE_SANDBOX_STRICT_DEDUCT",
              help="Refuse deduct-points fields other than those Loyalty.lt's own clients sent "
                   "(422, Laravel-style errors).")
@click.option("--deduction-listing", type=click.Choice(["bridge", "docs"]), default="bridge", show_default=True,
              envvar="BRIDGE_SANDBOX_DEDUCTION_LISTING",
              help="List a deduction under the order's reference with the metadata sent (bridge), or under its own "
                   "reference (REFUND-…) with metadata of its own, as the docs' example (docs).")
@click.option("--list-lag", default=0.0, show_default=True, type=click.FloatRange(min=0),
              envvar="BRIDGE_SANDBOX_LIST_LAG",
              help="A slow list: changes show in the transaction list only this many seconds later.")
def sandbox(host: str, port: int, latency_ms: int, error_rate: float, timeout_rate: float, rate_limit: int,
            api_key: str, api_secret: str, strict_deduct: bool, deduction_listing: Literal["bridge", "docs"],
            list_lag: float) -> None:
    """A local Loyalty.lt Shop API, for trying the bridge without an account (see /_sandbox/state)."""
    from bridge.sandbox import PartnerCredentials, SandboxConfig, serve_forever

    config = SandboxConfig(partners=[PartnerCredentials(api_key=api_key, api_secret=api_secret, partner_id=1,
                                                        name="Sandbox Partner")],
                           latency_ms=latency_ms, error_rate=error_rate, timeout_rate=timeout_rate,
                           rate_limit_per_minute=rate_limit, strict_deduct=strict_deduct,
                           deduction_listing=deduction_listing, list_lag_seconds=list_lag)
    serve_forever(config, host, port, announce=lambda url: click.echo(f"Loyalty.lt sandbox on {url}", err=True))


@main.command("send-test")
@click.argument("store_id")
@click.option("--event", type=click.Choice(["paid", "refund"]), default="paid", show_default=True)
@click.option("--order", "order_id", type=int, help="Order id (default: a new one; give it for a refund).")
@click.option("--email", default="send-test@example.com", show_default=True, help="The sample customer.")
@click.option("--url", help="The bridge's address (default: the running `bridge dev`, else http://127.0.0.1:8000).")
@click.option("--lost", is_flag=True, help="Create the paid order in the store's emulated shop without delivering "
                                           "its webhook: the periodic sync finds it (bridge dev).")
@click.pass_obj
def send_test(state: CliState, store_id: str, event: str, order_id: int | None, email: str, url: str | None,
              lost: bool) -> None:
    """Sign a realistic sample webhook with the store's secret and send it through the whole chain."""
    import requests

    from bridge.samples import sample_webhook
    from workers.platforms import ADAPTERS

    _pick_stores(state, store_id)
    store = state.stores[store_id]
    if event == "refund" and order_id is None:
        raise click.UsageError("a refund needs --order (the id a paid send-test printed)")
    if lost and event != "paid":
        raise click.UsageError("--lost creates a new paid order (no --event refund)")
    base = url or (state.dev_session.web_url if state.dev_session else "http://127.0.0.1:8000")
    sample = sample_webhook(store, event, order_id, email)
    if lost:
        from bridge.shop_commands import send_lost

        send_lost(store, sample.body)
        _, reference = ADAPTERS[store.platform].order_reference(json.loads(sample.body), store)
        click.echo(f"Created order {sample.order_id} in {store.id}'s emulated shop without delivering its webhook; "
                   "the shop sync finds it at its next run (bridge dev: every 30 s).")
        click.echo(f"Follow it:  bridge status {reference} --store {store.id}")
        return
    try:
        resp = requests.post(base.rstrip("/") + sample.path, data=sample.body, headers=sample.headers, timeout=10)
    except requests.RequestException as exc:
        raise click.ClickException(f"cannot reach the bridge at {base}: {type(exc).__name__}") from None
    click.echo(f"Sent {sample.description} to {base}{sample.path}: {resp.status_code} {resp.text.strip()}")
    if resp.status_code >= 300:
        sys.exit(1)
    if event == "paid":
        payload = json.loads(sample.body)
        _, reference = ADAPTERS[store.platform].order_reference(payload, store)
        click.echo(f"Follow it:  bridge status {reference} --store {store.id}")
        click.echo(f"Refund it:  bridge send-test {store.id} --event refund --order {sample.order_id}")


@main.command()
@click.argument("store_id", required=False)
@click.option("--live", is_flag=True,
              help="Prove every call the workers make on the store's Loyalty.lt API (staging or the local sandbox): "
                   "a probe order awarded, sent again, taken back, found in the list, the balance checked.")
@click.option("--email", default="demo1@loyalty.lt", show_default=True,
              help="With --live: the customer of the probe order (staging's demo card 900-001-001).")
@click.option("--amount", default="1.00", show_default=True, type=click.FloatRange(min=0.01),
              help="With --live: the probe order's total in EUR (enough for the card's rules to give a point).")
@click.option("--real-points", is_flag=True,
              help="With --live: run on an API other than staging or a local sandbox (real points, all taken back).")
@click.option("--json", "as_json", is_flag=True, help="With --live: the steps as JSON.")
@click.pass_obj
def check(state: CliState, store_id: str | None, live: bool, email: str, amount: float, real_points: bool,
          as_json: bool) -> None:
    """Validate the stores file, each store's Loyalty.lt credentials and shop, and Redis (eviction policy,
    persistence, memory); exit 1 if any is wrong.

    With STORE_ID --live: the live probe of that store's API (exit 0 only when every step matched).
    """
    from decimal import Decimal

    from workers.context import client_for
    from workers.loyalty import LoyaltyError

    if live:
        from bridge.live_check import run_live

        if store_id is None:
            raise click.UsageError("--live probes one store: bridge check <store> --live")
        _pick_stores(state, store_id)
        run_live(_context(state), state.stores[store_id], email=email,
                 amount=Decimal(str(amount)).quantize(Decimal("0.01")), real_points=real_points, as_json=as_json)
        return
    from config.stores import Stores

    stores = state.stores
    if not stores:
        raise click.ClickException(f"no stores: {stores.source}")
    stores = Stores({sid: stores[sid] for sid in _pick_stores(state, store_id)}, source=stores.source)
    click.echo(f"Stores from {stores.source}")
    bad = 0
    for store in stores.values():
        client = client_for(state.settings, store)
        try:
            info = client.validate_credentials()
        except LoyaltyError as exc:
            bad += 1
            click.echo(f"  {store.id:<20} FAIL  {exc}")
            continue
        partner = info.partner.name if info.partner else "?"
        if not info.valid:
            bad += 1
            click.echo(f"  {store.id:<20} FAIL  Loyalty.lt says the key pair is not valid")
            continue
        click.echo(f"  {store.id:<20} ok    {store.platform}, partner {partner!r} ({info.environment or '?'})")
        if state.settings.redis_url:
            from bridge.live_check import observed_line

            click.echo(f"  {'':<20}       {observed_line(state.settings, state.connection, store)}")
    from bridge.shop_commands import check_shops

    bad += check_shops(state, stores)
    bad += _check_redis(state, state.stores)  # Redis is shared: the rate of orders is all stores'
    if bad:
        sys.exit(1)


def _check_redis(state: CliState, stores: Stores) -> int:
    """``bridge check``'s Redis lines: eviction policy, persistence, memory, replicas; the problems, each
    with its fix."""
    from workers.connection import masked_url
    from workers.redis_checks import inspect_server, replicas

    if not state.settings.redis_url:
        click.echo("Redis: REDIS_URL is not set, not checked")
        return 0
    report = inspect_server(state.connection, stores, min_replicas=state.settings.redis_min_replicas)
    click.echo(f"Redis at {masked_url(state.settings.redis_url)}")
    mark = {True: "FAIL", False: "ok  ", None: "?   "}
    persistence = f"{report.persistence}; a crash loses {report.crash_loses}"
    for name, bad, line in (("eviction", report.evicting, f"maxmemory-policy {report.policy or 'unknown'}"),
                            ("persistence", None if report.persists is None else not report.persists, persistence),
                            ("memory", report.memory_tight, report.memory),
                            ("replicas", None if report.replicas.role is None else report.replicas_short,
                             replicas.summary(report.replicas))):
        click.echo(f"  {name:<20} {mark[bad]}  {line}")
    for problem in report.problems:
        click.echo(f"  FAIL  {problem}")
    return len(report.problems)


@main.command()
@click.option("--store", required=True, help="The store to reconcile.")
@click.option("--since", required=True, type=click.DateTime(["%Y-%m-%d"]), help="First day (YYYY-MM-DD, UTC).")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), help="Last day (default: today).")
@click.option("--fix", "apply_fix", is_flag=True, help="Enqueue what is missing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def reconcile(state: CliState, store: str, since: Any, until: Any, apply_fix: bool, as_json: bool) -> None:
    """Compare Loyalty.lt's transactions with the ledger. Exit 2 when anything differs."""
    from bridge.tables import table
    from workers.loyalty import LoyaltyError
    from workers.reconcile import fix, reconcile as compare

    _pick_stores(state, store)
    ctx = _context(state)
    config = state.stores[store]
    try:
        differences = compare(ctx, config, since.date(), until.date() if until else None)
        if apply_fix:
            for difference in differences:
                difference.fixed = fix(ctx, config, difference)
    except LoyaltyError as exc:
        raise click.ClickException(f"Loyalty.lt: {exc}") from None
    if as_json:
        _echo_json([d.model_dump() for d in differences])
    elif differences:
        columns = ["kind", "reference", "points_here", "points_there", "detail"] + (["fixed"] if apply_fix else [])
        click.echo(table([d.model_dump() for d in differences], columns))
    else:
        click.echo(f"{store}: the ledger and Loyalty.lt agree.")
    if differences:
        sys.exit(2)


# The shops' own APIs (bridge/shop_commands.py).
main.add_command(connect_command)
main.add_command(backfill)

# Alerts (bridge/alert_commands.py).
main.add_command(alerts)


def run() -> None:
    """Entry point that turns configuration errors into one line and exit code 1."""
    try:
        main()
    except ConfigError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)


# --- ops ------------------------------------------------------------------------------------------

def _context(state: CliState) -> WorkerContext:
    """The jobs' context for a person's command: a call with no rate-limit slot free waits for one,
    saying so on stderr, where a job would be rescheduled."""
    from workers.context import WorkerContext

    ctx = WorkerContext.build(state.settings, state.stores, state.connection)
    ctx.on_slot_wait = lambda why, delay: click.echo(f"{why}: waiting {delay:.1f} s", err=True)
    return ctx


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _pick_stores(state: CliState, store: str | None) -> list[str]:
    if store is None:
        return list(state.stores)
    if store not in state.stores:
        raise click.ClickException(f"no store {store!r} (stores: {', '.join(state.stores) or 'none'})")
    return [store]


@main.command()
@click.argument("reference", required=False)
@click.option("--store", help="The store (default: every store that knows the reference).")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000),
              help="Without a reference: how many recent events.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def status(state: CliState, reference: str | None, store: str | None, limit: int, as_json: bool) -> None:
    """The whole story of one order: ledger, jobs, deliveries. Exit 1 if unknown, 2 if it failed.

    Without a reference: what happened lately, newest first, one line per event of an order.
    """
    from workers.ops import order_story

    if reference is None:
        _recent(state, store, limit, as_json)
        return
    ctx = _context(state)
    stories = [order_story(ctx.connection, ctx.events, ctx.ledger, sid, reference) for sid in _pick_stores(state, store)]
    found = [s for s in stories if s.found]
    if as_json:
        _echo_json([s.model_dump(mode="json") for s in found])
    elif not found:
        click.echo(f"{reference}: nothing known in {', '.join(s.store for s in stories) or 'any store'}")
    for story in [] if as_json else found:
        _print_story(story)
    if not found:
        sys.exit(1)
    if any(s.troubled for s in found):
        sys.exit(2)


def _recent(state: CliState, store: str | None, limit: int, as_json: bool) -> None:
    from bridge.tables import table
    from workers.ops import recent_events

    if store is not None:
        _pick_stores(state, store)
    events = recent_events(_context(state).events, list(state.stores), store, limit)
    if as_json:
        _echo_json([e.model_dump(mode="json") for e in events])
        return
    if not events:
        click.echo(f"Nothing happened lately{' in ' + store if store else ''} (or it is older than the kept outcomes).")
        return
    rows = [{"when": e.at, "store": e.store, "reference": e.reference, "event": e.event, "outcome": e.outcome,
             "points": e.points, "reason": e.reason} for e in events]
    click.echo(table(rows, ["when", "store", "reference", "event", "outcome", "points", "reason"]))


def _print_story(story: Any) -> None:
    from bridge.tables import table

    ledger = story.ledger
    click.echo(f"{story.reference} ({story.store}, platform order {story.order_id or '?'})")
    if ledger.award:
        a = ledger.award
        click.echo(f"  awarded   {a.points} points for {a.base} {a.currency} "
                   f"(transaction {a.transaction_id}, {a.at}, {a.source})")
    for refund_id, r in sorted(ledger.refunds.items()):
        click.echo(f"  {r.kind:<9} {refund_id}: -{r.points} points for {r.amount} ({r.at}"
                   f"{', transaction ' + str(r.transaction_id) if r.transaction_id else ''}"
                   f"{', ' + r.source if r.source != 'created' else ''})")
    if ledger.award:
        click.echo(f"  remaining {ledger.points_remaining} points")
    if ledger.due:
        click.echo(f"  pending   award until {ledger.due.due_at} (the store's award delay; "
                   "`bridge replay --now` awards it at once)")
    if ledger.skipped:
        click.echo(f"  skipped   {ledger.skipped.reason} ({ledger.skipped.at})")
    if ledger.failed:
        click.echo(f"  FAILED    {ledger.failed.event}: {ledger.failed.reason} ({ledger.failed.at})")
    if ledger.dismissed:
        d = ledger.dismissed
        click.echo(f"  dismissed {', '.join(d.jobs)} by {d.by} ({d.at}): {d.reason}"
                   f"{f' (it had failed: {d.failed})' if d.failed else ''}")
    for refund_id, pending in sorted(ledger.pending.items()):
        money = " ".join(filter(None, [str(pending.refund.amount), pending.refund.currency]))
        click.echo(f"  pending   {pending.kind} {refund_id}: {money} came before the award, which will apply it")
    for op, mark in ledger.inflight.items():
        about = mark.deduction.points if mark.deduction else None
        click.echo(f"  in flight {op}{f' ({about} points)' if about is not None else ''} since {mark.at}: "
                   "its answer was lost; the next look at Loyalty.lt's list decides")
    if story.jobs:
        click.echo("  jobs:")
        rows = [{"job": j.job_id, "status": j.status, "attempts": j.attempts,
                 "result": (j.outcome or {}).get("outcome"), "last error": j.last_error} for j in story.jobs]
        click.echo("    " + table(rows, ["job", "status", "attempts", "result", "last error"]).replace("\n", "\n    "))
        click.echo("  deliveries:")
        for job in story.jobs:
            for arrival in job.arrivals:
                click.echo(f"    {arrival['at']}  {job.event:<7} {arrival['outcome']:<9} "
                           f"{arrival['topic']} {arrival['delivery_id']}")


@main.command()
@click.argument("reference")
@click.option("--store", required=True, help="The order's store.")
@click.option("--refund", "refund_id", required=True, help="The refund id (or 'cancel' for the cancellation).")
@click.option("--landed", type=int, help="It landed: Loyalty.lt's transaction id of the deduction.")
@click.option("--not-landed", is_flag=True, help="It did not land: let its job deduct it.")
@click.pass_obj
def resolve(state: CliState, reference: str, store: str, refund_id: str, landed: int | None, not_landed: bool) -> None:
    """Say whether a deduction whose answer was lost landed, after checking in Loyalty.lt (when the
    bridge cannot tell, the job fails and says so)."""
    from workers.ops import ResolveError, resolve_deduction

    if (landed is None) == (not not_landed):
        raise click.UsageError("give either --landed <transaction id> or --not-landed")
    _pick_stores(state, store)
    try:
        click.echo(resolve_deduction(_context(state).ledger, store, reference, refund_id, landed))
    except ResolveError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.option("--store", help="Only this store's failed jobs.")
@click.option("--since", help="Only failures newer than this: 2h, 30m, 3d, or an ISO date.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--dismiss", "dismiss_ref", metavar="REFERENCE",
              help="Give up on this order's failed jobs: the ledger records who and why, then they are deleted.")
@click.option("--reason", help="With --dismiss: why (kept in the ledger, shown by `bridge status`).")
@click.option("--by", help="With --dismiss: who gives up on it (default: the OS user).")
@click.pass_obj
def failed(state: CliState, store: str | None, since: str | None, as_json: bool, dismiss_ref: str | None,
           reason: str | None, by: str | None) -> None:
    """Failed jobs, with the reason. Exit 2 when there are any.

    With --dismiss REF --reason "...": a person has dealt with the order otherwise (or decided it earns
    nothing); its failed jobs leave the list, and the ledger keeps who gave up on it, why and when.
    """
    from bridge.tables import table
    from workers.ops import failed_jobs, parse_since, view

    if dismiss_ref is not None:
        if since is not None:
            raise click.UsageError("--since lists failures; --dismiss names the order")
        _dismiss(state, dismiss_ref, store, by, reason, as_json)
        return
    if reason is not None or by is not None:
        raise click.UsageError("--reason and --by go with --dismiss REFERENCE")
    ctx = _context(state)
    jobs = failed_jobs(ctx.events.queue, store, parse_since(since) if since else None)
    rows = [{"store": v.store, "reference": v.reference, "event": v.event, "reason": v.last_error,
             "attempts": v.attempts, "failed at": v.ended_at, "job": v.job_id} for v in map(view, jobs)]
    if as_json:
        _echo_json(rows)
    elif rows:
        click.echo(table(rows, ["store", "reference", "event", "reason", "attempts", "failed at", "job"]))
    else:
        click.echo("No failed jobs.")
    if rows:
        sys.exit(2)


def _dismiss(state: CliState, reference: str, store: str | None, by: str | None, reason: str | None,
             as_json: bool) -> None:
    import getpass

    from workers.ops import DismissError, dismiss_failed

    if not (reason or "").strip():
        raise click.UsageError('--dismiss needs --reason "..." (why the order is given up on)')
    if not by:
        try:
            by = getpass.getuser()
        except OSError:
            raise click.UsageError("--by is needed: the OS user is unknown here") from None
    ctx = _context(state)
    try:
        found, dismissal = dismiss_failed(ctx.events, ctx.ledger, _pick_stores(state, store), reference, by,
                                          (reason or "").strip())
    except DismissError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        _echo_json({"store": found, "reference": reference, **dismissal.model_dump()})
        return
    click.echo(f"{reference} ({found}): dismissed {', '.join(dismissal.jobs)} for {dismissal.by}; "
               f"`bridge status {reference} --store {found}` keeps the story")


@main.command()
@click.argument("references", nargs=-1)
@click.option("--failed", "replay_failed", is_flag=True, help="Replay every failed job (with --store/--since).")
@click.option("--store", help="The store (required with references).")
@click.option("--since", help="With --failed: only failures newer than this (2h, 3d, an ISO date).")
@click.option("--event", type=click.Choice(["paid", "refund", "cancel"]), help="Only this event of the orders.")
@click.option("--dry-run", is_flag=True, help="Say what would be replayed, change nothing.")
@click.option("--now", "due_now_", is_flag=True,
              help="Award orders held back by the store's award delay now, not when they fall due.")
@click.option("--wait", default=120.0, show_default=True, type=float,
              help="Seconds to wait for the workers' results (0: just queue them).")
@click.pass_obj
def replay(state: CliState, references: tuple[str, ...], replay_failed: bool, store: str | None, since: str | None,
           event: str | None, dry_run: bool, due_now_: bool, wait: float) -> None:
    """Run jobs again from their kept payloads. Idempotent: what is already done stays as it is
    (an award held back by the store's award delay stays so, unless --now)."""
    from workers.ops import already_done, due_now, failed_jobs, order_jobs, parse_since, requeue, status_of, wait_for

    if replay_failed == bool(references):
        raise click.UsageError("give either --failed or one or more references")
    ctx = _context(state)
    queue = ctx.events.queue
    if replay_failed:
        jobs = failed_jobs(queue, store, parse_since(since) if since else None)
    else:
        if store is None:
            raise click.UsageError("--store is required with references")
        _pick_stores(state, store)
        jobs = []
        for reference in references:
            order_id = ctx.events.order_id_for(store, reference)
            found = order_jobs(ctx.events, store, order_id) if order_id else []
            if not found:
                click.echo(f"{reference}: no kept payload (unknown here, or older than the retention period)")
            jobs += found
    if event:
        jobs = [j for j in jobs if j.meta.get("kind") == event]

    summary = {"replayed": 0, "already done": 0, "still failing": 0, "not finished yet": 0}
    to_wait: list[str] = []
    for job in jobs:
        label = job.description or job.id
        done = already_done(ctx.ledger, job)
        if done:
            click.echo(f"{label}: {done}, nothing to replay")
            summary["already done"] += 1
            if not dry_run and status_of(job) == "failed":
                job.delete()  # its outcome is in the ledger; the failure no longer needs anyone
            continue
        if dry_run:
            click.echo(f"{label}: would replay ({status_of(job)})")
            continue
        if due_now_ and (what := due_now(ctx.events, ctx.ledger, job)):
            click.echo(f"{label}: {what}")
        requeue(ctx.events, job, ctx.retry_policy)
        to_wait.append(job.id)
    if dry_run:
        click.echo(f"Dry run: {len(jobs) - summary['already done']} to replay, {summary['already done']} already done.")
        return
    if to_wait and wait > 0:
        with click.progressbar(length=len(to_wait), label="Replaying") as bar:
            for _, finished in wait_for(ctx.connection, to_wait, wait):
                bar.update(1)
                # A finished job is gone (RQ keeps none): None; a failed one is still there.
                failing = finished is not None and finished.get_status() != "finished"
                summary["still failing" if failing else "replayed"] += 1
        summary["not finished yet"] = len(to_wait) - summary["replayed"] - summary["still failing"]
    else:
        summary["not finished yet"] = len(to_wait)
    click.echo(", ".join(f"{name}: {count}" for name, count in summary.items()))
    if summary["not finished yet"] and wait > 0:
        click.echo("Some jobs did not finish in time: is a worker running (bridge worker)?")
    if summary["still failing"]:
        sys.exit(2)
