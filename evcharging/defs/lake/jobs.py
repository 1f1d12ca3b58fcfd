"""Jobs the lake sensors launch (also runnable by hand from the UI)."""

import dagster as dg

publish_ingest_batches = dg.define_asset_job(
    "publish_ingest_batches", selection=dg.AssetSelection.assets("ingest_batch"),
    description="Audit one ingest batch and merge it into main when its blocking checks pass.")

refresh_lake_main = dg.define_asset_job(
    "refresh_lake_main", selection=dg.AssetSelection.assets("lake_main").downstream(),
    description="Record main's new head commit and load what it added into the warehouse.")
