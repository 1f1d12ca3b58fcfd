"""SimPy simulator of electric-vehicle charging sessions, streaming versioned events to Kafka.

Runs as its own process (`evcharging-sim`); it never imports the `evcharging` code location, which
imports only `simulator.events`, the event contract, and `simulator.connectors`, the connector table
its reference loader normalises stations against (both free of dependencies).
"""
