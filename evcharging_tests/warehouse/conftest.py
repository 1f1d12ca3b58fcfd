"""A fresh chDB warehouse in a temporary directory per test."""

from __future__ import annotations

import pytest

from evcharging.resources.warehouse import WarehouseResource

DB = "evtest"


@pytest.fixture
def warehouse(tmp_path) -> WarehouseResource:
    return WarehouseResource(chdb_path=str(tmp_path / "chdb"), database=DB)
