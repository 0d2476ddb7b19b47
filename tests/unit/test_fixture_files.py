"""The fixture folder keeps its promises: every body is valid JSON and every file is described in its README."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import FIXTURES

FILES = sorted(p for p in FIXTURES.glob("*/*") if p.is_file())
README = (FIXTURES / "README.md").read_text(encoding="utf-8")


def test_the_fixture_folders_are_found() -> None:
    assert {p.parent.name for p in FILES} >= {"woocommerce", "shopify", "loyalty"}


@pytest.mark.parametrize("path", [p for p in FILES if p.suffix == ".json"], ids=lambda p: f"{p.parent.name}/{p.name}")
def test_each_json_fixture_is_strict_json(path: Path) -> None:
    # Strict: no NaN/Infinity, which Python's json would otherwise accept and the platforms never send.
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    json.loads(path.read_bytes(), parse_constant=refuse)


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_each_fixture_is_listed_in_the_readme(path: Path) -> None:
    assert f"`{path.name}`" in README, f"{path.parent.name}/{path.name} has no entry in tests/fixtures/README.md"
