"""``bridge alerts``: what is firing now, and a test alert to every receiver. The work is done in
:mod:`workers.alerts`."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from bridge.cli_state import CliState


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def alerts(ctx: click.Context, as_json: bool) -> None:
    """What is firing now (the alerts sent to BRIDGE_ALERT_WEBHOOKS). Exit 2 when anything is."""
    if ctx.invoked_subcommand is not None:
        return
    from bridge.tables import table
    from workers.alerts.kinds import text_for
    from workers.alerts.state import AlertState
    from workers.privacy import mask_emails

    state: CliState = ctx.obj
    firing = AlertState(state.connection, receivers=0, repeat=state.settings.alert_repeat).firing()
    rows = [{"alert": r.alert, "store": r.store, "first_seen": r.first_seen, "last_seen": r.last_seen,
             "count": r.count, "text": mask_emails(text_for(r, True)), "details": r.details} for r in firing]
    if as_json:
        click.echo(mask_emails(json.dumps(rows, indent=2, default=str)))
    elif rows:
        for row in rows:
            row["what"] = str(row["text"]).splitlines()[0]
        click.echo(table(rows, ["alert", "store", "first_seen", "count", "what"]))
    else:
        click.echo("Nothing is firing.")
    if rows:
        sys.exit(2)


@alerts.command("test")
@click.pass_obj
def test_alert(state: CliState) -> None:
    """Send a test alert to each receiver in BRIDGE_ALERT_WEBHOOKS and print what each answered.
    Exit 1 when any did not answer 2xx."""
    from workers.alerts.delivery import Sender
    from workers.alerts.state import AlertState

    settings = state.settings
    if not settings.alert_urls:
        raise click.ClickException("BRIDGE_ALERT_WEBHOOKS is not set: give it one or more URLs, comma-separated "
                                   "(a Slack incoming webhook, or any receiver)")
    sender = Sender(settings, AlertState(state.connection, receivers=0, repeat=settings.alert_repeat))
    answers = sender.test()
    for answer in answers:
        said = f"{answer.status} {answer.body}".strip() if answer.status is not None else f"no answer ({answer.error})"
        click.echo(f"{answer.receiver}: {'ok' if answer.ok else 'FAIL'}  {said}")
    signed = "signed (Standard Webhooks)" if settings.alert_secret else "unsigned (no BRIDGE_ALERT_SECRET)"
    click.echo(f"{sum(a.ok for a in answers)} of {len(answers)} receivers took the test alert, {signed}.")
    if not all(a.ok for a in answers):
        sys.exit(1)
