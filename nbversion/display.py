"""How results look: byte sizes, relative times, and tables that render as text or HTML."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

#: A table cell or one-line value shows at most this many characters of catalog text.
CELL_LIMIT = 200
#: A line of a report (``show``, ``diff``, an error) shows at most this many characters.
LINE_LIMIT = 2000

# What a terminal would obey rather than show: C0 and C1 controls (ESC, CSI, BEL, CR, NUL,
# newline, tab), DEL, and the bidirectional overrides that reorder what is shown.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_UNPRINTABLE_IN_TEXT = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(value: object, limit: int | None = CELL_LIMIT) -> str:
    """Return *value* as one line safe for a terminal: control characters and escape
    sequences shown escaped (``\\x1b``, ``\\n``), at most *limit* characters of it kept.

    Catalog text can come from anyone (a committed catalog, edited with any SQLite tool), so
    everything nbversion prints from it goes through here.
    """
    text = value if isinstance(value, str) else str(value)
    if limit is not None and len(text) > limit:
        text = f"{text[:limit]}... ({len(text) - limit} more characters)"
    return _UNPRINTABLE.sub(_escaped, text)


def printable_text(text: str) -> str:
    """Return multi-line *text* (a stored patch, cells) with its line breaks and tabs kept and
    every other control character escaped, as :func:`printable` does."""
    return _UNPRINTABLE_IN_TEXT.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    return repr(match.group())[1:-1]


def format_bytes(size: int | float | None) -> str:
    """Return *size* in bytes the way people read it: ``0 B``, ``12.3 KiB``, ``1.0 GiB``."""
    if size is None:
        return ""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def relative_time(when: str | datetime, now: datetime | None = None) -> str:
    """Return how long ago *when* (an ISO 8601 time) was: ``just now``, ``5 minutes ago``."""
    try:
        moment = datetime.fromisoformat(when) if isinstance(when, str) else when
    except (TypeError, ValueError):  # not a time: a catalog edited by hand
        return printable(when)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    seconds = ((now or datetime.now(timezone.utc)) - moment).total_seconds()
    if seconds < 0:
        return "in the future"
    for limit, size, unit in (
        (60, 1, "second"), (3600, 60, "minute"), (86400, 3600, "hour"),
        (86400 * 30, 86400, "day"), (86400 * 365, 86400 * 30, "month"),
        (float("inf"), 86400 * 365, "year"),
    ):
        if seconds < limit:
            if unit == "second" and seconds < 10:
                return "just now"
            count = int(seconds // size)
            return f"{count} {unit}{'' if count == 1 else 's'} ago"
    raise AssertionError("unreachable")


class Table:
    """Rows with named columns, shown as a text table in a terminal and HTML in a notebook.

    :param columns: the column headings.
    :param rows: one sequence of cell values per row, in column order.
    :param empty: what to say when there are no rows.
    :param footer: a line under the rows (what was left out), if any.
    """

    def __init__(
        self, columns: Sequence[str], rows: Sequence[Sequence[Any]], empty: str = "(no rows)", footer: str = ""
    ) -> None:
        self.columns = [printable(c) for c in columns]
        self.rows = [["" if v is None else printable(v) for v in row] for row in rows]
        self.empty = empty
        self.footer = footer

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        return self.to_text()

    def to_text(self) -> str:
        """Return the table as aligned plain text."""
        if not self.rows:
            return self.empty
        widths = [
            max(len(c), *(len(row[i]) for row in self.rows)) for i, c in enumerate(self.columns)
        ]
        lines = ["  ".join(c.ljust(w) for c, w in zip(self.columns, widths)).rstrip()]
        lines.append("  ".join("-" * w for w in widths))
        lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in self.rows]
        if self.footer:
            lines.append(self.footer)
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        if not self.rows:
            return f"<p>{html.escape(self.empty)}</p>"
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>"
            for row in self.rows
        )
        foot = f"<p>{html.escape(self.footer)}</p>" if self.footer else ""
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{foot}"


class Text(str):
    """A report that prints as itself (no quotes) in a terminal, a notebook, or ``print``."""

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(str(self))}</pre>"


def describe(summary: dict[str, Any]) -> str:
    """One short line from an artifact's summary: ``shape [300, 4] float64``, ``12 files``.

    A summary that is not what nbversion writes (a catalog edited by hand) says so, and a
    long one is cut short: it never fails, and never prints megabytes.
    """
    try:
        return printable(_describe(summary))
    except (AttributeError, KeyError, TypeError, ValueError):
        return "(unreadable summary)"


def _describe(summary: dict[str, Any]) -> str:
    parts = []
    if "shape" in summary:
        parts.append("shape " + "x".join(str(d) for d in summary["shape"]))
    if "dtype" in summary:
        parts.append(str(summary["dtype"]))
    if "columns" in summary:
        columns = summary["columns"]
        parts.append("columns " + ", ".join(columns[:6]) + (", ..." if len(columns) > 6 else ""))
    if "class" in summary:
        parts.append(summary["class"].rsplit(".", 1)[-1])
    if "params" in summary:
        params = ", ".join(f"{k}={v}" for k, v in list(summary["params"].items())[:4])
        parts.append(f"({params})")
    if "value" in summary:
        parts.append(f"= {summary['value']!r}")
    if "length" in summary:
        parts.append(f"length {summary['length']}")
    if "files" in summary and "shape" not in summary:
        parts.append(f"{summary['files']} files")
    if "preview" in summary and "value" not in summary:
        parts.append(str(summary["preview"]))
    if "skipped" in summary:
        parts.append(f"not kept: {summary['skipped']}")
    return " ".join(parts)


class QueryResult:
    """The answer to a catalog query: rows with named columns.

    Shown as an HTML table in a notebook and a text table in a terminal; iterate it for
    tuples, index it, or call :meth:`to_dataframe` (pandas) or :meth:`dicts`.
    """

    #: At most this many rows are drawn; all of them stay in the object.
    DISPLAY_ROWS = 50

    def __init__(self, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
        self.columns = list(columns)
        self.rows = [tuple(r) for r in rows]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Any:
        return iter(self.rows)

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        return self.rows[index]

    def dicts(self) -> list[dict[str, Any]]:
        """The rows as dictionaries keyed by column."""
        return [dict(zip(self.columns, row)) for row in self.rows]

    def to_dataframe(self) -> Any:
        """The rows as a pandas DataFrame (pandas must be installed)."""
        import pandas as pd

        return pd.DataFrame.from_records(self.rows, columns=self.columns)

    DataFrame = to_dataframe  # jupysql's spelling

    def _table(self) -> Table:
        shown = self.rows[: self.DISPLAY_ROWS]
        return Table(self.columns, [[_cell(v) for v in row] for row in shown], empty="(no rows)")

    def _more(self) -> str:
        extra = len(self.rows) - self.DISPLAY_ROWS
        return f"... {extra} more rows" if extra > 0 else ""

    def __repr__(self) -> str:
        text = self._table().to_text()
        return f"{text}\n{self._more()}" if self._more() else text

    def _repr_html_(self) -> str:
        more = f"<p>{html.escape(self._more())}</p>" if self._more() else ""
        return self._table()._repr_html_() + more

    def to_csv(self) -> str:
        """The rows as CSV text, with a header."""
        import csv
        import io

        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(self.columns)
        writer.writerows(self.rows)
        return out.getvalue()

    def to_json(self) -> str:
        """The rows as a JSON list of objects."""
        import json

        return json.dumps(self.dicts(), indent=2, default=repr)


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return str(value)


#: Transfers at least this large show a progress bar at once; smaller ones only after a second.
PROGRESS_AT_ONCE_BYTES = 100 * 1024 * 1024


@contextmanager
def progress(description: str, total: int | None = None) -> Iterator[Callable[[int], Any]]:
    """A byte-counting progress bar (tqdm, notebook-aware) for a snapshot or a restore.

    It appears at once for *total* of 100 MiB or more, else only if the work takes more
    than a second, so quick operations stay quiet. Yields the function to report bytes to.
    """
    try:  # a widget in a notebook that has ipywidgets; text everywhere else, without warnings
        import ipywidgets  # noqa: F401
        from tqdm.auto import tqdm
    except ImportError:
        from tqdm import tqdm

    delay = 0.0 if total is not None and total >= PROGRESS_AT_ONCE_BYTES else 1.0
    with tqdm(total=total, desc=description, unit="B", unit_scale=True, unit_divisor=1024,
              delay=delay, leave=False, dynamic_ncols=True) as bar:
        yield bar.update
