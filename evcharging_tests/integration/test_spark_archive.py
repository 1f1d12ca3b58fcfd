"""The class-data-sharing archive that ``evcharging stack install`` writes is mapped by a real
Spark driver of the project (see evcharging/stack/spark_archive.py)."""

from __future__ import annotations

import os
from pathlib import Path

from evcharging.stack.spark_archive import archive_path


def test_the_real_driver_maps_the_archive_that_install_wrote(spark, stack_settings):
    """The JVM checks an archive against its build and class path, and starts without it (with a
    warning only) when they differ: only its mapping in the process proves that it is used."""
    archive = archive_path(stack_settings.cache_dir, spark.sparkContext.getConf().get("spark.jars"))
    assert archive is not None and archive.exists(), f"`evcharging stack install` wrote no {archive}"
    pid = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
    mapped = {line.split()[-1] for line in Path(f"/proc/{pid}/maps").read_text().splitlines() if line.endswith(".jsa")}
    assert str(archive) in mapped, mapped
    assert os.path.getsize(archive) > 10_000_000  # Spark's classes, not a stub
