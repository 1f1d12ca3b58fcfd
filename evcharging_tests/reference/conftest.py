"""Fixtures for the reference-data tests: the Kaggle files (outside the project) and temp CSVs."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _kaggle_file(variable: str, name: str) -> Path:
    """The file from ``variable``, else ``../shared/data/<name>``; CI must have it, others may skip."""
    path = Path(os.environ.get(variable) or REPO.parent / "shared" / "data" / name)
    if not path.is_file():
        message = f"{name} not found at {path}; set {variable} to the Kaggle file"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def kaggle_stations_csv() -> Path:
    return _kaggle_file("EVCHARGING_STATIONS_CSV", "charging_stations.csv")


@pytest.fixture(scope="session")
def kaggle_vehicles_csv() -> Path:
    return _kaggle_file("EVCHARGING_VEHICLES_CSV", "electric_vehicles_2021.csv")


@pytest.fixture
def write_csv(tmp_path):
    """Write CSV lines (a list of str, header first) as the Kaggle files are written: CRLF."""

    def write(name: str, lines: list[str]) -> Path:
        path = tmp_path / name
        path.write_bytes("\r\n".join(lines).encode())
        return path

    return write
