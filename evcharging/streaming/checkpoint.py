"""The stream's checkpoint through Hadoop's FileSystem API: a local folder, ``s3a://`` or ``hdfs://``.

The checkpoint is a URI string throughout, never a ``pathlib.Path`` (which turns ``s3a://b/c`` into
``s3a:/b/c``). Spark writes it; the stream reads its offset log (each batch's planned Kafka offsets,
see :func:`evcharging.streaming.batches.checkpoint_offsets`) and checks at start that it can write
there, both with the filesystem, configuration and credentials of Spark's own session.
"""

from __future__ import annotations

from evcharging.transient import first_line


class CheckpointError(RuntimeError):
    """The checkpoint cannot be read or written, or its offset log lacks what Spark must have written."""


def _java_message(error: Exception) -> str:
    """The Java exception's own line (a Py4JJavaError's first line only names the call that failed)."""
    java = getattr(error, "java_exception", None)
    return first_line(java.toString() if java is not None else str(error), type(error).__name__)


class CheckpointFiles:
    """Files under a checkpoint URI, read and written through the session's Hadoop FileSystem."""

    def __init__(self, spark, uri: str):
        self.uri = str(uri).rstrip("/")
        self._jvm = spark._jvm
        self._fs = self._path("").getFileSystem(spark._jsc.hadoopConfiguration())

    def _path(self, relative: str):
        return self._jvm.org.apache.hadoop.fs.Path(f"{self.uri}/{relative}" if relative else self.uri)

    def read_text(self, relative: str) -> str | None:
        """The file's text, None if it does not exist; any other failure raises CheckpointError."""
        from py4j.protocol import Py4JJavaError

        path = self._path(relative)
        try:
            if not self._fs.exists(path):
                return None
            stream = self._fs.open(path)
            try:
                return self._jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
            finally:
                stream.close()
        except Py4JJavaError as error:
            raise CheckpointError(f"cannot read {self.uri}/{relative}: {_java_message(error)}") from None

    def check_writable(self) -> None:
        """Create the folder if missing, then write and delete a probe file; CheckpointError if not."""
        from py4j.protocol import Py4JJavaError

        probe = self._path(".writable")
        try:
            self._fs.mkdirs(self._path(""))
            self._fs.create(probe, True).close()
            self._fs.delete(probe, False)
        except Py4JJavaError as error:
            raise CheckpointError(f"cannot write to {self.uri}: {_java_message(error)}") from None
