"""Build or download each native component once, into ``<cache_dir>/<component>-<version>/``.

Everything comes from the registries this machine reaches: Go binaries from the Go module proxy,
jars from Maven Central. A finished artifact is only moved into place when its build succeeded,
so an interrupted build is redone, never half-used. The recipes (versions, the FerretDB patch,
the lakeFS wrapper module) are verified in ../shared/INFRA-NOTES.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from evcharging.settings import PROJECT_DIR
from evcharging.stack.process import StackError

NATIVE_DIR = PROJECT_DIR / "infra" / "native"

KAFKA_VERSION = "4.4.0"
MINIO_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"  # the archived upstream's last commit
LAKEFS_VERSION = "v1.86.0"  # newest the Go proxy serves here
FERRETDB_VERSION = "v1.24.2"  # v2 needs a PostgreSQL extension that is not packaged
SPARK_EXTRA_JARS_KEY = "spark-jars-kafka4.2.0-avro4.2.0-hadoop3.5.0-awssdk2.35.4"
POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")

# Spark jars that pyspark already ships; copying them again puts two versions on the classpath.
_SPARK_EXCLUDE_GROUPS = (
    "io.netty,org.scala-lang,org.scala-lang.modules,org.slf4j,org.xerial.snappy,at.yawk.lz4,"
    "com.google.code.findbugs,commons-codec,commons-logging,org.apache.httpcomponents"
)
_SPARK_EXCLUDE_ARTIFACTS = "hadoop-client-api,hadoop-client-runtime,spark-tags_2.13"

Progress = Callable[[str], None]


def _quiet(_message: str) -> None:
    """Progress for callers that only need the path of something `stack install` already built."""


def _digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()[:10]


def _run(component: str, argv: list[str], log: Path, cwd: Path | None = None, env: dict | None = None,
         timeout: float = 1800) -> str:
    """Run one build step, appending to the component's build log; fail with the log's path."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as out:
        out.write(f"\n$ {' '.join(argv)}\n")
        out.flush()
        try:
            proc = subprocess.run(argv, cwd=cwd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                                  stderr=out, text=True, timeout=timeout)
        except FileNotFoundError:
            raise StackError(component, f"build tool {argv[0]!r} is not installed", log) from None
        except subprocess.TimeoutExpired:
            raise StackError(component, f"build step timed out after {timeout:.0f}s: {' '.join(argv[:3])}", log) from None
        out.write(proc.stdout)
    if proc.returncode != 0:
        raise StackError(component, f"build failed (exit {proc.returncode}): {' '.join(argv[:3])} …", log)
    return proc.stdout


# -buildvcs=false: the build folders are not git checkouts. GOTOOLCHAIN=local: never download a Go.
_GO_ENV = {"CGO_ENABLED": "0", "GOFLAGS": "-buildvcs=false", "GOTOOLCHAIN": "local"}


def _module_dir(component: str, module: str, log: Path, workdir: Path) -> Path:
    out = _run(component, ["go", "mod", "download", "-json", module], log, cwd=workdir,
               env={"GOFLAGS": "-mod=mod", "GO111MODULE": "on"})
    return Path(json.loads(out)["Dir"])


def _install(target: Path, build: Callable[[Path], Path], component: str, progress: Progress) -> Path:
    """Build into a temp folder beside ``target``'s folder, then move the result into place."""
    if target.exists():
        return target
    target.parent.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    progress(f"{component}: building (first time only; cached in {target.parent})")
    done = threading.Event()

    def heartbeat() -> None:  # a Go build is silent for minutes: say it is alive
        while not done.wait(60):
            progress(f"{component}: still building, {time.monotonic() - started:.0f}s so far "
                     f"(log: {build_log(target.parent.parent, component)})")

    threading.Thread(target=heartbeat, daemon=True).start()
    try:
        with tempfile.TemporaryDirectory(dir=target.parent.parent, prefix=f".{target.parent.name}-") as tmp:
            built = build(Path(tmp))
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(built, target)
    finally:
        done.set()
    progress(f"{component}: built in {time.monotonic() - started:.0f}s")
    return target


def build_log(cache: Path, name: str) -> Path:
    return cache / "build-logs" / f"{name}.log"


def minio_binary(cache: Path, progress: Progress = _quiet) -> Path:
    log = build_log(cache, "minio")

    def build(tmp: Path) -> Path:
        _run("minio", ["go", "install", "-trimpath", f"github.com/minio/minio@{MINIO_VERSION}"], log,
             cwd=tmp, env={**_GO_ENV, "GOBIN": str(tmp)})
        return tmp / "minio"

    return _install(cache / f"minio-{MINIO_VERSION}" / "minio", build, "minio", progress)


def _wrapper_module_binary(name: str, wrapper: Path, module: str, version: str, cache: Path,
                           progress: Progress) -> Path:
    """Build ``name`` from a wrapper module of ours (``infra/native/<…>``: go.mod + main.go) around ``module``.

    The wrapped module's own go.sum is copied in before `go mod tidy`: it holds every hash the build
    needs, and the checksum database answers 404 for some of lakeFS's dependencies.
    """
    log = build_log(cache, name)

    def build(tmp: Path) -> Path:
        src = tmp / "src"
        shutil.copytree(wrapper, src)
        module_dir = _module_dir(name, f"{module}@{version}", log, src)
        shutil.copyfile(module_dir / "go.sum", src / "go.sum")
        (src / "go.sum").chmod(0o644)
        _run(name, ["go", "mod", "tidy"], log, cwd=src, env=_GO_ENV)
        _run(name, ["go", "build", "-trimpath", "-o", str(tmp / name), "."], log, cwd=src, env=_GO_ENV)
        return tmp / name

    key = f"{name}-{version}-{_digest(wrapper / 'go.mod', wrapper / 'main.go')}"
    return _install(cache / key / name, build, name, progress)


def lakefs_binary(cache: Path, progress: Progress = _quiet) -> Path:
    return _wrapper_module_binary("lakefs", NATIVE_DIR / "lakefs", "github.com/treeverse/lakefs", LAKEFS_VERSION,
                                  cache, progress)


def ferretdb_binary(cache: Path, progress: Progress = _quiet) -> Path:
    log = build_log(cache, "ferretdb")
    patch = NATIVE_DIR / "ferretdb" / "close-update-iterators.patch"

    def build(tmp: Path) -> Path:
        module = _module_dir("ferretdb", f"github.com/FerretDB/FerretDB@{FERRETDB_VERSION}", log, tmp)
        src = tmp / "src"
        shutil.copytree(module, src)
        for path in [src, *src.rglob("*")]:  # the module cache is read-only
            path.chmod(path.stat().st_mode | 0o200)
        # `go install` builds it but it panics at start without this file (it is generated upstream).
        (src / "build" / "version" / "version.txt").write_text(FERRETDB_VERSION + "\n")
        _run("ferretdb", ["git", "apply", "-p1", str(patch)], log, cwd=src)
        _run("ferretdb", ["go", "build", "-trimpath", "-o", str(tmp / "ferretdb"), "./cmd/ferretdb"], log,
             cwd=src, env=_GO_ENV)
        return tmp / "ferretdb"

    return _install(cache / f"ferretdb-{FERRETDB_VERSION}-{_digest(patch)}" / "ferretdb", build, "ferretdb", progress)


def _maven_jars(component: str, pom: Path, target: Path, progress: Progress, extra: list[str]) -> Path:
    log = build_log(target.parent.parent, component)

    def build(tmp: Path) -> Path:
        out = tmp / "libs"
        _run(component, ["mvn", "-B", "-q", "-f", str(pom),
                         "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies",
                         "-DincludeScope=runtime", f"-DoutputDirectory={out}", *extra], log, timeout=900)
        return out

    return _install(target, build, component, progress)


def kafka_libs(cache: Path, progress: Progress = _quiet) -> Path:
    pom = NATIVE_DIR / "kafka" / "pom.xml"
    return _maven_jars("kafka", pom, cache / f"kafka-{KAFKA_VERSION}-{_digest(pom)}" / "libs", progress, [])


def spark_jars(cache: Path, progress: Progress = _quiet) -> Path:
    pom = NATIVE_DIR / "spark" / "pom.xml"
    return _maven_jars("spark-jars", pom, cache / f"{SPARK_EXTRA_JARS_KEY}-{_digest(pom)}" / "libs", progress,
                       [f"-DexcludeGroupIds={_SPARK_EXCLUDE_GROUPS}", f"-DexcludeArtifactIds={_SPARK_EXCLUDE_ARTIFACTS}"])


def spark_jars_option(cache: Path) -> str:
    """``spark.jars``: the extra Spark jars, comma-separated, resolving them first if needed (quietly:
    called from Spark helpers). The class archive is keyed by this same value."""
    return ",".join(str(j) for j in sorted(spark_jars(cache).glob("*.jar")))


def spark_class_archive(cache: Path, progress: Progress = _quiet) -> Path | None:
    """The Spark driver's class-data-sharing archive for this java and these jars (see
    ``evcharging.stack.spark_archive``), written by one small local Spark run; None without a java.
    Archives of an older java or jar set are removed: each is ~160 MB."""
    from evcharging.stack.spark_archive import archive_path

    target = archive_path(cache, spark_jars_option(cache))
    if target is None:
        return None
    for stale in cache.glob("spark-class-archive-*"):
        if stale != target.parent and stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
    log = build_log(cache, "spark-class-archive")

    def build(tmp: Path) -> Path:
        _run("spark-class-archive", [sys.executable, "-m", "evcharging.stack.spark_archive",
                                     str(tmp / target.name), str(cache)], log, timeout=600)
        return tmp / target.name

    return _install(target, build, "spark-class-archive", progress)


COMPOSE_GO_VERSION = "v2.9.0"


def compose_config_binary(cache: Path, progress: Progress = _quiet) -> Path:
    """``compose-config``: compose-go (the loader inside ``docker compose``) behind a tiny wrapper.

    Validates ``infra/docker-compose.yml`` with no Docker engine and no compose plugin.
    """
    return _wrapper_module_binary("compose-config", NATIVE_DIR / "compose", "github.com/compose-spec/compose-go/v2",
                                  COMPOSE_GO_VERSION, cache, progress)
