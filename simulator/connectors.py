"""Connectors by the names the reference data uses: which current each carries and its AC limit.

This is the one table both sides read: the reference loader (`evcharging.reference.stations`)
normalises a station whose connectors contradict its charger type against it, and the simulator's
physics (`simulator.model`) never lets a session draw more than a connector carries. It has no
dependencies, so importing it keeps the loader as light as importing the event contract.

AC limits are the connectors' own ratings, not what chargers usually offer:

- Type 1 (SAE J1772): single phase, 80 A at 240 V = 19.2 kW.
- Type 2 (IEC 62196-2): three phase, 63 A at 400 V = 43.5 kW (32 A, 22 kW, is the common charger).
- Tesla / NACS (SAE J3400): the same pins carry AC (80 A at 240 V = 19.2 kW) and DC; a Tesla
  destination charger is AC, a Supercharger DC.

DC connectors (CCS, CHAdeMO, GB/T) carry no AC on their DC pins: a car's CCS inlet takes AC
through its Type 1/Type 2 half, which the vehicle data lists as that connector.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Connector:
    """What one connector can carry: AC up to `ac_max_kw` (None: no AC), and DC or not."""

    ac_max_kw: float | None
    dc: bool

    def carries(self, dc: bool) -> bool:
        """Whether the connector carries the given current (DC if `dc`, else AC)."""
        return self.dc if dc else self.ac_max_kw is not None


CONNECTORS: dict[str, Connector] = {
    "Type 1": Connector(ac_max_kw=19.2, dc=False),
    "Type 2": Connector(ac_max_kw=43.5, dc=False),
    "CCS": Connector(ac_max_kw=None, dc=True),
    "CHAdeMO": Connector(ac_max_kw=None, dc=True),
    "GB/T": Connector(ac_max_kw=None, dc=True),
    "Tesla": Connector(ac_max_kw=19.2, dc=True),
    "NACS": Connector(ac_max_kw=19.2, dc=True),
}
# The connector a charger is given when none of its listed ones carries its current (keyed by "is
# DC"): every vehicle in the reference data has a Type 2 inlet, every DC vehicle but the CHAdeMO
# Nissans a CCS one.
DEFAULT_CONNECTOR = {False: "Type 2", True: "CCS"}


def carries(connector: str, dc: bool) -> bool:
    """Whether the named connector carries DC (`dc`) or AC; an unknown name carries nothing."""
    spec = CONNECTORS.get(connector)
    return spec is not None and spec.carries(dc)

