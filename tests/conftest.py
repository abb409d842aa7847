"""Shared pytest set-up. Fixtures for the real parts live in tests/fixtures/, one module per part."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.register_assert_rewrite("tests.fixtures")

pytest_plugins = sorted(
    f"tests.fixtures.{p.stem}" for p in (Path(__file__).parent / "fixtures").glob("*.py") if p.stem != "__init__"
)
