"""The state every ``bridge`` command is given: settings, stores and Redis, built on first use.

A module of its own, below :mod:`bridge.cli` and the command modules it gathers
(:mod:`bridge.shop_commands`, :mod:`bridge.alert_commands`), so that they need not import each other.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import click
from redis import Redis

from config.settings import Settings
from config.stores import ConfigError, Stores, load_stores
from workers.connection import connect

if TYPE_CHECKING:
    from bridge.devenv import DevSession


class CliState:
    """Settings, stores and Redis, built on first use so ``bridge --help`` needs none of them."""

    def __init__(self, stores_file: Path | None) -> None:
        self.stores_file = stores_file

    @cached_property
    def settings(self) -> Settings:
        """The process settings; while `bridge dev` runs here, its Redis unless REDIS_URL says
        otherwise, and its stores unless --stores or a stores file says otherwise."""
        settings = Settings()
        if not settings.redis_url and self.dev_session is not None:
            settings = settings.model_copy(update={"redis_url": self.dev_session.redis_url})
            if self.stores_file is None and not settings.stores_file.exists():
                settings = settings.model_copy(update={"stores_file": Path(self.dev_session.stores_file)})
        if self.stores_file is not None:
            settings = settings.model_copy(update={"stores_file": self.stores_file})
        return settings

    @cached_property
    def dev_session(self) -> DevSession | None:
        from bridge.devenv import DevSession

        return DevSession.load()

    @cached_property
    def stores(self) -> Stores:
        try:
            return load_stores(self.settings.stores_file)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None

    @cached_property
    def connection(self) -> Redis:
        if not self.settings.redis_url:
            raise click.ClickException("REDIS_URL is not set (`bridge dev` starts an embedded Redis for you)")
        return connect(self.settings.redis_url)
