"""Process settings, read from the environment once at start-up.

Everything a deployment tunes without touching the stores file lives here: where Redis is, where the
stores file is, body and retry limits. Store-specific facts (secrets, API keys) live in
:mod:`config.stores`.
"""

from __future__ import annotations

from pathlib import Path

import base64
import binascii

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DAY = 24 * 3600


class Settings(BaseSettings):
    """Settings of one bridge process (web or worker), from ``BRIDGE_*`` and a few standard variables."""

    # hide_input_in_errors: a refused value may be a secret (BRIDGE_ALERT_SECRET, the dashboard password).
    model_config = SettingsConfigDict(env_prefix="BRIDGE_", extra="ignore", populate_by_name=True,
                                      hide_input_in_errors=True)

    # Standard names (no prefix) because Procfile platforms set them for you.
    redis_url: str | None = Field(default=None, validation_alias="REDIS_URL")
    loyalty_api_url: str = Field(default="https://api.loyalty.lt", validation_alias="LOYALTY_API_URL")

    stores_file: Path = Path("config/stores.toml")

    # Intake limits.
    max_body_bytes: int = Field(default=2 * 1024 * 1024, gt=0)
    # How long a shop is told to wait when Redis is down (the shop retries; nothing is lost).
    unavailable_retry_after: int = Field(default=30, ge=1)

    # Replication (issue #20): with N > 0, a webhook is acknowledged, and a worker goes on past a
    # ledger write that matters (the in-flight mark before a Loyalty.lt call, the outcome after it),
    # only once Redis's WAIT says N replicas hold it; otherwise 503 / the job retries. 0: Redis's
    # asynchronous replication as it is (a failover can lose the last writes before it).
    redis_min_replicas: int = Field(default=0, ge=0)
    # How long WAIT waits for those replicas (ms); below the intake's 2 s Redis timeout.
    redis_wait_timeout: int = Field(default=500, ge=1, le=1900)

    # Queue and job lifetimes. Kept payloads (in the job) expire with the job.
    queue_name: str = "loyalty"
    payload_retention: int = Field(default=30 * DAY, ge=60)
    job_timeout: int = Field(default=120, ge=5)
    # A worker that dies mid-job (SIGKILL, lost machine) leaves its job "started"; RQ's maintenance
    # hands it to another worker once its heartbeat is older than the job timeout plus this grace.
    worker_heartbeat_grace: int = Field(default=60, ge=1)
    worker_maintenance_interval: int = Field(default=60, ge=1)
    # A worker whose Redis is away (at start or under it) waits and tries again: exponential backoff
    # with jitter from the base delay, capped; it never exits for it.
    redis_wait_base_delay: float = Field(default=1.0, gt=0.0)
    redis_wait_max_delay: float = Field(default=30.0, gt=0.0)
    # The ledger remembers each order's awards and refunds this long (it is the idempotency memory).
    ledger_retention: int = Field(default=400 * DAY, ge=DAY)

    # Retries of retryable failures: exponential backoff with jitter, for up to ``retry_window``.
    retry_base_delay: float = Field(default=10.0, ge=0.0)
    retry_max_delay: float = Field(default=3600.0, ge=0.0)
    retry_window: int = Field(default=DAY, ge=0)
    # How soon a job that waits for something (a busy order, an unknown call settling) looks again.
    wait_delay: float = Field(default=30.0, ge=0.0)
    # How long a Loyalty.lt call whose answer never came (a timeout, a 5xx, a worker that died) may
    # still land. Until then a retry looks for it in the transaction list instead of calling again
    # (Loyalty.lt does not deduplicate deductions); only after it, not listed means not landed.
    unknown_call_settle: float = Field(default=300.0, ge=0.0)

    # Loyalty.lt's rate limit counts requests per key in this window (documented: 60 per minute;
    # the count is each store's rate_limit_per_minute). The bridge's own window is `rate_limit_margin`
    # longer, because a request reaches Loyalty.lt a little after the bridge counted it.
    rate_limit_window: int = Field(default=60, ge=1)
    rate_limit_margin: float = Field(default=1.0, ge=0)

    # Loyalty.lt client timeouts (seconds).
    api_connect_timeout: float = Field(default=3.05, gt=0)
    api_read_timeout: float = Field(default=15.0, gt=0)

    # rq-dashboard at /rq; off unless both are set (job arguments hold customer emails).
    dashboard_user: str | None = None
    dashboard_password: SecretStr | None = None
    # How many proxies in front of the web process set X-Forwarded-Proto/-Host/-Port (0: none, or only
    # gunicorn's own handling of a local proxy). The dashboard's same-origin check compares with the
    # address they forwarded, so it must be right behind a TLS-terminating proxy.
    proxy_hops: int = Field(default=0, ge=0, le=5)
    # When set, /metrics (the web process's and the workers' --metrics-port) wants
    # `Authorization: Bearer <token>`.
    metrics_token: SecretStr | None = None

    # The shops' own APIs (stores with shop_url and keys): the periodic sync reads the orders
    # modified since its last run, less an overlap, and queues what no webhook brought (0: off).
    shop_sync_interval: int = Field(default=900, ge=0)
    shop_sync_overlap: int = Field(default=300, ge=0)
    # The first run of a store (no watermark yet) looks this far back; older orders: `bridge backfill`.
    shop_sync_first_lookback: int = Field(default=DAY, ge=60)
    # How often worker maintenance checks a connected store's webhook subscriptions (0: never).
    shop_watch_interval: int = Field(default=3600, ge=0)
    shop_connect_timeout: float = Field(default=5.0, gt=0)
    shop_read_timeout: float = Field(default=30.0, gt=0)
    # The longest a shop API call waits out a rate limit (Retry-After, Shopify's cost bucket) before
    # the run gives up and tries again next time.
    shop_max_wait: float = Field(default=60.0, ge=0)
    # The longest a backfill waits for Shopify to run its bulk operation (a large shop's months of
    # orders take minutes; Shopify allows one ten days).
    shop_bulk_max_wait: float = Field(default=4 * 3600.0, ge=0)
    shopify_api_version: str = Field(default="2026-04", pattern=r"^\d{4}-\d{2}$|^unstable$")

    log_level: str = "INFO"

    # Alerts (workers.alerts): where they go, how they are signed, and each kind's threshold.
    # Comma-separated URLs: Slack/Mattermost/Rocket.Chat incoming webhooks or any receiver.
    alert_webhooks: str = ""
    # A Standard Webhooks secret (whsec_ + base64): every alert is then signed as that spec says.
    alert_secret: SecretStr | None = None
    # A condition that lasts is told again this often; once when it starts and once when it ends.
    alert_repeat: int = Field(default=3600, ge=1)
    # job_failed: failures within this many seconds of the first become one digest.
    alert_digest_seconds: float = Field(default=60.0, ge=0)
    # calls_refused: this many 400/422 answers in a row to one kind of call of one store.
    alert_refused_in_row: int = Field(default=5, ge=1)
    # shop_unreachable: this many failed sync runs of a store in a row.
    alert_shop_failed_runs: int = Field(default=3, ge=1)
    # webhooks_missing: a sync run that queued at least this many events no webhook brought.
    alert_missing_events: int = Field(default=1, ge=1)
    # workers_down: events are waiting and no worker has been alive for this long.
    alert_workers_down_after: int = Field(default=300, ge=1)
    # backlog_stale: the oldest waiting event has waited this long.
    alert_backlog_age: int = Field(default=900, ge=1)
    # redis: used memory above this share of maxmemory.
    alert_redis_memory_ratio: float = Field(default=0.9, gt=0, le=1)
    # How often the conditions that nothing reports (workers, backlog, Redis, cleared failures) are
    # looked at, by one process of the deployment at a time.
    alert_check_interval: float = Field(default=30.0, gt=0)
    # A receiver that does not answer 2xx is tried again with backoff, for up to alert_give_up_after.
    alert_retry_base_delay: float = Field(default=5.0, gt=0)
    alert_retry_max_delay: float = Field(default=600.0, gt=0)
    alert_give_up_after: int = Field(default=DAY, ge=1)
    alert_timeout: float = Field(default=5.0, gt=0)

    @field_validator("alert_secret")
    @classmethod
    def _standard_webhooks_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        raw = value.get_secret_value().removeprefix("whsec_")
        try:
            if not base64.b64decode(raw + "==", validate=True):
                raise ValueError
        except (binascii.Error, ValueError):
            # Never echo the value: it is a secret.
            raise ValueError("must be a Standard Webhooks secret: whsec_ followed by base64 (make one: python -c "
                             "\"import base64,os;print('whsec_'+base64.b64encode(os.urandom(24)).decode())\")") from None
        return value

    @property
    def alert_urls(self) -> list[str]:
        """The receivers of alerts, in the order BRIDGE_ALERT_WEBHOOKS lists them."""
        return [url.strip() for url in self.alert_webhooks.split(",") if url.strip()]
