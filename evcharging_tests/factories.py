"""Hand-built contract events for tests (one place to follow the contract)."""

from __future__ import annotations

from simulator.events import SessionEventEncoder

T0_MS = 1767600000000  # 2026-01-05T08:00:00.000Z


def session_events(run_id: str, session_id: str, *, station_id: str = "EVS00001", vehicle_id: str = "V000001",
                   vehicle_model_id: str = "tesla-model-3",
                   n: int = 5, power_kw: float = 11.0, start_ms: int = T0_MS, step_s: int = 60,
                   end_reason: str | None = "target_soc") -> list[bytes]:
    """``n`` encoded events of one session: started, progress…, ended (unless ``end_reason`` is None)."""
    enc = SessionEventEncoder(run_id, session_id, station_id, f"{station_id}-1", vehicle_id, vehicle_model_id, "CCS", 0.0)
    events = []
    for seq in range(n):
        last = seq == n - 1 and end_reason is not None
        kind = "session_started" if seq == 0 else "session_ended" if last else "charging_progress"
        energy = round(power_kw * seq * step_s / 3600, 4)
        events.append(enc.encode(kind, seq, start_ms + seq * step_s * 1000, power_kw, energy, 20.0 + seq,
                                 end_reason if last else None))
    return events
