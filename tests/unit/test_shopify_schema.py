"""The bridge's Shopify queries against Shopify's own published Admin API schema.

The emulator answers the bridge's operations by name, so it cannot say whether a field exists in
the real API. This test does: every query and mutation the bridge sends must validate against the
schema Shopify published for the version the bridge asks for (fields, arguments, input fields,
variable types), and none may use a field Shopify marks deprecated. The backfill's bulk query must
also obey Shopify's rules for bulk queries, read here on the schema's own types.

The schema (3.4 MB of SDL, Shopify's introspection answer for 2026-04) is not ours to commit: it is
read from ``SHOPIFY_ADMIN_SCHEMA`` or from the workspace's shared material (``../shared/shopify-admin-
schema/``, with its source), and the test is skipped, saying so, where neither exists.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from graphql import (
    DocumentNode,
    GraphQLList,
    GraphQLSchema,
    TypeInfo,
    TypeInfoVisitor,
    Visitor,
    build_schema,
    get_named_type,
    get_nullable_type,
    parse,
    validate,
    visit,
)
from graphql.language import FieldNode, SelectionSetNode

from config.settings import Settings
from workers.platforms.shopify import api, bulk, graphql as gql

VERSION = "2026-04"
CANDIDATES = [Path(os.environ["SHOPIFY_ADMIN_SCHEMA"])] if os.environ.get("SHOPIFY_ADMIN_SCHEMA") else []
CANDIDATES.append(Path(__file__).resolve().parents[3] / "shared" / "shopify-admin-schema"
                  / f"{VERSION}-admin-schema.graphql")
OPERATIONS = [(gql, name) for name in ("ORDERS_QUERY", "ORDER_QUERY", "ORDER_LINES_QUERY", "REFUND_QUERY",
                                        "CHECK_QUERY", "SUBSCRIPTIONS_QUERY", "SUBSCRIPTION_CREATE",
                                        "SUBSCRIPTION_UPDATE")]
OPERATIONS += [(bulk, name) for name in ("BULK_RUN", "BULK_OPERATION", "BULK_RUNNING", "ORDERS_COUNT")]
BULK_QUERY = bulk.orders_query("updated_at:>='2026-09-01T00:00:00Z' AND updated_at:<='2026-12-01T00:00:01Z'")


@pytest.fixture(scope="module")
def schema() -> GraphQLSchema:
    found = next((p for p in CANDIDATES if p.is_file()), None)
    if found is None:
        pytest.skip(f"Shopify's published {VERSION} Admin schema is not on this machine "
                    f"(set SHOPIFY_ADMIN_SCHEMA; looked in {', '.join(map(str, CANDIDATES))})")
    return build_schema(found.read_text(), assume_valid=True)


def test_the_bridge_asks_for_the_version_it_is_checked_against() -> None:
    assert api.DEFAULT_API_VERSION == Settings.model_fields["shopify_api_version"].default == VERSION


def deprecated_fields(schema: GraphQLSchema, document: DocumentNode) -> list[str]:
    deprecated: list[str] = []
    info = TypeInfo(schema)

    class Deprecations(Visitor):
        def enter_field(self, node: FieldNode, *_: object) -> None:
            field, parent = info.get_field_def(), info.get_parent_type()
            if field is not None and field.deprecation_reason:
                deprecated.append(f"{parent}.{node.name.value}: {field.deprecation_reason}")

    visit(document, TypeInfoVisitor(info, Deprecations()))
    return deprecated


@pytest.mark.parametrize(("module", "name"), OPERATIONS, ids=[name for _, name in OPERATIONS])
def test_each_operation_is_valid_and_uses_nothing_deprecated(schema: GraphQLSchema, module: object,
                                                             name: str) -> None:
    document = parse(getattr(module, name))
    assert [e.message for e in validate(schema, document)] == []
    assert deprecated_fields(schema, document) == []


def test_the_bulk_query_is_valid_and_obeys_shopifys_bulk_rules(schema: GraphQLSchema) -> None:
    """shopify.dev, "Perform bulk operations with the GraphQL Admin API" (and its errors): one
    top-level field, not node/nodes; at least one connection and at most five; nested at most two
    levels; contents through edges { node }; the parent of a nested connection selects id; no
    connection within a list field."""
    document = parse(BULK_QUERY)
    assert [e.message for e in validate(schema, document)] == []
    assert deprecated_fields(schema, document) == []
    info = TypeInfo(schema)
    stack: list[tuple[bool, bool]] = []  # per enclosing field: (is a connection, is a list)
    connections: list[tuple[str, int]] = []
    broken: list[str] = []

    class BulkRules(Visitor):
        def enter_field(self, node: FieldNode, key: object, parent: object, path: object,
                        ancestors: list[object]) -> None:
            output = get_nullable_type(info.get_type())  # type: ignore[arg-type]
            # A connection's own edges are its list, not a list field around what it holds.
            is_list = isinstance(output, GraphQLList) and not (stack and stack[-1][0] and node.name.value == "edges")
            is_connection = get_named_type(output).name.endswith("Connection")  # type: ignore[arg-type]
            if is_connection:
                depth = 1 + sum(c for c, _ in stack)
                connections.append((node.name.value, depth))
                if any(listed for _, listed in stack):
                    broken.append(f"{node.name.value}: a connection within a list field")
                inner = {f.name.value for f in node.selection_set.selections if isinstance(f, FieldNode)} \
                    if node.selection_set else set()
                if "nodes" in inner or "edges" not in inner:
                    broken.append(f"{node.name.value}: contents not through edges {{ node }}")
                siblings = ancestors[-1]
                if depth > 1 and not (isinstance(siblings, SelectionSetNode) and any(
                        isinstance(f, FieldNode) and f.name.value == "id" and f.alias is None
                        for f in siblings.selections)):
                    broken.append(f"{node.name.value}: its parent node does not select id")
            stack.append((is_connection, is_list))

        def leave_field(self, *_: object) -> None:
            stack.pop()

    visit(document, TypeInfoVisitor(info, BulkRules()))
    roots = [f.name.value for f in document.definitions[0].selection_set.selections]  # type: ignore[attr-defined]
    assert roots == ["orders"]
    assert broken == []
    assert 1 <= len(connections) <= 5, connections
    assert max(depth for _, depth in connections) <= 2, connections
