"""Shopify's bulk operations, as a backfill reads a whole period of orders: one query, no cost per order.

``bulkOperationRunQuery`` hands Shopify one query over a connection; Shopify runs it in the
background and, once the operation is ``COMPLETED``, gives the address of a JSONL file: one object a
line, the rows of a nested connection after their parent (not necessarily next to it) naming it in
``__parentId``. The bridge polls ``bulkOperation(id:)`` (``currentBulkOperation`` is deprecated in
2026-04) and rebuilds each order with its line items, shipping lines and discount applications.

The query obeys Shopify's rules for bulk queries (checked in ``tests/unit/test_shopify_schema.py``):
at least one connection and at most five, nested at most two levels, contents selected through
``edges { node }``, no top-level ``node``/``nodes``, the parent of a nested connection selecting
``id``, and no connection inside a list field. ``Order.refunds`` is such a list, and a refund's line
items are a connection, so the file lists each refund's id only and the client reads each refund of
an order it has not seen at this version alone (:data:`~workers.platforms.shopify.graphql.REFUND_QUERY`).

What Shopify documents, and what the bridge does about it:

- one bulk query at a time per shop (an earlier run's still going, or the limit of the version):
  ``OPERATION_IN_PROGRESS``/``LIMIT_REACHED`` is waited out up to ``BRIDGE_SHOP_MAX_WAIT``, naming
  the operation in the way, then the run stops saying so;
- ``FAILED`` with its ``errorCode`` (``ACCESS_DENIED``: a person must grant ``read_orders``;
  ``TIMEOUT``, ``INTERNAL_SERVER_ERROR``: try again) and ``CANCELED``: the run stops, saying which;
- an address that no longer serves the file (expired: results are kept seven days): the query is
  run once more;
- a file shorter than ``fileSize``, cut mid-line or mid-transfer: downloaded once more, then the
  run stops. A partial file (``partialDataUrl`` of a failed operation) is never used: with
  ``groupObjects`` off nothing says which of its orders are whole.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import BaseModel

from workers.platforms.shopify import graphql as gql

# Statuses after which an operation changes no more.
FINISHED = {"COMPLETED", "FAILED", "CANCELED", "EXPIRED"}
# userErrors codes that mean "another bulk query holds the shop's slot".
BUSY_CODES = {"OPERATION_IN_PROGRESS", "LIMIT_REACHED"}
# Connections of an order in the bulk query, by the __typename of their rows (every row asks for it:
# discount applications have no id, and four types of them).
CHILDREN = {"LineItem": "lineItems", "ShippingLine": "shippingLines", "DiscountApplication": "discountApplications"}

OPERATION_FIELDS = "id status errorCode objectCount rootObjectCount fileSize url createdAt"

BULK_RUN = f"""mutation BridgeBulkRun($query: String!) {{
  bulkOperationRunQuery(query: $query, groupObjects: false) {{
    bulkOperation {{ {OPERATION_FIELDS} }}
    userErrors {{ field message code }}
  }}
}}"""

BULK_OPERATION = f"""query BridgeBulkOperation($id: ID!) {{
  bulkOperation(id: $id) {{ {OPERATION_FIELDS} }}
}}"""

# The app's bulk queries that hold the slot, to name the one in the way.
BULK_RUNNING = f"""query BridgeBulkRunning {{
  bulkOperations(first: 5, query: "operation_type:query AND (status:created OR status:running)") {{
    nodes {{ {OPERATION_FIELDS} }}
  }}
}}"""

ORDERS_COUNT = """query BridgeOrdersCount($query: String!) {
  ordersCount(query: $query, limit: null) { count }
}"""


def orders_query(search: str) -> str:
    """The bulk query of the orders matching ``search`` (a bulk query takes no variables)."""
    return f"""{{
  orders(query: {json.dumps(search)}, sortKey: UPDATED_AT) {{ edges {{ node {{ {gql.ORDER_SCALARS}
    refunds {{ id createdAt }}
    discountApplications {{ edges {{ node {{ __typename {gql.DISCOUNT_APPLICATION_FIELDS} }} }} }}
    lineItems {{ edges {{ node {{ __typename {gql.LINE_ITEM_FIELDS} }} }} }}
    shippingLines {{ edges {{ node {{ __typename {gql.SHIPPING_LINE_FIELDS} }} }} }}
  }} }} }}
}}"""


class BulkOperation(BaseModel):
    """A bulk operation as the bridge polls it."""

    id: str
    status: str
    error_code: str | None = None
    object_count: int = 0
    root_object_count: int = 0
    file_size: int | None = None
    url: str | None = None
    created_at: str | None = None

    @classmethod
    def from_node(cls, node: dict[str, Any]) -> BulkOperation:
        def number(name: str) -> int | None:
            raw = node.get(name)
            return int(raw) if isinstance(raw, (int, str)) and str(raw).isdigit() else None

        return cls(id=str(node.get("id")), status=str(node.get("status") or "?"),
                   error_code=node.get("errorCode"), object_count=number("objectCount") or 0,
                   root_object_count=number("rootObjectCount") or 0, file_size=number("fileSize"),
                   url=node.get("url") if isinstance(node.get("url"), str) else None,
                   created_at=node.get("createdAt") if isinstance(node.get("createdAt"), str) else None)

    def line(self) -> str:
        """What it is doing, for a progress bar: ``bulk operation RUNNING, 3400 orders so far``."""
        return f"bulk operation {self.status}, {self.root_object_count} orders so far"


def _kind(row: dict[str, Any]) -> str | None:
    """Which connection of its order a child row belongs to (its __typename is taken off)."""
    typename = str(row.pop("__typename", ""))
    return CHILDREN.get("DiscountApplication" if typename.endswith("Application") else typename)


def group(lines: Iterable[bytes]) -> dict[str, list[bytes]]:
    """The lines of a bulk result by order (its own line first, then its children's, in file order).

    Lines are kept as they came, about 3 KB an order, rather than parsed (six times that): a
    backfill holds the whole file before the first order is fed, since a child may come last.
    Raises ValueError for a line that is not an object, names a parent the file does not hold
    before it, or belongs to no connection the query asked for: such a file is not guessed at.
    """
    orders: dict[str, list[bytes]] = {}
    for line in lines:
        row = _row(line)
        parent = row.get("__parentId")
        if parent is None:
            orders[str(row.get("id"))] = [line]
        elif parent in orders and _kind(row) is not None:
            orders[parent].append(line)
        else:
            raise ValueError(f"a row of the result names {parent!r}, which is not an order before it, or is "
                             f"not a line item, shipping line or discount application ({str(row.get('id'))!r})")
    return orders


def assemble(lines: list[bytes]) -> dict[str, Any]:
    """One order node from its lines (see :func:`group`), each connection as ``{"nodes": [...]}``."""
    own, *children = (_row(line) for line in lines)
    node = {**own, **{name: {"nodes": []} for name in CHILDREN.values()}}
    for child in children:
        child.pop("__parentId", None)
        kind = _kind(child)
        assert kind is not None  # group() let no other row in
        node[kind]["nodes"].append(child)
    return node


def read_lines(chunks: Iterable[bytes], expected_size: int | None) -> Iterator[bytes]:
    """The lines of a JSONL download; raises :class:`PartialFile` when it stops short."""
    received, rest = 0, b""
    for chunk in chunks:
        received += len(chunk)
        *lines, rest = (rest + chunk).split(b"\n")
        yield from (line for line in lines if line.strip())
    if rest.strip():
        try:
            _row(rest)
        except ValueError:
            raise PartialFile(f"the file ends mid-line after {received} bytes") from None
        yield rest
    if expected_size is not None and received < expected_size:
        raise PartialFile(f"{received} of {expected_size} bytes arrived")


def _row(line: bytes) -> dict[str, Any]:
    row = json.loads(line)
    if not isinstance(row, dict):
        raise ValueError("a line of the file is not an object")
    return row


class PartialFile(Exception):
    """The result file arrived incomplete."""


class ExpiredFile(Exception):
    """The result's address no longer serves it."""
