"""One Dagster partition per lakeFS ingest branch (``ingest-<stream>-<batch>``), added by the sensor."""

import dagster as dg

ingest_batches = dg.DynamicPartitionsDefinition(name="ingest_batches")
