"""The stores file: interpolation, validation with one clear line, the env-only default store."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.stores import ConfigError, load_stores, load_stores_file, store_from_env

EXAMPLE = Path(__file__).parents[2] / "config" / "stores.example.toml"

GOOD = """
[stores.coffee-woo]
platform = "woocommerce"
webhook_secrets = ["${WOO_SECRET}", "old-secret"]
api_key = "lty_abc"
api_secret = "${API_SECRET}"
locale = "lt"
shop_id = 12
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "stores.toml"
    path.write_text(text)
    return path


def test_interpolates_secrets_from_the_environment(tmp_path: Path) -> None:
    stores = load_stores_file(write(tmp_path, GOOD), {"WOO_SECRET": "s3cret", "API_SECRET": "api-s3cret"})
    store = stores["coffee-woo"]
    assert store.secrets == [b"s3cret", b"old-secret"]
    assert store.api_secret.get_secret_value() == "api-s3cret"
    assert store.reference_format == "WC-{number}"  # the platform's default
    assert "s3cret" not in repr(store)


def test_the_example_file_is_valid(tmp_path: Path) -> None:
    env = {name: "x" for name in ("COFFEE_WOO_SECRET", "COFFEE_API_KEY", "COFFEE_API_SECRET", "COFFEE_SHOPIFY_SECRET")}
    stores = load_stores_file(EXAMPLE, env)
    assert set(stores) == {"coffee-woo", "coffee-shopify"}
    assert stores["coffee-woo"].redemption is not None


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        (GOOD, {"API_SECRET": "x"}, "store 'coffee-woo': webhook_secrets[0]: environment variable WOO_SECRET is not set"),
        (GOOD.replace('locale = "lt"', 'locale = "de"'), {"WOO_SECRET": "a", "API_SECRET": "b"},
         "store 'coffee-woo': locale: Input should be 'en' or 'lt'"),
        (GOOD.replace('platform = "woocommerce"', 'platform = "magento"'), {"WOO_SECRET": "a", "API_SECRET": "b"},
         "store 'coffee-woo': platform: Input should be 'woocommerce' or 'shopify'"),
        (GOOD + 'reference_format = "{order}"\n', {"WOO_SECRET": "a", "API_SECRET": "b"},
         "store 'coffee-woo': reference_format: '{order}' must use"),
        (GOOD + "colour = 'red'\n", {"WOO_SECRET": "a", "API_SECRET": "b"},
         "store 'coffee-woo': colour: Extra inputs are not permitted"),
        (GOOD.replace("[stores.coffee-woo]", "[stores.'coffee woo']"), {"WOO_SECRET": "a", "API_SECRET": "b"},
         "store 'coffee woo': id: store ids may hold only"),
        ("[stores]\n", {}, "no [stores.<id>] table"),
        ("not toml ===", {}, "not valid TOML"),
    ],
)
def test_a_bad_file_gives_one_line_naming_store_and_field(tmp_path: Path, text: str, env: dict[str, str],
                                                          message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_stores_file(write(tmp_path, text), env)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert "Traceback" not in str(caught.value)


def test_a_secret_never_appears_in_a_validation_message(tmp_path: Path) -> None:
    text = GOOD.replace("shop_id = 12", 'shop_id = "twelve"')
    with pytest.raises(ConfigError) as caught:
        load_stores_file(write(tmp_path, text), {"WOO_SECRET": "very-secret-value", "API_SECRET": "b"})
    assert "very-secret-value" not in str(caught.value)
    assert "shop_id" in str(caught.value)


def test_single_store_from_environment_without_a_file(tmp_path: Path) -> None:
    env = {"BRIDGE_STORE_PLATFORM": "shopify", "BRIDGE_STORE_WEBHOOK_SECRET": "new",
           "BRIDGE_STORE_WEBHOOK_SECRET_PREVIOUS": "old", "BRIDGE_STORE_API_KEY": "lty_k",
           "BRIDGE_STORE_API_SECRET": "s", "BRIDGE_STORE_LOCALE": "lt"}
    stores = load_stores(tmp_path / "missing.toml", env)
    assert list(stores) == ["default"]
    assert stores["default"].secrets == [b"new", b"old"]
    assert stores["default"].platform == "shopify"


def test_env_store_errors_name_the_variable_source() -> None:
    with pytest.raises(ConfigError, match=r"environment \(BRIDGE_STORE_\*\): store 'default': platform"):
        store_from_env({"BRIDGE_STORE_WEBHOOK_SECRET": "x", "BRIDGE_STORE_API_KEY": "k",
                        "BRIDGE_STORE_API_SECRET": "s"})


def test_nothing_configured_gives_no_stores(tmp_path: Path) -> None:
    stores = load_stores(tmp_path / "missing.toml", {})
    assert len(stores) == 0
    assert "nothing configured" in stores.source


def test_stores_sharing_an_api_key_must_not_share_references(tmp_path: Path) -> None:
    """Two WooCommerce shops on one Loyalty.lt key, both with the default WC-{number}: the second
    shop's order 4210 would find the first's award (409) and its refunds hit the first's customer."""
    second = GOOD.replace("[stores.coffee-woo]", "[stores.tea-woo]")
    env = {"WOO_SECRET": "s", "API_SECRET": "a"}
    with pytest.raises(ConfigError) as caught:
        load_stores_file(write(tmp_path, GOOD + second), env)
    message = str(caught.value)
    assert "'coffee-woo' and 'tea-woo' share a Loyalty.lt API key" in message and "\n" not in message
    assert "distinct reference_format" in message
    distinct = second + 'reference_format = "TEA-{number}"\n'
    assert sorted(load_stores_file(write(tmp_path, GOOD + distinct), env)) == ["coffee-woo", "tea-woo"]
    other_key = second.replace("lty_abc", "lty_other")
    assert len(load_stores_file(write(tmp_path, GOOD + other_key), env)) == 2
    # "{number}" can make anything "WC-{number}" makes.
    bare = second + 'reference_format = "{number}"\n'
    with pytest.raises(ConfigError, match="share a Loyalty.lt API key"):
        load_stores_file(write(tmp_path, GOOD + bare), env)


SHOP = """
[stores.s]
platform = "{platform}"
webhook_secrets = ["x"]
api_key = "lty_abc"
api_secret = "y"
{extra}
"""


@pytest.mark.parametrize(("platform", "extra", "error"), [
    ("woocommerce", 'shop_url = "https://coffee.example.com"', "shop_url needs shop_consumer_key and shop_consumer_secret"),
    ("woocommerce", 'shop_url = "https://c.example.com"\nshop_consumer_key = "ck"', "set both shop_consumer_key"),
    ("woocommerce", 'shop_consumer_key = "ck"\nshop_consumer_secret = "cs"', "need shop_url"),
    ("woocommerce", 'shop_url = "https://c.example.com"\nshop_access_token = "t"', "shop_access_token is for Shopify"),
    ("shopify", 'shop_url = "https://c.myshopify.com"\nshop_consumer_key = "a"\nshop_consumer_secret = "b"',
     "are for WooCommerce"),
    ("shopify", 'shop_url = "c.myshopify.com"\nshop_access_token = "t"', "shop_url must be an http"),
])
def test_shop_credentials_are_checked_with_one_line(tmp_path: Path, platform: str, extra: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        load_stores_file(write(tmp_path, SHOP.format(platform=platform, extra=extra)), {})


def test_shop_credentials_are_secret_and_interpolated(tmp_path: Path) -> None:
    extra = 'shop_url = "https://c.myshopify.com/"\nshop_access_token = "${SHOP_TOKEN}"'
    store = load_stores_file(write(tmp_path, SHOP.format(platform="shopify", extra=extra)),
                             {"SHOP_TOKEN": "shpat_live"})["s"]
    assert store.has_shop_api and store.shop_url == "https://c.myshopify.com"
    assert "shpat_live" not in repr(store) and store.shop_access_token.get_secret_value() == "shpat_live"  # type: ignore[union-attr]
    plain = load_stores_file(write(tmp_path, SHOP.format(platform="shopify", extra="")), {})["s"]
    assert not plain.has_shop_api
