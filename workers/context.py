"""What jobs need from their process: settings, stores, Redis, the ledger, API clients.

``bridge worker`` builds one :class:`WorkerContext` before it starts working and installs it; forked
work horses inherit it. A plain ``rq worker`` gets one built from the environment on first use.
Tests install their own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from redis import Redis

from config.settings import Settings
from config.stores import ConfigError, StoreConfig, Stores, load_stores
from workers.alerts.reports import Alerts
from workers.connection import connect
from workers.event_queue import EventQueue
from workers.job_errors import Wait
from workers.ledger import Ledger
from workers.loyalty import LoyaltyClient
from workers.loyalty.client import OnResponse
from workers.metrics import observe_api
from workers.probe.observed import ApiObservations, Observations
from workers.ratelimit import ApiRateLimiter, rate_limited
from workers.replication import Replication
from workers.retrying import RetryPolicy

@dataclass
class WorkerContext:
    """Everything a job uses, built once per worker process."""

    settings: Settings
    stores: Stores
    connection: Redis
    ledger: Ledger
    events: EventQueue
    retry_policy: RetryPolicy
    rate_limiter: ApiRateLimiter
    alerts: Alerts
    clients: dict[str, LoyaltyClient] = field(default_factory=dict)
    # Stores whose next call already holds a rate-limit slot (see reserve_slot).
    _reserved: set[str] = field(default_factory=set)
    # What this process follows instead of the kept observations of an API URL: the live probe trying
    # a deduct body before it knows the API takes it (see observed).
    assumed: dict[str, ApiObservations] = field(default_factory=dict)
    # A person's command (reconcile, the live probe) waits for a rate-limit slot where a job would be
    # rescheduled: it has no scheduler to come back through. Called with why and for how long.
    on_slot_wait: Callable[[str, float], None] | None = None

    @classmethod
    def build(cls, settings: Settings, stores: Stores, connection: Redis) -> WorkerContext:
        """Assemble a context from its parts."""
        return cls(
            settings=settings, stores=stores, connection=connection,
            ledger=Ledger(connection, retention=settings.ledger_retention,
                          lock_timeout=settings.job_timeout + 5, replication=Replication.of(settings)),
            events=EventQueue(connection, settings), retry_policy=RetryPolicy(settings),
            rate_limiter=ApiRateLimiter(connection, settings.rate_limit_window, settings.rate_limit_margin,
                                        probe_lease=settings.api_connect_timeout + settings.api_read_timeout),
            alerts=Alerts(connection, settings),
        )

    @classmethod
    def from_environment(cls) -> WorkerContext:
        """A context from the process environment (settings, stores file, REDIS_URL)."""
        settings = Settings()
        if not settings.redis_url:
            raise ConfigError("REDIS_URL is not set")
        return cls.build(settings, load_stores(settings.stores_file), connect(settings.redis_url))

    def client(self, store: StoreConfig) -> LoyaltyClient:
        """The store's Loyalty.lt client (one per store and process, so connections are reused).

        Every call first takes a slot of the store's API key rate limit; when there is none (or the
        key is paused after a 429), the job waits (is rescheduled) instead of holding the worker.
        Every answer is shown to the limiter too, so the call that probes after a pause ends it, and
        to the alerts (a key refused, the same call refused again and again).
        """
        if store.id not in self.clients:
            def take_slot() -> None:
                if store.id in self._reserved:
                    self._reserved.discard(store.id)
                    return
                self._take_slot(store)

            def answered(endpoint: str, status: int | None, seconds: float) -> None:
                observe_api(endpoint, status, seconds)
                self.rate_limiter.answered(store, status)
                self.alerts.answered(store.id, endpoint, status)

            self.clients[store.id] = client_for(self.settings, store, before_request=take_slot,
                                                on_response=answered)
        return self.clients[store.id]

    def observed(self, store: StoreConfig) -> ApiObservations | None:
        """What ``bridge check --live`` saw the store's Loyalty.lt API do (None: no probe ran there)."""
        url = api_url(self.settings, store)
        return self.assumed.get(url) or Observations(self.connection).get(url)

    def reserve_slot(self, store: StoreConfig) -> None:
        """Take a rate-limit slot for the store's next call now, or raise :class:`Wait`.

        A job marks a call in flight only once the call can leave at once, so a call that had to
        wait for a slot never leaves a mark behind.
        """
        self._take_slot(store)
        self._reserved.add(store.id)

    def _take_slot(self, store: StoreConfig) -> None:
        while (delay := self.rate_limiter.acquire(store)) > 0:
            if self.on_slot_wait is None:
                raise Wait(rate_limited(store), delay)
            self.on_slot_wait(rate_limited(store), delay)
            time.sleep(delay)


def api_url(settings: Settings, store: StoreConfig) -> str:
    """The Loyalty.lt API the store's calls go to."""
    return (store.api_url or settings.loyalty_api_url).rstrip("/")


def client_for(settings: Settings, store: StoreConfig, before_request: Callable[[], None] | None = None,
               on_response: OnResponse = observe_api) -> LoyaltyClient:
    """A Loyalty.lt client for ``store`` with the process's timeouts; calls are counted in metrics
    (by ``observe_api``, or an ``on_response`` hook that calls it)."""
    return LoyaltyClient(
        base_url=api_url(settings, store),
        api_key=store.api_key,
        api_secret=store.api_secret.get_secret_value(),
        locale=store.locale,
        connect_timeout=settings.api_connect_timeout,
        read_timeout=settings.api_read_timeout,
        on_response=on_response,
        before_request=before_request,
    )


_installed: WorkerContext | None = None


def install(context: WorkerContext | None) -> None:
    """Make ``context`` the one jobs of this process use (None uninstalls)."""
    global _installed
    _installed = context


def current() -> WorkerContext:
    """The installed context, built from the environment on first use if none was installed."""
    global _installed
    if _installed is None:
        _installed = WorkerContext.from_environment()
    return _installed
