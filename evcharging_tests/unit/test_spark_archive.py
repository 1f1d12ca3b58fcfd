"""The Spark driver's class-data-sharing archive: keyed by the JVM and the jars it was written for,
and used only when it exists (that a real driver maps it: integration/test_spark_archive.py)."""

from __future__ import annotations

from pathlib import Path

from evcharging.resources import spark as spark_module
from evcharging.resources.spark import SparkResource, with_class_archive
from evcharging.stack.spark_archive import archive_key, archive_path


def _fake_runtime(tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    """A JAVA_HOME and a SPARK_HOME with one jar each, and an extra jar."""
    java = tmp_path / "jdk" / "bin" / "java"
    jar = tmp_path / "spark" / "jars" / "spark-core.jar"
    extra = tmp_path / "extra" / "kafka.jar"
    for path in (java, jar, extra):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"v1")
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
    monkeypatch.setenv("SPARK_HOME", str(tmp_path / "spark"))
    return jar, extra


def test_the_key_changes_with_the_jvm_or_any_jar_and_needs_a_java(tmp_path, monkeypatch):
    jar, extra = _fake_runtime(tmp_path, monkeypatch)
    key = archive_key(str(extra))
    assert key and key == archive_key(str(extra))
    assert archive_key("") != key  # another spark.jars
    jar.write_bytes(b"version 2")  # pyspark reinstalled: other size and mtime
    assert archive_key(str(extra)) != key
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "nowhere"))
    assert archive_key(str(extra)) is None and archive_path(tmp_path, str(extra)) is None


def test_a_driver_maps_the_archive_only_when_install_wrote_it(tmp_path, monkeypatch):
    _, extra = _fake_runtime(tmp_path, monkeypatch)
    config = {"spark.jars": str(extra), "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1"}
    assert with_class_archive(config, tmp_path) == config
    archive = archive_path(tmp_path, str(extra))
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"jsa")
    options = with_class_archive(config, tmp_path)["spark.driver.extraJavaOptions"].split()
    assert options == ["-XX:TieredStopAtLevel=1", f"-XX:SharedArchiveFile={archive}"]


def test_the_dagster_resource_starts_its_driver_with_the_archive(tmp_path, monkeypatch):
    _, extra = _fake_runtime(tmp_path, monkeypatch)
    monkeypatch.setattr(spark_module, "session_extras", lambda *a: {"spark.jars": str(extra)})
    started = []
    monkeypatch.setattr(spark_module, "spark_session_from_config", lambda config: started.append(config) or "s")
    archive = archive_path(tmp_path, str(extra))
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"jsa")
    resource = SparkResource(spark_config={"spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1"},
                             lakefs_access_key_id="k", lakefs_secret_access_key="s", cache_dir=str(tmp_path))
    resource._init_session()
    assert started[0]["spark.driver.extraJavaOptions"].endswith(f"-XX:SharedArchiveFile={archive}")



def test_an_archive_that_cannot_be_written_does_not_fail_the_install(tmp_path):
    from evcharging.stack.process import StackError
    from evcharging.stack.stack import _optional

    def fails(cache, progress):
        raise StackError("spark-class-archive", "build failed (exit 1)", tmp_path / "spark-class-archive.log")

    said = []
    _optional(fails, type("S", (), {"cache_dir": tmp_path})(), said.append)
    assert said == [f"spark-class-archive: build failed (exit 1) (log: {tmp_path / 'spark-class-archive.log'}) "
                    "-- Spark drivers start without the class archive (slower, otherwise the same)"]
