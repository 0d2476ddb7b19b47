"""The bridge's Shopify queries against Shopify's own published Admin API schema.

The emulator answers the bridge's operations by name, so it cannot say whether a field exists in
the real API. This test does: every query and mutation the bridge sends must validate against the
schema Shopify published for the version the bridge asks for (fields, arguments, input fields,
variable types), and none may use a field Shopify marks deprecated.

The schema (3.4 MB of SDL, Shopify's introspection answer for 2026-04) is not ours to commit: it is
read from ``SHOPIFY_ADMIN_SCHEMA`` or from the workspace's shared material (``../shared/shopify-admin-
schema/``, with its source), and the test is skipped, saying so, where neither exists.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from graphql import GraphQLSchema, TypeInfo, TypeInfoVisitor, Visitor, build_schema, parse, validate, visit
from graphql.language import FieldNode

from config.settings import Settings
from workers.platforms.shopify import api, graphql as gql

VERSION = "2026-04"
CANDIDATES = [Path(os.environ["SHOPIFY_ADMIN_SCHEMA"])] if os.environ.get("SHOPIFY_ADMIN_SCHEMA") else []
CANDIDATES.append(Path(__file__).resolve().parents[3] / "shared" / "shopify-admin-schema"
                  / f"{VERSION}-admin-schema.graphql")
OPERATIONS = ["ORDERS_QUERY", "ORDER_QUERY", "ORDER_LINES_QUERY", "REFUND_QUERY", "CHECK_QUERY",
              "SUBSCRIPTIONS_QUERY", "SUBSCRIPTION_CREATE", "SUBSCRIPTION_UPDATE"]


@pytest.fixture(scope="module")
def schema() -> GraphQLSchema:
    found = next((p for p in CANDIDATES if p.is_file()), None)
    if found is None:
        pytest.skip(f"Shopify's published {VERSION} Admin schema is not on this machine "
                    f"(set SHOPIFY_ADMIN_SCHEMA; looked in {', '.join(map(str, CANDIDATES))})")
    return build_schema(found.read_text(), assume_valid=True)


def test_the_bridge_asks_for_the_version_it_is_checked_against() -> None:
    assert api.DEFAULT_API_VERSION == Settings.model_fields["shopify_api_version"].default == VERSION


@pytest.mark.parametrize("name", OPERATIONS)
def test_each_operation_is_valid_and_uses_nothing_deprecated(schema: GraphQLSchema, name: str) -> None:
    document = parse(getattr(gql, name))
    assert [e.message for e in validate(schema, document)] == []
    deprecated: list[str] = []
    info = TypeInfo(schema)

    class Deprecations(Visitor):
        def enter_field(self, node: FieldNode, *_: object) -> None:
            field, parent = info.get_field_def(), info.get_parent_type()
            if field is not None and field.deprecation_reason:
                deprecated.append(f"{parent}.{node.name.value}: {field.deprecation_reason}")

    visit(document, TypeInfoVisitor(info, Deprecations()))
    assert deprecated == []
