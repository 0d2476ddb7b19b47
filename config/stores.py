"""The stores a deployment serves: one TOML table per store, or one store from the environment.

A bad file stops the process with one line naming the store and the field (:class:`ConfigError`),
never a traceback. Secrets are kept as :class:`pydantic.SecretStr` so they do not leak through
``repr`` or logs; ``${ENV_VAR}`` in any string lets them live in the environment instead of the file.
"""

from __future__ import annotations

import os
import re
import string
import tomllib
from functools import cached_property
from collections.abc import Iterator, Mapping
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator

Platform = Literal["woocommerce", "shopify"]
AmountBasis = Literal["total", "total_excl_shipping", "total_excl_shipping_and_tax"]

# Store ids are URL path segments and parts of Redis keys and RQ job ids (which allow only these).
STORE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
REFERENCE_FIELDS = {"number", "id", "name"}
DEFAULT_REFERENCE_FORMAT: dict[str, str] = {"woocommerce": "WC-{number}", "shopify": "SH-{number}"}
ENV_STORE_ID = "default"
ENV_STORE_PREFIX = "BRIDGE_STORE_"


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(value: Any) -> Any:
    """``"14d"``, ``"12h"``, ``"30m"``, ``"45s"`` or a number of seconds; anything else is left to
    pydantic (ISO 8601 ``P14D`` works too)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    if isinstance(value, str) and not value.strip().upper().startswith("P"):
        raise ValueError(f"{value!r} is not a duration: write it like 14d, 12h, 30m or 45s")
    return value


def _within_a_year(value: timedelta) -> timedelta:
    if not timedelta(0) <= value <= timedelta(days=365):
        raise ValueError("must be between 0 and 365 days")
    return value


Duration = Annotated[timedelta, BeforeValidator(_duration), AfterValidator(_within_a_year)]


class ConfigError(Exception):
    """The configuration cannot be used; the message is one line meant for the person deploying."""


class Redemption(BaseModel):
    """How a store shows points the customer spent on an order, and what a point is worth."""

    model_config = ConfigDict(extra="forbid")

    coupon_prefix: str | None = None
    fee_name: str | None = None
    points_per_unit: Decimal = Field(gt=0, description="points spent per currency unit of discount")

    @model_validator(mode="after")
    def _one_marker(self) -> Redemption:
        if not self.coupon_prefix and not self.fee_name:
            raise ValueError("set coupon_prefix or fee_name (how the shop shows points spent)")
        return self


class StoreConfig(BaseModel):
    """One shop: how its webhooks are verified and which Loyalty.lt account its orders go to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    platform: Platform
    webhook_secrets: list[SecretStr] = Field(min_length=1)
    api_key: str = Field(min_length=1)
    api_secret: SecretStr
    locale: Literal["en", "lt"] = "en"
    reference_format: str = Field(default="", validate_default=True)
    shop_id: int | None = None
    partner_card_id: int | None = None
    amount_basis: AmountBasis = "total"
    api_url: str | None = None
    allow_test_orders: bool = False
    redemption: Redemption | None = None
    # WooCommerce has no gift-card flag of its own; extensions mark lines in meta, or list products here.
    gift_card_product_ids: frozenset[int] = frozenset()
    # Loyalty.lt allows 60 requests per minute per API key.
    rate_limit_per_minute: int = Field(default=60, ge=1)
    # Points pending until the return window has passed ("14d"; 0 = award at once): the award is made
    # this long after payment, for what the customer kept.
    award_delay: Duration = timedelta(0)
    # The shop's own API (optional): `bridge connect`, the webhook watch, `bridge backfill` and the
    # periodic sync. WooCommerce: the site root and a REST key pair; Shopify: https://<shop>.myshopify.com
    # and a custom app's Admin API access token.
    shop_url: str | None = None
    shop_consumer_key: SecretStr | None = None
    shop_consumer_secret: SecretStr | None = None
    shop_access_token: SecretStr | None = None

    @field_validator("id")
    @classmethod
    def _id_shape(cls, value: str) -> str:
        if not STORE_ID.match(value):
            raise ValueError("store ids may hold only letters, digits, '_' and '-' (at most 64)")
        return value

    @field_validator("webhook_secrets", mode="before")
    @classmethod
    def _one_secret_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("webhook_secrets")
    @classmethod
    def _no_empty_secret(cls, value: list[SecretStr]) -> list[SecretStr]:
        if any(not s.get_secret_value() for s in value):
            raise ValueError("a webhook secret is empty")
        return value

    @field_validator("api_url")
    @classmethod
    def _url_shape(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("api_url must start with http:// or https://")
        return value.rstrip("/") if value else value

    @field_validator("shop_url")
    @classmethod
    def _shop_url_shape(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/?#]+(/[^\s?#]*)?$", value):
            raise ValueError("shop_url must be an http(s):// address without a query (the site root)")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _shop_credentials(self) -> StoreConfig:
        woo = (self.shop_consumer_key, self.shop_consumer_secret)
        if self.platform == "woocommerce":
            if self.shop_access_token is not None:
                raise ValueError("shop_access_token is for Shopify; WooCommerce uses shop_consumer_key and "
                                 "shop_consumer_secret")
            if (woo[0] is None) != (woo[1] is None):
                raise ValueError("set both shop_consumer_key and shop_consumer_secret (a WooCommerce REST key pair)")
            has_keys = woo[0] is not None
            needed = "shop_consumer_key and shop_consumer_secret"
        else:
            if woo != (None, None):
                raise ValueError("shop_consumer_key/shop_consumer_secret are for WooCommerce; Shopify uses "
                                 "shop_access_token")
            has_keys = self.shop_access_token is not None
            needed = "shop_access_token"
        if has_keys and not self.shop_url:
            raise ValueError(f"{needed} need shop_url (the shop's address)")
        if self.shop_url and not has_keys:
            raise ValueError(f"shop_url needs {needed}")
        return self

    @property
    def has_shop_api(self) -> bool:
        """Whether the shop's own API is configured (connect, watch, backfill, sync)."""
        return self.shop_url is not None

    @field_validator("reference_format")
    @classmethod
    def _reference_format(cls, value: str, info: ValidationInfo) -> str:
        fmt = value or DEFAULT_REFERENCE_FORMAT.get(info.data.get("platform", ""), "")
        names = {name for _, name, _, _ in string.Formatter().parse(fmt) if name is not None}
        if not names or not names <= REFERENCE_FIELDS:
            raise ValueError(f"{fmt!r} must use one or more of {{number}}, {{id}}, {{name}} and nothing else")
        return fmt

    @cached_property
    def secrets(self) -> list[bytes]:
        """The webhook secrets as bytes, for HMAC; any one of them verifies (rotation)."""
        return [s.get_secret_value().encode() for s in self.webhook_secrets]


def _literal_ends(fmt: str) -> tuple[str, str]:
    """The fixed text before a reference format's first field and after its last."""
    parts = list(string.Formatter().parse(fmt))
    prefix = parts[0][0] if parts else fmt
    suffix = parts[-1][0] if parts and parts[-1][1] is None else ""
    return prefix, suffix


def may_collide(first: str, second: str) -> bool:
    """Whether two reference formats can make the same reference: unless their fixed prefixes (or
    suffixes) differ within the shorter one, some order numbers of the two can meet."""
    (p1, s1), (p2, s2) = _literal_ends(first), _literal_ends(second)
    prefixes_apart = not (p1.startswith(p2) or p2.startswith(p1))
    suffixes_apart = not (s1.endswith(s2) or s2.endswith(s1))
    return not (prefixes_apart or suffixes_apart)


def check_shared_keys(stores: Mapping[str, StoreConfig], source: str) -> None:
    """Refuse stores that share a Loyalty.lt API key with reference formats that can collide.

    Loyalty.lt keeps one award per ``order_id`` per key, and the bridge finds its transactions by
    reference: two stores making the same reference on one key would take each other's awards and
    refunds.
    """
    seen: list[StoreConfig] = []
    for store in stores.values():
        for other in seen:
            same_account = (other.api_key, other.api_url) == (store.api_key, store.api_url)
            if same_account and may_collide(other.reference_format, store.reference_format):
                raise ConfigError(
                    f"{source}: stores {other.id!r} and {store.id!r} share a Loyalty.lt API key and their order "
                    f"references can be the same ({other.reference_format!r}, {store.reference_format!r}): give "
                    "them distinct reference_format prefixes, e.g. \"A-{number}\" and \"B-{number}\"")
        seen.append(store)


class Stores(Mapping[str, StoreConfig]):
    """The stores of this deployment by id, and where they were read from."""

    def __init__(self, stores: dict[str, StoreConfig], source: str) -> None:
        check_shared_keys(stores, source)
        self._stores = stores
        self.source = source

    def __getitem__(self, store_id: str) -> StoreConfig:
        return self._stores[store_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._stores)

    def __len__(self) -> int:
        return len(self._stores)


def _interpolate(value: Any, env: Mapping[str, str], where: str) -> Any:
    """Replace ``${NAME}`` in every string of ``value`` (recursively) with the environment's value."""
    if isinstance(value, str):

        def lookup(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                raise ConfigError(f"{where}: environment variable {name} is not set")
            return env[name]

        return _ENV_REF.sub(lookup, value)
    if isinstance(value, list):
        return [_interpolate(v, env, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _interpolate(v, env, f"{where}.{k}") for k, v in value.items()}
    return value


def _describe(error: ValidationError) -> str:
    """The first problem of a validation error as ``field: message`` (one line, no input values)."""
    first = error.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "(store)"
    message = first["msg"].removeprefix("Value error, ")
    more = len(error.errors()) - 1
    return f"{field}: {message}" + (f" (and {more} more problem{'s' * (more > 1)})" if more else "")


def build_store(store_id: str, raw: Mapping[str, Any], env: Mapping[str, str], source: str) -> StoreConfig:
    """Validate one store table; raises :class:`ConfigError` naming the store and the field."""
    where = f"{source}: store {store_id!r}"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: must be a table")
    values = {k: _interpolate(v, env, f"{where}: {k}") for k, v in raw.items()}
    try:
        return StoreConfig(id=store_id, **values)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {_describe(exc)}") from None


def load_stores_file(path: Path, env: Mapping[str, str] | None = None) -> Stores:
    """Read and validate a stores file."""
    env = os.environ if env is None else env
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the stores file ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    tables = data.get("stores")
    if not isinstance(tables, dict) or not tables:
        raise ConfigError(f"{path}: no [stores.<id>] table; see config/stores.example.toml")
    stores = {sid: build_store(sid, raw, env, str(path)) for sid, raw in tables.items()}
    return Stores(stores, source=str(path))


def store_from_env(env: Mapping[str, str]) -> StoreConfig | None:
    """The single ``default`` store from ``BRIDGE_STORE_*`` variables, or None when none is set.

    ``BRIDGE_STORE_WEBHOOK_SECRET`` (and ``BRIDGE_STORE_WEBHOOK_SECRET_PREVIOUS`` while rotating),
    ``BRIDGE_STORE_PLATFORM``, ``BRIDGE_STORE_API_KEY``, ``BRIDGE_STORE_API_SECRET``,
    ``BRIDGE_STORE_LOCALE`` and any other store field as ``BRIDGE_STORE_<FIELD>``.
    """
    raw: dict[str, Any] = {
        key.removeprefix(ENV_STORE_PREFIX).lower(): value
        for key, value in env.items()
        if key.startswith(ENV_STORE_PREFIX) and value != ""
    }
    if not raw:
        return None
    secrets = [raw.pop("webhook_secret", None), raw.pop("webhook_secret_previous", None)]
    raw["webhook_secrets"] = [s for s in secrets if s]
    return build_store(ENV_STORE_ID, raw, env, "environment (BRIDGE_STORE_*)")


def load_stores(path: Path, env: Mapping[str, str] | None = None) -> Stores:
    """The deployment's stores: the stores file when it exists, else one store from the environment.

    Returns an empty :class:`Stores` when neither is configured (every webhook then answers 404).
    """
    env = os.environ if env is None else env
    if path.exists():
        return load_stores_file(path, env)
    single = store_from_env(env)
    if single is not None:
        return Stores({single.id: single}, source="environment (BRIDGE_STORE_*)")
    return Stores({}, source=f"nothing configured ({path} does not exist, no BRIDGE_STORE_* variables)")
