"""Shopify's GraphQL Admin API orders, translated into the REST/webhook JSON the adapter reads.

The GraphQL order differs in shape from the webhook's: money is a ``MoneyBag`` (``shopMoney`` and
``presentmentMoney``, amounts as decimal strings such as ``"49.5"``), ids are ``gid://`` URIs
(``legacyResourceId`` is the REST id), enums are upper case, and lists are connections. This module
holds the bridge's queries and turns each order node back into what Shopify's webhooks carry:

- the order (``orders/paid`` when it is paid, ``orders/cancelled`` when it is cancelled), with money
  as strings with two decimals and every ``*_set`` with both ``shop_money`` and ``presentment_money``;
- one ``refunds/create`` payload per refund, oldest first, with ``order_id``.

Plain money fields are in the shop's currency (``shopMoney``), as in REST; a refund transaction's
``amount``/``currency`` are in the currency it was paid in (``presentmentMoney``). Refunded shipping
(``refundShippingLines``) becomes a ``shipping_refund`` order adjustment with negative amounts and
other adjustments ``refund_discrepancy`` ones, the shape of the REST payloads in
``tests/fixtures/shopify``. The translation is lenient: a field missing from the node is missing from
the payload, so the adapter names it, exactly as it would for a webhook without it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from workers.platforms.shopify.webhooks import order_deliveries

CENT = Decimal("0.01")

MONEY = "{ shopMoney { amount currencyCode } presentmentMoney { amount currencyCode } }"
TAX_LINES = f"taxLines {{ title rate channelLiable priceSet {MONEY} }}"
ALLOCATIONS = f"discountAllocations {{ allocatedAmountSet {MONEY} discountApplication {{ index }} }}"
LINE_ITEM_FIELDS = f"""
  id name title quantity currentQuantity sku vendor variantTitle isGiftCard taxable requiresShipping
  originalUnitPriceSet {MONEY} totalDiscountSet {MONEY}
  {ALLOCATIONS}
  {TAX_LINES}
  product {{ legacyResourceId }} variant {{ legacyResourceId }}"""

# Shopify refuses a query whose requested cost is over 1,000 points before running it, and sizes
# every connection by its `first` (2 + first × one node). So the orders of a window are listed by
# id (about 100 points a page), and each order is read alone (about 550 points), its refunds each
# alone (about 480): a page of 25 whole orders would ask for millions. Line items and refund line
# items past these pages are read with `after`. bridge.sandbox.query_cost computes these costs.
LINE_ITEMS_FIRST = 20
REFUND_LINES_FIRST = 25
ORDERS_FIRST = 100
REFUNDS_FIRST = 50  # Order.refunds is a plain list: no cursor, so ask for as many as an order has

# The order's own fields and those of its line items, shipping lines and discount applications,
# shared by the query of one order and the bulk query (which lists connections another way).
ORDER_SCALARS = f"""
  id legacyResourceId name number email createdAt updatedAt processedAt closedAt cancelledAt cancelReason test
  displayFinancialStatus currencyCode presentmentCurrencyCode taxesIncluded
  customer {{ id legacyResourceId defaultEmailAddress {{ emailAddress }} }}
  totalPriceSet {MONEY} subtotalPriceSet {MONEY} totalTaxSet {MONEY} totalDiscountsSet {MONEY}
  totalShippingPriceSet {MONEY} currentTotalPriceSet {MONEY} currentSubtotalPriceSet {MONEY}
  currentTotalTaxSet {MONEY} currentTotalDiscountsSet {MONEY}"""
DISCOUNT_APPLICATION_FIELDS = """
    index targetType allocationMethod targetSelection
    value { __typename ... on MoneyV2 { amount currencyCode } ... on PricingPercentageValue { percentage } }
    ... on DiscountCodeApplication { code }"""
SHIPPING_LINE_FIELDS = f"""
    id title code source originalPriceSet {MONEY} discountedPriceSet {MONEY} {TAX_LINES} {ALLOCATIONS}"""

ORDER_FIELDS = f"""{ORDER_SCALARS}
  discountApplications(first: 10) {{ nodes {{ {DISCOUNT_APPLICATION_FIELDS} }} }}
  lineItems(first: {LINE_ITEMS_FIRST}) {{ pageInfo {{ hasNextPage endCursor }} nodes {{ {LINE_ITEM_FIELDS} }} }}
  shippingLines(first: 5) {{ nodes {{ {SHIPPING_LINE_FIELDS} }} }}
  refunds(first: {REFUNDS_FIRST}) {{ id createdAt }}"""

REFUND_FIELDS = f"""
  id legacyResourceId createdAt note totalRefundedSet {MONEY}
  transactions(first: 10) {{ nodes {{ id kind status gateway processedAt createdAt amountSet {MONEY} }} }}
  refundLineItems(first: {REFUND_LINES_FIRST}, after: $after) {{ pageInfo {{ hasNextPage endCursor }} nodes {{
    id quantity restockType priceSet {MONEY} subtotalSet {MONEY} totalTaxSet {MONEY} lineItem {{ id }} }} }}
  orderAdjustments(first: 10) {{ nodes {{ id reason amountSet {MONEY} taxAmountSet {MONEY} }} }}
  refundShippingLines(first: 10) {{ nodes {{
    id subtotalAmountSet {MONEY} taxAmountSet {MONEY} shippingLine {{ id title }} }} }}"""

ORDERS_QUERY = """query BridgeOrders($first: Int!, $after: String, $query: String!, $withCount: Boolean!) {
  ordersCount(query: $query, limit: null) @include(if: $withCount) { count }
  orders(first: $first, after: $after, sortKey: UPDATED_AT, query: $query) {
    pageInfo { hasNextPage endCursor }
    nodes { id updatedAt }
  }
}"""

ORDER_QUERY = f"""query BridgeOrder($id: ID!) {{
  order(id: $id) {{ {ORDER_FIELDS} }}
}}"""

ORDER_LINES_QUERY = f"""query BridgeOrderLines($id: ID!, $after: String) {{
  order(id: $id) {{
    lineItems(first: {LINE_ITEMS_FIRST}, after: $after) {{ pageInfo {{ hasNextPage endCursor }} nodes {{ {LINE_ITEM_FIELDS} }} }}
  }}
}}"""

REFUND_QUERY = f"""query BridgeRefund($id: ID!, $after: String) {{
  refund(id: $id) {{ {REFUND_FIELDS} }}
}}"""

CHECK_QUERY = """query BridgeCheck {
  shop { name myshopifyDomain currencyCode }
  currentAppInstallation { accessScopes { handle } }
}"""

# Since 2025-10 a subscription's address is `uri` (an HTTPS URL here); `callbackUrl` and `endpoint`
# are deprecated.
SUBSCRIPTION_FIELDS = "id topic format uri"
SUBSCRIPTIONS_QUERY = f"""query BridgeWebhooks($after: String) {{
  webhookSubscriptions(first: 100, after: $after) {{ pageInfo {{ hasNextPage endCursor }} nodes {{ {SUBSCRIPTION_FIELDS} }} }}
}}"""
SUBSCRIPTION_CREATE = f"""mutation BridgeWebhookCreate($topic: WebhookSubscriptionTopic!, $url: String!) {{
  webhookSubscriptionCreate(topic: $topic, webhookSubscription: {{ uri: $url, format: JSON }}) {{
    webhookSubscription {{ {SUBSCRIPTION_FIELDS} }}
    userErrors {{ field message }}
  }}
}}"""
SUBSCRIPTION_UPDATE = f"""mutation BridgeWebhookUpdate($id: ID!, $url: String!) {{
  webhookSubscriptionUpdate(id: $id, webhookSubscription: {{ uri: $url, format: JSON }}) {{
    webhookSubscription {{ {SUBSCRIPTION_FIELDS} }}
    userErrors {{ field message }}
  }}
}}"""


# --- small translations ----------------------------------------------------------------------------

def legacy_id(gid: Any) -> int | None:
    """``gid://shopify/Order/123`` → 123."""
    if not isinstance(gid, str):
        return None
    tail = gid.rsplit("/", 1)[-1].split("?", 1)[0]
    return int(tail) if tail.isdigit() else None


def amount(value: Any) -> str | None:
    """A GraphQL Decimal (``"49.5"``) as REST writes money: ``"49.50"`` (more decimals are kept)."""
    if value is None:
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    return str(number.quantize(CENT) if number == number.quantize(CENT) else number)


def number(value: Any) -> float | None:
    """REST's numeric money fields (refund line items' ``subtotal``/``total_tax``)."""
    text = amount(value)
    return float(text) if text is not None else None


def money_set(bag: Any) -> dict[str, Any] | None:
    """A MoneyBag as REST's ``*_set``."""
    if not isinstance(bag, dict):
        return None
    out: dict[str, Any] = {}
    for gql, rest in (("shopMoney", "shop_money"), ("presentmentMoney", "presentment_money")):
        money = bag.get(gql)
        if isinstance(money, dict):
            out[rest] = {"amount": amount(money.get("amount")), "currency_code": money.get("currencyCode")}
    return out


def shop_amount(bag: Any) -> str | None:
    """The shop-currency amount of a MoneyBag (REST's plain money field)."""
    if isinstance(bag, dict) and isinstance(bag.get("shopMoney"), dict):
        return amount(bag["shopMoney"].get("amount"))
    return None


def lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def rest_time(value: Any) -> Any:
    """GraphQL DateTimes are UTC with ``Z``; REST writes an offset."""
    if isinstance(value, str) and value.endswith("Z"):
        return value[:-1] + "+00:00"
    return value


def nodes(connection: Any) -> list[dict[str, Any]]:
    """The nodes of a connection (or a plain list), ignoring anything that is not an object."""
    items = connection.get("nodes", []) if isinstance(connection, dict) else connection
    return [n for n in items or [] if isinstance(n, dict)]


def _priced(fields: dict[str, Any], name: str, bag: Any) -> None:
    """``name`` and ``name_set`` from one MoneyBag, when the node has it."""
    if bag is not None:
        fields[name] = shop_amount(bag)
        fields[f"{name}_set"] = money_set(bag)


def _tax_lines(raw: Any) -> list[dict[str, Any]]:
    return [{"price": shop_amount(t.get("priceSet")), "price_set": money_set(t.get("priceSet")), "rate": t.get("rate"),
             "title": t.get("title"), "channel_liable": t.get("channelLiable")} for t in nodes(raw)]


def _allocations(raw: Any) -> list[dict[str, Any]]:
    return [{"amount": shop_amount(a.get("allocatedAmountSet")), "amount_set": money_set(a.get("allocatedAmountSet")),
             "discount_application_index": (a.get("discountApplication") or {}).get("index")} for a in nodes(raw)]


def _related_id(node: Any) -> int | None:
    if not isinstance(node, dict):
        return None
    raw = node.get("legacyResourceId")
    return int(raw) if isinstance(raw, str) and raw.isdigit() else legacy_id(node.get("id"))


def line_item(node: dict[str, Any]) -> dict[str, Any]:
    """A LineItem as REST's ``line_items[]`` entry."""
    item: dict[str, Any] = {"id": legacy_id(node.get("id")), "admin_graphql_api_id": node.get("id")}
    for gql, rest in (("name", "name"), ("title", "title"), ("quantity", "quantity"),
                      ("currentQuantity", "current_quantity"), ("sku", "sku"), ("vendor", "vendor"),
                      ("variantTitle", "variant_title"), ("isGiftCard", "gift_card"), ("taxable", "taxable"),
                      ("requiresShipping", "requires_shipping")):
        if gql in node:
            item[rest] = node[gql]
    _priced(item, "price", node.get("originalUnitPriceSet"))
    _priced(item, "total_discount", node.get("totalDiscountSet"))
    item["product_id"] = _related_id(node.get("product"))
    item["variant_id"] = _related_id(node.get("variant"))
    item["tax_lines"] = _tax_lines(node.get("taxLines"))
    item["discount_allocations"] = _allocations(node.get("discountAllocations"))
    return item


def shipping_line(node: dict[str, Any]) -> dict[str, Any]:
    """A ShippingLine as REST's ``shipping_lines[]`` entry."""
    line: dict[str, Any] = {"id": legacy_id(node.get("id")), "title": node.get("title"), "code": node.get("code"),
                            "source": node.get("source")}
    _priced(line, "price", node.get("originalPriceSet"))
    _priced(line, "discounted_price", node.get("discountedPriceSet"))
    line["tax_lines"] = _tax_lines(node.get("taxLines"))
    line["discount_allocations"] = _allocations(node.get("discountAllocations"))
    return line


def _negated(bag: Any) -> Any:
    """A MoneyBag with its amounts negated (refunded shipping is a negative order adjustment in REST)."""
    if not isinstance(bag, dict):
        return bag
    out = {}
    for side, money in bag.items():
        if isinstance(money, dict) and money.get("amount") is not None:
            out[side] = {**money, "amount": str(-Decimal(str(money["amount"])))}
        else:
            out[side] = money
    return out


def _adjustment(order_id: int | None, refund_id: int | None, node: dict[str, Any], kind: str, reason: str,
                amount_bag: Any, tax_bag: Any) -> dict[str, Any]:
    return {"id": legacy_id(node.get("id")), "order_id": order_id, "refund_id": refund_id,
            "amount": shop_amount(amount_bag), "tax_amount": shop_amount(tax_bag), "kind": kind, "reason": reason,
            "amount_set": money_set(amount_bag), "tax_amount_set": money_set(tax_bag)}


def refund(node: dict[str, Any], order_id: int | None,
           lines: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """A Refund as the ``refunds/create`` payload; ``lines`` are the order's line items by gid, which
    the refund's line items name (the query asks only for their id, to stay under the cost limit)."""
    refund_id = _related_id(node)
    transactions = []
    for t in nodes(node.get("transactions")):
        presentment = (t.get("amountSet") or {}).get("presentmentMoney") or {}
        transactions.append({"id": legacy_id(t.get("id")), "admin_graphql_api_id": t.get("id"),
                             "order_id": order_id, "kind": lower(t.get("kind")), "status": lower(t.get("status")),
                             "amount": amount(presentment.get("amount")), "currency": presentment.get("currencyCode"),
                             "gateway": t.get("gateway"), "processed_at": rest_time(t.get("processedAt")),
                             "created_at": rest_time(t.get("createdAt"))})
    line_items = []
    for r in nodes(node.get("refundLineItems")):
        named = r.get("lineItem") if isinstance(r.get("lineItem"), dict) else None
        line = (lines or {}).get(str(named.get("id"))) if named else None
        if named and line is None:
            line = line_item(named)
        line_items.append({"id": legacy_id(r.get("id")), "line_item_id": line["id"] if line else None,
                           "quantity": r.get("quantity"), "restock_type": lower(r.get("restockType")),
                           "subtotal": number(shop_amount(r.get("subtotalSet"))), "subtotal_set": money_set(r.get("subtotalSet")),
                           "total_tax": number(shop_amount(r.get("totalTaxSet"))),
                           "total_tax_set": money_set(r.get("totalTaxSet")), "line_item": line})
    adjustments = [_adjustment(order_id, refund_id, a, "refund_discrepancy", "Refund discrepancy",
                               a.get("amountSet"), a.get("taxAmountSet"))
                   for a in nodes(node.get("orderAdjustments"))]
    adjustments += [_adjustment(order_id, refund_id, s, "shipping_refund", "Shipping refund",
                                _negated(s.get("subtotalAmountSet")), _negated(s.get("taxAmountSet")))
                    for s in nodes(node.get("refundShippingLines"))]
    adjustments.sort(key=lambda a: a["id"] or 0)
    return {"id": refund_id, "admin_graphql_api_id": node.get("id"), "order_id": order_id,
            "created_at": rest_time(node.get("createdAt")), "note": node.get("note"),
            "transactions": transactions, "refund_line_items": line_items, "order_adjustments": adjustments,
            "refund_shipping_lines": []}


def _discount_codes(order: dict[str, Any], lines: Iterable[dict[str, Any]],
                    shipping: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """REST's ``discount_codes`` (code, money taken off by it, type) and ``discount_applications``."""
    applications = nodes(order.get("discountApplications"))
    allocated: dict[int, Decimal] = {}
    for entry in [*lines, *shipping]:
        for allocation in entry.get("discount_allocations", []):
            index, value = allocation.get("discount_application_index"), allocation.get("amount")
            if isinstance(index, int) and value is not None:
                allocated[index] = allocated.get(index, Decimal(0)) + Decimal(value)
    codes, rest_applications = [], []
    for position, app in enumerate(applications):
        index = app.get("index", position)
        value = app.get("value") or {}
        percentage = value.get("__typename") == "PricingPercentageValue" or "percentage" in value
        target = lower(app.get("targetType"))
        rest_applications.append({
            "target_type": target, "type": "discount_code" if "code" in app else "manual",
            "value": str(value.get("percentage")) if percentage else amount(value.get("amount")),
            "value_type": "percentage" if percentage else "fixed_amount",
            "allocation_method": lower(app.get("allocationMethod")), "target_selection": lower(app.get("targetSelection")),
            **({"code": app["code"]} if "code" in app else {})})
        if "code" in app:
            kind = "shipping" if target == "shipping_line" else ("percentage" if percentage else "fixed_amount")
            codes.append({"code": app["code"], "amount": amount(allocated.get(index, Decimal(0))), "type": kind})
    return codes, rest_applications


def order(node: dict[str, Any]) -> dict[str, Any]:
    """An Order node (its line items all present) as the REST order the webhooks carry."""
    order_id = _related_id(node)
    lines = [line_item(n) for n in nodes(node.get("lineItems"))]
    by_gid = {str(line["admin_graphql_api_id"]): line for line in lines}
    shipping = [shipping_line(n) for n in nodes(node.get("shippingLines"))]
    codes, applications = _discount_codes(node, lines, shipping)
    order_number = node.get("number")
    customer = node.get("customer")
    rest: dict[str, Any] = {
        "id": order_id, "admin_graphql_api_id": node.get("id"), "name": node.get("name"),
        "order_number": order_number,
        # REST's `number` counts from 1 where order_number counts from 1001.
        "number": order_number - 1000 if isinstance(order_number, int) and order_number > 1000 else order_number,
        "email": node.get("email"),
        "created_at": rest_time(node.get("createdAt")), "updated_at": rest_time(node.get("updatedAt")),
        "processed_at": rest_time(node.get("processedAt")), "closed_at": rest_time(node.get("closedAt")),
        "cancelled_at": rest_time(node.get("cancelledAt")), "cancel_reason": lower(node.get("cancelReason")),
        "test": node.get("test"), "financial_status": lower(node.get("displayFinancialStatus")),
        "currency": node.get("currencyCode"), "presentment_currency": node.get("presentmentCurrencyCode"),
        "taxes_included": node.get("taxesIncluded"),
        "customer": {"id": _related_id(customer), "email": _customer_email(customer),
                     "admin_graphql_api_id": customer.get("id")} if isinstance(customer, dict) else None,
        "discount_codes": codes, "discount_applications": applications,
        "line_items": lines, "shipping_lines": shipping,
        "refunds": [refund(r, order_id, by_gid) for r in _oldest_first(nodes(node.get("refunds")))],
    }
    for gql, name in (("totalPriceSet", "total_price"), ("subtotalPriceSet", "subtotal_price"),
                      ("totalTaxSet", "total_tax"), ("totalDiscountsSet", "total_discounts"),
                      ("currentTotalPriceSet", "current_total_price"),
                      ("currentSubtotalPriceSet", "current_subtotal_price"),
                      ("currentTotalTaxSet", "current_total_tax"),
                      ("currentTotalDiscountsSet", "current_total_discounts")):
        _priced(rest, name, node.get(gql))
    if node.get("totalShippingPriceSet") is not None:
        rest["total_shipping_price_set"] = money_set(node["totalShippingPriceSet"])
    # Identity fields the node lacks are left out, so the adapter names what is missing, as it
    # would for a webhook without them.
    return {k: v for k, v in rest.items() if not (v is None and k in _IDENTITY)}


_IDENTITY = {"id", "name", "order_number", "number", "currency"}


def _customer_email(customer: dict[str, Any]) -> Any:
    """``defaultEmailAddress.emailAddress`` (``Customer.email`` is deprecated since 2025-04)."""
    address = customer.get("defaultEmailAddress")
    if isinstance(address, dict):
        return address.get("emailAddress")
    return customer.get("email")


def _oldest_first(refunds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def key(r: dict[str, Any]) -> tuple[str, int]:
        return str(r.get("createdAt") or ""), _related_id(r) or 0

    return sorted(refunds, key=key)


def deliveries(node: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The webhook deliveries that describe an order's state: paid, each refund, cancelled."""
    return order_deliveries(order(node))


def updated_at(node: dict[str, Any]) -> datetime | None:
    raw = node.get("updatedAt")
    try:
        return datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        return None
