"""Hand-built lake rows for the warehouse and session tests: contract columns, Kafka coordinates
and ``event_date`` (rows as the stream writes them, not encoded events: see factories.py for those)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from evcharging.contracts import CONTRACT_VERSION, FIELDS, RESCUED_COLUMN
from simulator.events import event_id

T0 = datetime(2026, 1, 5, 8, 0, 0, 123000, tzinfo=UTC)
_SPARK_TYPES = {"string": "string", "int": "bigint", "float": "double", "timestamp": "timestamp"}


def lake_columns() -> list[tuple[str, str]]:
    cols = [(f.name, _SPARK_TYPES[f.kind]) for f in FIELDS]
    return cols + [(RESCUED_COLUMN, "string"), ("kafka_partition", "int"), ("kafka_offset", "bigint"),
                   ("event_date", "date")]


def session_events(session_id: str, n: int, *, run_id: str = "run-1", station_id: str = "EVS00001",
                   start: datetime = T0, step_s: float = 60.5, power: list[float] | None = None,
                   ended: bool = True, wait_s: float = 30.0, partition: int = 0, first_offset: int = 0,
                   model: str = "tesla-model-3", end_reason: str = "target_soc") -> list[dict]:
    """The ``n`` events of one session (seq 0..n-1); the last is session_ended when ``ended``."""
    power = power or [11.0 + i for i in range(n)]
    rows, energy = [], 0.0
    for seq in range(n):
        t = start + timedelta(seconds=step_s * seq)
        if seq:
            energy += power[seq - 1] * step_s / 3600
        kind = "session_started" if seq == 0 else "session_ended" if ended and seq == n - 1 else "charging_progress"
        rows.append({
            "contract_version": CONTRACT_VERSION, "event_id": event_id(run_id, session_id, seq), "event_type": kind,
            "run_id": run_id, "session_id": session_id, "seq": seq, "event_time": t, "station_id": station_id,
            "charger_id": f"{station_id}-1", "vehicle_id": f"V-{session_id}", "vehicle_model_id": model,
            "connector_type": "CCS", "power_kw": power[seq], "energy_kwh": round(energy, 4),
            "soc_pct": 20.0 + seq, "wait_s": wait_s, "end_reason": end_reason if kind == "session_ended" else None,
            RESCUED_COLUMN: None, "kafka_partition": partition, "kafka_offset": first_offset + seq, "event_date": t.date(),
        })  # fmt: skip
    return rows


def frame(spark, rows: list[dict]):
    cols = lake_columns()
    schema = ", ".join(f"`{n}` {t}" for n, t in cols)
    return spark.createDataFrame([tuple(r[n] for n, _ in cols) for r in rows], schema)
