"""The requested cost of a GraphQL Admin API query, by the rules Shopify publishes.

Shopify computes a query's cost before running it ("GraphQL Admin API rate limits" on shopify.dev):
a scalar or enum field costs 0, an object 1, an interface or union the most expensive of its
possible selections, a connection 2 plus its ``first``/``last`` times the cost of one node, and a
mutation 10. A query whose requested cost exceeds the single-query limit (1,000) is refused as a
whole (``MAX_COST_EXCEEDED``) whatever the bucket holds, so a query that asks for 100 orders with
100 line items each never runs at all.

The emulator has no schema, so this reads the shape of the query itself: a field with a selection
set is an object; one with ``first`` or ``last`` is sized by it (a connection, or a list such as
``Order.refunds(first:)``, which Shopify sizes the same way); ``nodes``, ``edges``, ``node`` and
``pageInfo`` belong to their connection's 2; inline fragments on a union or interface cost the most
expensive of them. Variables are read for the sizes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from graphql import parse
from graphql.language import (
    FieldNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionNode,
    VariableNode,
)

SINGLE_QUERY_LIMIT = 1000
MUTATION_COST = 10
OBJECT_COST = 1
CONNECTION_COST = 2
# Parts of a connection that its own cost covers.
_CONNECTION_PARTS = {"edges", "node", "nodes", "pageInfo"}


def _size(field: FieldNode, variables: Mapping[str, Any]) -> int | None:
    """The field's ``first`` or ``last``, when it has one."""
    for argument in field.arguments or ():
        if argument.name.value not in ("first", "last"):
            continue
        value = argument.value
        if isinstance(value, IntValueNode):
            return int(value.value)
        if isinstance(value, VariableNode):
            given = variables.get(value.name.value)
            return int(given) if isinstance(given, int) else 0
    return None


def _selections_cost(selections: Iterable[SelectionNode], variables: Mapping[str, Any]) -> int:
    """What the selections of one object cost: its fields, plus the dearest of its type conditions."""
    total, alternatives = 0, [0]
    for selection in selections:
        if isinstance(selection, FieldNode):
            total += _field_cost(selection, variables)
        elif isinstance(selection, InlineFragmentNode):
            alternatives.append(_selections_cost(selection.selection_set.selections, variables))
        elif isinstance(selection, FragmentSpreadNode):
            raise ValueError("named fragments are not read here")
    return total + max(alternatives)


def _field_cost(field: FieldNode, variables: Mapping[str, Any]) -> int:
    if field.selection_set is None:
        return 0  # a scalar or an enum
    inner = field.selection_set.selections
    size = _size(field, variables)
    if size is None and field.name.value not in _CONNECTION_PARTS:
        return OBJECT_COST + _selections_cost(inner, variables)
    if size is None:  # nodes / edges / node of a connection already sized above
        return _selections_cost(inner, variables)
    node_cost = 0
    plain: list[SelectionNode] = []
    for selection in inner:
        if isinstance(selection, FieldNode) and selection.name.value in ("nodes", "edges"):
            node_cost = max(node_cost, _node_cost(selection, variables))
        elif isinstance(selection, FieldNode) and selection.name.value == "pageInfo":
            continue
        else:
            plain.append(selection)
    if plain:  # a list sized by `first` (no nodes/edges): its elements are the objects
        node_cost = max(node_cost, OBJECT_COST + _selections_cost(plain, variables))
    return CONNECTION_COST + size * node_cost


def _node_cost(part: FieldNode, variables: Mapping[str, Any]) -> int:
    """One node of a connection, reached through ``nodes`` or ``edges { node }``."""
    if part.selection_set is None:
        return OBJECT_COST
    if part.name.value == "edges":
        for selection in part.selection_set.selections:
            if isinstance(selection, FieldNode) and selection.name.value == "node" and selection.selection_set:
                return OBJECT_COST + _selections_cost(selection.selection_set.selections, variables)
        return OBJECT_COST
    return OBJECT_COST + _selections_cost(part.selection_set.selections, variables)


def requested_cost(query: str, variables: Mapping[str, Any] | None = None) -> int:
    """The cost Shopify would ask for ``query`` with ``variables`` (its first operation)."""
    document = parse(query)
    operation = next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))
    if operation.operation == OperationType.MUTATION:
        return MUTATION_COST
    # Fields skipped by `@include(if: false)` cost nothing.
    selections = [s for s in operation.selection_set.selections if _included(s, variables or {})]
    return _selections_cost(selections, variables or {})


def actual_cost(query: str, data: Any) -> int:
    """What the answer cost once run: the same rules, over the objects the answer holds.

    Shopify charges this, not the requested cost, once a query has run (the requested cost only has
    to be in the bucket for the query to start), so a short order is cheap whatever was asked for.
    """
    document = parse(query)
    operation = next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))
    if operation.operation == OperationType.MUTATION:
        return MUTATION_COST
    return _answer_cost(operation.selection_set.selections, data)


def _answer_cost(selections: Iterable[SelectionNode], data: Any) -> int:
    if not isinstance(data, dict):
        return 0
    total, alternatives = 0, [0]
    for selection in selections:
        if isinstance(selection, InlineFragmentNode):
            alternatives.append(_answer_cost(selection.selection_set.selections, data))
            continue
        if not isinstance(selection, FieldNode) or selection.selection_set is None:
            continue
        value = data.get((selection.alias or selection.name).value)
        inner = selection.selection_set.selections
        sized = _size(selection, {}) is not None
        if isinstance(value, list):
            total += (CONNECTION_COST if sized else 0) + sum(OBJECT_COST + _answer_cost(inner, v) for v in value)
        elif isinstance(value, dict) and sized and isinstance(value.get("nodes"), list):
            parts = [s for s in inner if isinstance(s, FieldNode) and s.name.value == "nodes"]
            node_selections = parts[0].selection_set.selections if parts and parts[0].selection_set else []
            total += CONNECTION_COST + sum(OBJECT_COST + _answer_cost(node_selections, v) for v in value["nodes"])
        elif isinstance(value, dict):
            total += OBJECT_COST + _answer_cost(inner, value)
    return total + max(alternatives)


def first_of(query: str, field: str, variables: Mapping[str, Any] | None = None) -> int | None:
    """The ``first``/``last`` the query gives the first field named ``field`` (for paging as asked)."""
    document = parse(query)
    stack: list[SelectionNode] = [s for d in document.definitions if isinstance(d, OperationDefinitionNode)
                                  for s in d.selection_set.selections]
    while stack:
        node = stack.pop(0)
        if isinstance(node, FieldNode) and node.name.value == field:
            return _size(node, variables or {})
        selection_set = getattr(node, "selection_set", None)
        if selection_set is not None:
            stack.extend(selection_set.selections)
    return None


def _included(selection: SelectionNode, variables: Mapping[str, Any]) -> bool:
    for directive in selection.directives or ():
        if directive.name.value not in ("include", "skip"):
            continue
        for argument in directive.arguments or ():
            value = argument.value
            flag = variables.get(value.name.value) if isinstance(value, VariableNode) else \
                getattr(value, "value", True)
            if bool(flag) != (directive.name.value == "include"):
                return False
    return True
