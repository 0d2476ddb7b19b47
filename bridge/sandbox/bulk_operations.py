"""An emulated Shopify shop's bulk query operations: status transitions, a JSONL file at its own URL.

As Shopify does (shopify.dev, "Perform bulk operations with the GraphQL Admin API"):

- ``bulkOperationRunQuery`` checks the query against the bulk rules (at least one connection, at
  most five, nested at most two levels, no top-level ``node``/``nodes``, the parent of a nested
  connection selecting ``id``) and answers ``userErrors`` (``INVALID``) when it breaks one;
- one bulk query at a time per shop: another while one is ``CREATED`` or ``RUNNING`` gets
  ``OPERATION_IN_PROGRESS``;
- the operation goes ``CREATED`` → ``RUNNING`` (``objectCount``/``rootObjectCount`` growing) →
  ``COMPLETED`` with ``url`` and ``fileSize``, in a thread of its own;
- the file: one JSON object a line, ``groupObjects`` off: the rows of the orders first, then those of
  their line items, shipping lines and discount applications, each with ``__parentId``; an order's
  refunds are a list on its own row (a connection within a list cannot be bulk-queried).

The emulator answers the bridge's query only: the rows carry every field the bridge asks for.
Failures are asked for through the state API (``POST /shopify/<shop>/_emulator/bulk``), each for the
next operation only: ``FAILED:<errorCode>``, ``CANCELED``, ``EXPIRED_URL`` (its address answers 403,
as a signed storage URL past its expiry does) and ``PARTIAL`` (the first download stops halfway);
``hold`` starts an operation that runs that many seconds (an earlier run's, holding the slot).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from graphql import parse
from graphql.language import FieldNode, OperationDefinitionNode, SelectionNode

# Connection fields of an order node whose rows go on lines of their own, and their rows' __typename
# (which the bridge's query asks for).
CHILD_CONNECTIONS = {"lineItems": "LineItem", "shippingLines": "ShippingLine", "discountApplications": ""}
FAILURES = {"FAILED:ACCESS_DENIED", "FAILED:INTERNAL_SERVER_ERROR", "FAILED:TIMEOUT", "CANCELED", "EXPIRED_URL",
            "PARTIAL"}
_FILTER = re.compile(r"updated_at:(>=|<=|>|<)'?([^' ]+)'?")


def _fields(selections: Any) -> list[FieldNode]:
    return [s for s in selections or () if isinstance(s, FieldNode)]


def _contents(field: FieldNode) -> list[FieldNode] | None:
    """The fields of one node of a connection (``edges { node }`` or ``nodes``), or None if not one."""
    inner = _fields(field.selection_set.selections) if field.selection_set else []
    for part in inner:
        if part.name.value == "nodes" and part.selection_set:
            return _fields(part.selection_set.selections)
        if part.name.value == "edges" and part.selection_set:
            for node in _fields(part.selection_set.selections):
                if node.name.value == "node" and node.selection_set:
                    return _fields(node.selection_set.selections)
            return []
    return None


def rule_errors(query: str) -> list[str]:
    """What a bulk query breaks of Shopify's rules, in Shopify's words (empty: it may run)."""
    try:
        document = parse(query)
    except Exception as exc:  # graphql-core's syntax error; Shopify says the same in a userError
        return [f"Invalid bulk query: {exc}"]
    operation = next((d for d in document.definitions if isinstance(d, OperationDefinitionNode)), None)
    if operation is None or operation.operation.value != "query":
        return ["Invalid operation type. Only `query` operations are supported."]
    errors: list[str] = []
    roots = _fields(operation.selection_set.selections)
    if any(f.name.value in ("node", "nodes") for f in roots):
        errors.append("Bulk queries cannot contain a top level `node` field.")
    count, deepest, orphans = 0, 0, []

    def walk(fields: list[FieldNode], depth: int, has_id: bool, parent: str) -> None:
        nonlocal count, deepest
        for field in fields:
            contents = _contents(field)
            if contents is None:
                if field.selection_set:
                    walk(_fields(field.selection_set.selections), depth, False, field.name.value)
                continue
            count += 1
            deepest = max(deepest, depth + 1)
            if depth >= 1 and not has_id:
                orphans.append(field.name.value)
            walk(contents, depth + 1, any(f.name.value == "id" and f.alias is None for f in contents), field.name.value)

    walk(roots, 0, False, "")
    if count > 5:
        errors.append("Bulk queries cannot contain more than 5 connections.")
    if deepest > 2:
        errors.append("Bulk queries cannot contain connections with a nesting depth greater than 2.")
    if orphans:
        errors.append("The parent 'node' field for a nested connection must select the 'id' field without an "
                      f"alias and must be of 'ID' return type. Connection fields without 'id': {', '.join(orphans)}.")
    if count == 0 and not errors:
        errors.append("Bulk queries must contain at least one connection.")
    return errors


def _compare(moment: datetime, op: str, bound: datetime) -> bool:
    return {">=": moment >= bound, "<=": moment <= bound, ">": moment > bound, "<": moment < bound}[op]


def matching(orders: list[dict[str, Any]], query: str) -> list[dict[str, Any]]:
    """The orders an ``orders(query: "updated_at:...")`` search finds, oldest change first."""
    bounds = _FILTER.findall(query)
    found = [o for o in orders if all(_compare(datetime.fromisoformat(o["updated_at"]), op,
                                                datetime.fromisoformat(value)) for op, value in bounds)]
    return sorted(found, key=lambda o: (datetime.fromisoformat(o["updated_at"]), o["id"]))


def rows_of(node: dict[str, Any]) -> list[dict[str, Any]]:
    """An order node as bulk rows: its own (refunds as a list of ids), then one per connection node."""
    own = {k: v for k, v in node.items() if k not in CHILD_CONNECTIONS}
    own["refunds"] = [{"id": r.get("id"), "createdAt": r.get("createdAt")} for r in node.get("refunds") or []]
    children = []
    for name, typename in CHILD_CONNECTIONS.items():
        for child in (node.get(name) or {}).get("nodes") or []:
            if name == "discountApplications":
                typename = "DiscountCodeApplication" if "code" in child else "ManualDiscountApplication"
            children.append({"__typename": typename, **child, "__parentId": node["id"]})
    return [own, *children]


class BulkOperations:
    """One shop's bulk query operations and their files."""

    def __init__(self, shop_name: str, url_for: Callable[[int], str], clock: Callable[[], datetime]) -> None:
        self.shop_name = shop_name
        self.url_for = url_for
        self.clock = clock
        self._lock = threading.Lock()
        self.operations: dict[int, dict[str, Any]] = {}
        self.files: dict[int, bytes] = {}
        self.fail_next: str | None = None
        self.downloads = 0
        self._next = 1

    def gid(self, number: int) -> str:
        return f"gid://shopify/BulkOperation/{number}"

    def _now(self) -> str:
        return self.clock().astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")

    def running(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self.node(n) for n, op in self.operations.items() if op["status"] in ("CREATED", "RUNNING")]

    def start(self, query: str, build: Callable[[str], list[list[dict[str, Any]]]] | None,
              hold: float = 0.0) -> dict[str, Any]:
        """``bulkOperationRunQuery``'s payload. ``build`` makes the rows, order by order, from the query."""
        errors = rule_errors(query)
        if errors:
            return {"bulkOperation": None,
                    "userErrors": [{"field": ["query"], "message": m, "code": "INVALID"} for m in errors]}
        with self._lock:
            if any(op["status"] in ("CREATED", "RUNNING") for op in self.operations.values()):
                return {"bulkOperation": None, "userErrors": [{
                    "field": None, "code": "OPERATION_IN_PROGRESS",
                    "message": "A bulk query operation for this app and shop is already in progress."}]}
            number = self._next
            self._next += 1
            failure, self.fail_next = self.fail_next, None
            self.operations[number] = {"status": "CREATED", "query": query, "createdAt": self._now(),
                                       "completedAt": None, "errorCode": None, "objectCount": 0,
                                       "rootObjectCount": 0, "fileSize": None, "failure": failure}
        threading.Thread(target=self._run, args=(number, build, hold), name=f"bulk-{self.shop_name}-{number}",
                         daemon=True).start()
        return {"bulkOperation": self.node(number), "userErrors": []}

    def _run(self, number: int, build: Callable[[str], list[list[dict[str, Any]]]] | None, hold: float) -> None:
        op = self.operations[number]
        with self._lock:
            op["status"] = "RUNNING"
        if hold:
            time.sleep(hold)
        lines: list[bytes] = []
        children: list[bytes] = []
        orders = build(op["query"]) if build else []
        # A failure (or a cancellation) comes halfway through.
        stop = len(orders) // 2 if (op["failure"] or "").startswith(("FAILED", "CANCELED")) else len(orders)
        for rows in orders[:stop]:
            own, *rest = rows
            lines.append(json.dumps(own, separators=(",", ":")).encode())
            children += [json.dumps(r, separators=(",", ":")).encode() for r in rest]
            with self._lock:
                op["rootObjectCount"] += 1
                op["objectCount"] += len(rows)
        # groupObjects off: the orders' rows first, their children after (not next to them).
        body = b"\n".join(lines + children) + b"\n" if lines else b""
        with self._lock:
            failure = op["failure"] or ""
            op["completedAt"] = self._now()
            if failure.startswith("FAILED"):
                op["status"], op["errorCode"] = "FAILED", failure.split(":", 1)[1]
            elif failure == "CANCELED":
                op["status"] = "CANCELED"
            else:
                op["status"] = "COMPLETED"
                op["fileSize"] = len(body)
                if body:
                    self.files[number] = body

    def node(self, number: int) -> dict[str, Any]:
        """The operation as ``bulkOperation(id:)`` answers it."""
        op = self.operations[number]
        done = op["status"] == "COMPLETED" and number in self.files
        return {"id": self.gid(number), "status": op["status"], "errorCode": op["errorCode"],
                "createdAt": op["createdAt"], "completedAt": op["completedAt"],
                "objectCount": str(op["objectCount"]), "rootObjectCount": str(op["rootObjectCount"]),
                "fileSize": str(op["fileSize"]) if op["fileSize"] is not None and done else None,
                "url": self.url_for(number) if done else None, "partialDataUrl": None, "query": op["query"],
                "type": "QUERY"}

    def find(self, gid: Any) -> dict[str, Any] | None:
        tail = str(gid or "").rsplit("/", 1)[-1]
        number = int(tail) if tail.isdigit() else 0
        with self._lock:
            return self.node(number) if number in self.operations else None

    def download(self, number: int) -> tuple[int, bytes]:
        """(status, body) of a GET of the file's address."""
        with self._lock:
            self.downloads += 1
            op = self.operations.get(number)
            body = self.files.get(number)
            if op is None or body is None:
                return 404, b"<Error><Code>NoSuchKey</Code></Error>"
            if op["failure"] == "EXPIRED_URL":
                return 403, b"<Error><Code>ExpiredToken</Code><Message>The provided token has expired.</Message></Error>"
            if op["failure"] == "PARTIAL":
                op["failure"] = None  # the next download is whole
                return 200, body[: len(body) // 2]
            return 200, body

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{k: v for k, v in self.node(n).items() if k != "query"} for n in self.operations]
