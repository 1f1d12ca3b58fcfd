"""Kaggle-format rows for tests: a good station and vehicle, and CSV lines built from them."""

import csv
import io

from evcharging.reference.stations import STATION_COLUMNS
from evcharging.reference.vehicles import VEHICLE_COLUMNS

GOOD_STATION = dict(zip(STATION_COLUMNS, [
    "EVS00001", "-33.400998", "77.974972", "4826 Random Rd, City 98, Country", "AC Level 2", "0.27",
    "9:00-18:00", "4.95", "35", "EVgo", "350", "CCS, CHAdeMO", "2013", "Yes", "4.0", "7", "Annually",
], strict=True))  # fmt: skip
GOOD_VEHICLE = dict(zip(VEHICLE_COLUMNS, [
    "57.5", "Tesla Model 3", "https://ev-database.org/car/1991/Tesla-Model-3", "137", "700", "46220",
    "420", "201", "6.1",
], strict=True))  # fmt: skip


def line(fields) -> str:
    """One CSV record quoted like the Kaggle files (may span lines if a field holds a newline)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(fields)
    return out.getvalue()


def station(changes: dict | None = None) -> str:
    return line((GOOD_STATION | (changes or {})).values())


def vehicle(**changes) -> str:
    return line((GOOD_VEHICLE | changes).values())
