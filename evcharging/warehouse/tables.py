"""Whole-table rebuilds (dimensions, marts) and what a person sees of a table: counts, a preview,
a chart.

A rebuild fills a shadow table and swaps it in with ``EXCHANGE TABLES`` (atomic in ClickHouse's
Atomic databases, chDB's default), so a reader sees the old or the new table, never half of one,
and running it twice leaves exactly the same rows.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Sequence

from evcharging.warehouse.schema import TABLES, ensure_tables, qualified

__all__ = ["bar_chart_md", "markdown_table", "rebuild", "row_count", "stored_rows", "table_preview"]


def rebuild(wh, database: str, table: str, fill: Callable[[str], None]) -> int:
    """Rebuild ``table``: ``fill(shadow_name)`` writes the new rows into the shadow table (named
    uniquely, so two rebuilds at once never drop each other's)."""
    ensure_tables(wh, database)
    shadow = qualified(database, f"{table}__next_{uuid.uuid4().hex[:12]}")
    wh.command(f"DROP TABLE IF EXISTS {shadow}")
    wh.command(f"CREATE TABLE {shadow} {TABLES[table]}")
    try:
        fill(shadow)
        wh.command(f"EXCHANGE TABLES {qualified(database, table)} AND {shadow}")
    finally:
        wh.command(f"DROP TABLE IF EXISTS {shadow}")
    return stored_rows(wh, database, table)


def rebuild_from_select(wh, database: str, table: str, select_sql: str) -> int:
    return rebuild(wh, database, table, lambda shadow: wh.command(f"INSERT INTO {shadow} {select_sql}"))


def row_count(wh, database: str, table: str) -> int:
    """Rows as readers see them (``FINAL``): reads the whole table, so only for small ones and tests."""
    return int(wh.query_rows(f"SELECT count() FROM {qualified(database, table)} FINAL")[0][0])


def stored_rows(wh, database: str, table: str) -> int:
    """Rows in the table's active parts, from ``system.parts`` (no data read). Equal to
    :func:`row_count` for tables written whole or by partition; a fact's copies that merges have
    not collapsed yet count here."""
    rows = wh.query_rows(f"SELECT sum(rows) FROM system.parts WHERE database = '{database}' "
                         f"AND table = '{table}' AND active")
    return int(rows[0][0] or 0) if rows else 0


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if abs(value) < 1e6 else f"{value:,.0f}"
    return str(value).replace("|", "\\|")


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence]) -> str:
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    return head + "".join("| " + " | ".join(_cell(v) for v in row) + " |\n" for row in rows)


def table_preview(wh, database: str, table: str, order_by: str, limit: int = 10, where: str = "1") -> str:
    """The first rows in ``order_by`` order among those matching ``where`` (which keeps the read
    to the rows just written, on a table that grows)."""
    df = wh.query_df(f"SELECT * FROM {qualified(database, table)} FINAL WHERE {where} ORDER BY {order_by} LIMIT {limit}")
    return markdown_table(list(df.columns), list(df.itertuples(index=False, name=None)))


_BLOCKS = " ▏▎▍▌▋▊▉█"


def bar_chart_md(title: str, rows: Sequence[tuple[str, float]], unit: str, width: int = 40) -> str:
    """A horizontal bar chart in Markdown (Unicode blocks): it renders anywhere metadata is shown."""
    if not rows:
        return f"**{title}**\n\n(no data)\n"
    top = max((v for _, v in rows), default=0) or 1
    lines = []
    for label, value in rows:
        eighths = round(max(value, 0) / top * width * 8)
        bar = "█" * (eighths // 8) + (_BLOCKS[eighths % 8] if eighths % 8 else "")
        lines.append(f"{label:>16} │{bar} {value:,.1f} {unit}")
    return f"**{title}**\n\n```\n" + "\n".join(lines) + "\n```\n"
