"""Reading and validating a reference CSV: the one mechanism both datasets use.

A reference file goes through three steps, each of which can only *reject rows*, never lose them
silently:

1. :func:`read_csv` reads the raw fields and remembers each record's 1-based physical line number
   (the header is line 1; a record whose quoted field spans lines is numbered by its first line).
   A file that cannot be read, is empty, or lacks an expected column raises one
   :class:`ReferenceDataError` naming the file and the problem.
2. :meth:`TableFormat.validate` rejects records with the wrong number of fields, then runs the
   format's pandera schema in two passes: first only the type conversion (a value that is not a
   number cannot meaningfully be range-checked), then every check on the rows that converted.
   Each failing row becomes one :class:`RejectedRow` whose reason names every failing column and
   its value.
3. The caller turns the validated frame (indexed by line number, typed) into documents.

The synthetic generator produces a :class:`RawTable` too, so generated rows pass the same checks.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pandera.pandas as pa


class ReferenceDataError(Exception):
    """A reference file that cannot be used at all (unreadable, empty, a column missing)."""


@dataclass(frozen=True)
class RejectedRow:
    """A record left out of the load: its physical line in the file and why."""

    line: int
    reason: str


@dataclass(frozen=True)
class RawTable:
    """Unvalidated records as text, each with the physical line it starts on."""

    source: str
    header: tuple[str, ...]
    records: tuple[tuple[int, tuple[str, ...]], ...]
    malformed: tuple[RejectedRow, ...] = ()  # records the CSV reader could not split into fields

    @classmethod
    def from_rows(cls, source: str, header: Sequence[str], rows: Iterable[Sequence[str]]) -> RawTable:
        """Number rows as they would be numbered in a written file (header = line 1)."""
        return cls(source, tuple(header), tuple((line, tuple(row)) for line, row in enumerate(rows, start=2)))

    def write_csv(self, path: Path) -> None:
        """Write the table the way the Kaggle files are written: CRLF, minimal quoting."""
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\r\n")
            writer.writerow(self.header)
            writer.writerows(fields for _, fields in self.records)


def read_csv(path: Path) -> RawTable:
    """The records of ``path``; one :class:`ReferenceDataError` if it cannot be read as a CSV."""
    header: list[str] | None = None
    records: list[tuple[int, tuple[str, ...]]] = []
    malformed: list[RejectedRow] = []
    first_line = 1
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            # Strict, so a stray quote is an error, not a silently mangled value; the reader resumes
            # on the next line, so the error costs one record, not the file.
            reader = csv.reader(f, strict=True)
            while True:
                try:
                    fields = next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:
                    if header is None:
                        raise
                    last = reader.line_num
                    span = f"line {first_line}" if last == first_line else f"lines {first_line}-{last}"
                    malformed.append(RejectedRow(first_line, f"malformed CSV quoting in {span}: {exc}"))
                else:
                    if fields and any(fields):  # blank lines carry no record
                        if header is None:
                            header = [name.strip() for name in fields]
                        else:
                            records.append((first_line, tuple(fields)))
                first_line = reader.line_num + 1
    except FileNotFoundError:
        raise ReferenceDataError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ReferenceDataError(f"{path}: cannot be read as a UTF-8 CSV file (line {first_line}: {exc})") from None
    if header is None:
        raise ReferenceDataError(f"{path}: the file is empty (no header line)")
    if not records and not malformed:
        raise ReferenceDataError(f"{path}: the file has a header but no data rows")
    return RawTable(str(path), tuple(header), tuple(records), tuple(malformed))


@dataclass(frozen=True)
class ValidTable:
    """The rows that passed, typed and indexed by line number, and the rows that did not."""

    frame: pd.DataFrame
    rejected: tuple[RejectedRow, ...]


@dataclass(frozen=True)
class Normalised:
    """Documents ready for MongoDB and how many rows each normalisation rule changed."""

    documents: list[dict]
    counts: dict[str, int]


@dataclass(frozen=True)
class TableFormat:
    """A CSV format: its columns and checks (a pandera schema keyed by header names).

    ``missing_markers`` are the spellings of "no value" (``""`` always; ``"NA"`` in the vehicles
    file); such fields become missing values, which the schema allows only where ``nullable``.
    """

    name: str
    schema: pa.DataFrameSchema
    missing_markers: frozenset[str] = field(default_factory=lambda: frozenset({""}))

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.schema.columns)

    def validate(self, raw: RawTable) -> ValidTable:
        """Split ``raw`` into typed valid rows and rejected rows; a missing column is an error."""
        missing = [name for name in self.columns if name not in raw.header]
        if missing:
            raise ReferenceDataError(
                f"{raw.source}: not a {self.name} file: column(s) {', '.join(map(repr, missing))} missing "
                f"(expected {len(self.columns)} columns: {', '.join(self.columns)})"
            )
        reasons: dict[int, list[str]] = defaultdict(list)
        for row in raw.malformed:
            reasons[row.line].append(row.reason)
        width = len(raw.header)
        kept = []
        for line, fields in raw.records:
            if len(fields) != width:
                reasons[line].append(f"has {len(fields)} fields, expected {width}")
            else:
                kept.append((line, fields))
        positions = [raw.header.index(name) for name in self.columns]
        frame = pd.DataFrame(
            [[self._value(fields[i]) for i in positions] for _, fields in kept],
            index=pd.Index([line for line, _ in kept], name="line"),
            columns=list(self.columns),
            dtype=object,
        )
        # Pass 1: conversion only. Pass 2: every check, on the rows that converted.
        converting = self.schema.update_columns(
            {name: {"checks": [], "unique": False} for name in self.columns}
        )
        frame = self._drop_failures(converting, frame, reasons)
        frame = self._drop_failures(self.schema, frame, reasons)
        rejected = tuple(RejectedRow(line, "; ".join(why)) for line, why in sorted(reasons.items()))
        # After a failing pass the survivors are the pass's unconverted input: convert them once more.
        return ValidTable(self.schema.validate(frame) if len(frame) else frame, rejected)

    def _value(self, text: str) -> str | None:
        text = text.strip()
        return None if text in self.missing_markers else text

    def _drop_failures(self, schema: pa.DataFrameSchema, frame: pd.DataFrame, reasons: dict[int, list[str]]) -> pd.DataFrame:
        if frame.empty:
            return frame
        try:
            return schema.validate(frame, lazy=True)
        except pa.errors.SchemaErrors as exc:
            cases = exc.failure_cases
        failed: set[int] = set()
        seen: set[tuple[int, str]] = set()
        for case in cases.itertuples(index=False):
            if case.index is None or pd.isna(case.index):
                # A column-level failure has no row to blame; it is a bug in the format, not the data.
                raise ReferenceDataError(f"{self.name}: column {case.column!r} failed {case.check}: {case.failure_case}")
            line = int(case.index)
            if (line, case.column) in seen:  # a conversion failure is reported once per column
                continue
            seen.add((line, case.column))
            failed.add(line)
            reasons[line].append(_reason(schema, case.column, case.check, case.failure_case))
        return frame.drop(index=sorted(failed))


_TYPE_NAMES = {"float64": "a number", "int64": "a whole number", "bool": "true or false"}


def _reason(schema: pa.DataFrameSchema, column: str, check: str, value: object) -> str:
    value = value.item() if hasattr(value, "item") else value  # numpy scalars print as np.float64(…)
    if check == "not_nullable":
        return f"{column} is missing"
    if check == "field_uniqueness":
        return f"{column} {value!r} repeats an earlier row"
    if check.startswith(("coerce_dtype", "dtype(")):
        expected = _TYPE_NAMES.get(str(schema.columns[column].dtype), str(schema.columns[column].dtype))
        return f"{column} {value!r} is not {expected}"
    return f"{column} {value!r} {check}"


def rejected_rows_markdown(rejected: Sequence[RejectedRow], limit: int = 20) -> str:
    """The first ``limit`` rejected rows as a Markdown table (for Dagster metadata)."""
    if not rejected:
        return "No rejected rows."
    lines = ["| line | reason |", "|---:|---|"]
    escaped_bar = "\\|"  # a bar inside a reason would end the cell (no backslash in f-strings in 3.11)
    lines += [f"| {row.line} | {row.reason.replace('|', escaped_bar)} |" for row in rejected[:limit]]
    if len(rejected) > limit:
        lines.append(f"| … | {len(rejected) - limit} more |")
    return "\n".join(lines)
