"""``bridge check <store> --live``: run the live probe (:mod:`workers.probe.steps`) and say what it saw,
one step a line; and the line plain ``bridge check`` shows of what a probe kept."""

from __future__ import annotations

import json
import sys
from decimal import Decimal

import click
from redis import Redis
from redis.exceptions import RedisError

from config.settings import Settings
from config.stores import StoreConfig
from workers.context import WorkerContext, api_url
from workers.probe.observed import Observations
from workers.probe.steps import STAGING_API, Probe, Step, plan, where

WIDTH = 17  # the step names' column


def observed_line(settings: Settings, connection: Redis, store: StoreConfig) -> str:
    """What the workers follow for the store's API: the last probe's findings, or the defaults."""
    try:
        observed = Observations(connection).get(api_url(settings, store))
    except RedisError as exc:
        return f"what a live probe kept cannot be read ({type(exc).__name__})"
    if observed is None:
        return (f"not probed: the workers send the full deduct body; run `bridge check {store.id} --live` "
                "against the staging API before going live")
    return observed.summary()


def run_live(ctx: WorkerContext, store: StoreConfig, *, email: str, amount: Decimal, real_points: bool,
             as_json: bool) -> None:
    """Refuse unless the store's API is staging or the local sandbox (or ``real_points``), run the
    probe, print it, and exit 0 only when every step matched."""
    url = api_url(ctx.settings, store)
    place = where(url)
    if place == "elsewhere" and not real_points:
        raise click.ClickException(
            f"{store.id} sends its calls to {url}, where points are real: the probe runs against the staging API "
            f"({STAGING_API}) or a local sandbox. Point the store's api_url at staging with staging credentials, "
            "or add --real-points to run it here")
    if place == "elsewhere":
        click.echo(plan(store, url, email, amount), err=as_json)

    def show(step: Step) -> None:
        if as_json:
            return
        click.echo(f"  {'ok' if step.ok else 'FAIL':<5} {step.name:<{WIDTH}} assumed: {step.assumed}")
        click.echo(f"  {'':<5} {'':<{WIDTH}} saw:     {step.saw}")

    probe = Probe(ctx, store, email=email, amount=amount, on_step=show)
    if not as_json:
        label = {"staging": "Loyalty.lt's staging API", "sandbox": "a local sandbox", "elsewhere": "REAL POINTS"}[place]
        click.echo(f"Probe of {store.id} on {url} ({label}) as {email}, order {probe.reference}")
    report = probe.run()
    if as_json:
        click.echo(json.dumps({**report.model_dump(mode="json"), "passed": report.passed}, indent=2))
    else:
        differs = [f"  - {step.name}: {step.differs}" for step in report.steps if step.differs]
        click.echo("What differs from what the bridge sends and assumes by default:" if differs
                   else "Nothing differs from what the bridge sends and assumes by default.")
        for line in differs:
            click.echo(line)
        if report.observed is not None:
            click.echo(f"Kept for {url} (the workers follow it): {report.observed.summary()}")
        else:
            click.echo(f"Nothing kept for {url}: the probe did not get as far as a deduction.")
        if report.left_on_card:
            click.echo(f"The card still holds {report.left_on_card} probe points ({report.reference}).")
        click.echo("Every step matched." if report.passed else "Some steps did not match (FAIL above).")
    if not report.passed:
        sys.exit(1)
