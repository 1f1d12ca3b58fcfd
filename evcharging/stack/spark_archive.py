"""A class-data-sharing archive of the Spark driver's classes (AppCDS), so a batch JVM starts faster.

Every sessions pass is its own Dagster run, so it starts its own Spark JVM. That JVM spends
its start loading and verifying Spark's classes, and then the pass's first query loads Janino and
the code generator the same way. Measured on the 2-core host (a pass of 300 sessions, alone):
Spark's start 12.5 → 6.5 s and 21 → 11 CPU-s, the first summary 14.9 → 9.8 s, with the archive.

JDK 17 writes a dynamic archive when a JVM started with ``-XX:ArchiveClassesAtExit`` exits
normally. ``evcharging stack install`` runs one small sessions summary (``python -m
evcharging.stack.spark_archive OUT CACHE_DIR``) to write one, keyed by what the archive depends on. Drivers
then map it with ``-XX:SharedArchiveFile`` (see ``evcharging.resources.spark.with_class_archive``).
The JVM checks the archive against its own build and class path. If they differ it warns once and
starts without the archive, so a stale archive costs speed, never a run.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

ARCHIVE_NAME = "spark.jsa"


def java_binary() -> Path | None:
    """The java that pyspark's launcher starts: ``$JAVA_HOME/bin/java``, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    found = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    return Path(found).resolve() if found and Path(found).exists() else None


def _spark_home() -> Path:
    if os.environ.get("SPARK_HOME"):
        return Path(os.environ["SPARK_HOME"])
    import pyspark

    return Path(pyspark.__file__).parent


def archive_key(extra_jars: str) -> str | None:
    """A digest of what the archive is only valid for: the JVM's binary, and every jar on the
    driver's class path and in ``spark.jars`` (path, size, mtime: what the JVM checks too)."""
    java = java_binary()
    if java is None:
        return None
    jars = sorted((_spark_home() / "jars").glob("*.jar")) + [Path(j) for j in extra_jars.split(",") if j]
    h = hashlib.sha256()
    for path in [java, *jars]:
        try:
            st = path.stat()
        except OSError:
            return None
        h.update(f"{path}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:12]


def archive_path(cache_dir: Path, extra_jars: str) -> Path | None:
    """Where the archive for this JVM and these jars lives (None without a java)."""
    key = archive_key(extra_jars)
    return cache_dir / f"spark-class-archive-{key}" / ARCHIVE_NAME if key else None


def training_events(sessions: int = 50, events_per_session: int = 6):
    """Complete sessions as the warehouse hands them to a sessions pass (Arrow, contract columns)."""
    import pyarrow as pa

    from evcharging.contracts import FIELDS

    t0 = datetime(2026, 1, 5, 8, tzinfo=UTC)
    rows = []
    for s in range(sessions):
        for seq in range(events_per_session):
            last = seq == events_per_session - 1
            values = {"string": f"s{s}", "int": seq, "float": 10.0 + seq, "timestamp": t0 + timedelta(minutes=seq)}
            row = {f.name: values[f.kind] for f in FIELDS}
            row.update(event_id=f"s{s}-{seq}", session_id=f"s{s}", contract_version=1,
                       event_type="session_started" if seq == 0 else "session_ended" if last else "charging_progress",
                       end_reason="target_soc" if last else None)
            rows.append(row)
    return pa.Table.from_pylist(rows)


def train(out: Path, cache_dir: Path, timeout: float = 300) -> None:
    """Start a local driver the way a sessions pass does, summarise a few sessions, and exit so the
    JVM writes its classes to ``out``."""
    from dagster_pyspark.resources import spark_session_from_config

    from evcharging.resources.spark import spark_config
    from evcharging.settings import load_settings
    from evcharging.stack.builds import spark_jars_option
    from evcharging.warehouse.load import summarise_sessions

    config = spark_config(load_settings()) | {
        "spark.master": "local[2]", "spark.app.name": "evcharging-class-archive",
        "spark.jars": spark_jars_option(cache_dir)}
    config["spark.driver.extraJavaOptions"] = " ".join(
        [config.get("spark.driver.extraJavaOptions", ""), f"-XX:ArchiveClassesAtExit={out}"]).strip()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    spark = spark_session_from_config(config)
    summarise_sessions(spark, training_events(), "0" * 64)
    jvm = spark.sparkContext._gateway.proc
    spark.stop()
    jvm.stdin.close()  # pyspark's gateway exits normally on EOF: that is when the JVM dumps
    jvm.wait(timeout=timeout)
    if not out.exists() or out.stat().st_size == 0:
        raise RuntimeError(f"the Spark JVM exited ({jvm.returncode}) without writing {out}")


if __name__ == "__main__":
    train(Path(sys.argv[1]), Path(sys.argv[2]))
