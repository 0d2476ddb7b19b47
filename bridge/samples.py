"""Realistic sample webhooks, for ``bridge send-test``: what a shop would send, signed like a shop.

Each call makes a new order (by default), so a test never collides with an earlier one.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bridge.signatures import sign
from config.stores import StoreConfig
from workers.platforms import ADAPTERS


@dataclass(frozen=True)
class Sample:
    """A signed webhook ready to post."""

    path: str
    body: bytes
    headers: dict[str, str]
    order_id: int
    description: str


def new_order_id() -> int:
    """An order id no earlier test used (time-based)."""
    return int(time.time() * 10) % 10**9


def _woocommerce(order_id: int, email: str, refund: bool) -> tuple[str, dict[str, Any]]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    order: dict[str, Any] = {
        "id": order_id, "number": str(order_id), "status": "processing", "currency": "EUR",
        "date_created": now, "date_paid": now, "total": "42.40", "total_tax": "7.36", "shipping_total": "3.30",
        "shipping_tax": "0.69", "discount_total": "0.00", "discount_tax": "0.00", "customer_id": 0,
        "billing": {"first_name": "Test", "last_name": "Customer", "email": email},
        "line_items": [
            {"id": 1, "name": "Coffee beans 1 kg", "product_id": 101, "variation_id": 0, "quantity": 2,
             "subtotal": "20.50", "subtotal_tax": "4.30", "total": "20.50", "total_tax": "4.30", "sku": "BEANS-1KG",
             "price": 10.25, "meta_data": []},
            {"id": 2, "name": "Coffee mug", "product_id": 102, "variation_id": 0, "quantity": 1,
             "subtotal": "11.24", "subtotal_tax": "2.37", "total": "11.24", "total_tax": "2.37", "sku": "MUG",
             "price": 11.24, "meta_data": []},
        ],
        "shipping_lines": [{"id": 3, "method_title": "Courier", "total": "3.30", "total_tax": "0.69"}],
        "fee_lines": [], "coupon_lines": [], "refunds": [], "meta_data": [],
    }
    if refund:
        order["refunds"] = [{"id": order_id + 1, "reason": "Mug arrived broken (send-test)", "total": "-13.61"}]
    return "order.updated", order


def _shopify(order_id: int, email: str, refund: bool) -> tuple[str, dict[str, Any]]:
    if refund:
        return "refunds/create", {
            "id": order_id + 1, "order_id": order_id, "note": "Mug arrived broken (send-test)",
            "created_at": datetime.now(UTC).isoformat(), "refund_line_items": [],
            "transactions": [{"kind": "refund", "status": "success", "amount": "13.61", "currency": "EUR"}],
        }
    number = order_id % 100000
    return "orders/paid", {
        "id": order_id, "name": f"#{number}", "order_number": number, "email": email, "currency": "EUR",
        "financial_status": "paid", "test": False, "taxes_included": True,
        "total_price": "42.40", "subtotal_price": "38.10", "total_tax": "7.36", "total_discounts": "0.00",
        "total_shipping_price_set": {"shop_money": {"amount": "4.30", "currency_code": "EUR"}},
        "shipping_lines": [{"title": "Courier", "price": "4.30", "tax_lines": [{"price": "0.75"}]}],
        "line_items": [
            {"id": 1, "product_id": 101, "title": "Coffee beans 1 kg", "quantity": 2, "price": "12.40",
             "sku": "BEANS-1KG", "gift_card": False, "total_discount": "0.00"},
            {"id": 2, "product_id": 102, "title": "Coffee mug", "quantity": 1, "price": "13.30", "sku": "MUG",
             "gift_card": False, "total_discount": "0.00"},
        ],
        "discount_codes": [], "customer": {"email": email},
    }


def sample_order(platform: str, order_id: int | None = None, email: str = "send-test@example.com") -> dict[str, Any]:
    """A paid order as the platform's webhooks (and API) carry it, e.g. for an emulated shop."""
    build = _woocommerce if platform == "woocommerce" else _shopify
    return build(order_id or new_order_id(), email, False)[1]


def sample_webhook(store: StoreConfig, event: str = "paid", order_id: int | None = None,
                   email: str = "send-test@example.com") -> Sample:
    """A signed sample delivery for ``store``: a paid order, or a partial refund of ``order_id``."""
    order_id = order_id or new_order_id()
    build = _woocommerce if store.platform == "woocommerce" else _shopify
    topic, payload = build(order_id, email, event == "refund")
    body = json.dumps(payload).encode()
    adapter = ADAPTERS[store.platform]
    headers = {
        "Content-Type": "application/json",
        adapter.SIGNATURE_HEADER: sign(body, store.secrets[0]),
        adapter.TOPIC_HEADER: topic,
    }
    if adapter.DELIVERY_HEADER:
        headers[adapter.DELIVERY_HEADER] = f"send-test-{time.time_ns()}"
    return Sample(path=f"/webhooks/{store.platform}/{store.id}", body=body, headers=headers, order_id=order_id,
                  description=f"{topic} for order {order_id}")
