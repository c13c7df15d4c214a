"""Plain-text tables for the terminal."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ops.registrations import Row

PENDING_COLUMNS = ("runID", "step", "state", "kind", "delivery", "age", "expires in")


def pending(rows: Sequence[Row], now: datetime) -> str:
    if not rows:
        return "no open registrations"
    cells = [
        (
            row.run_id,
            row.step,
            row.state,
            row.kind,
            row.delivery,
            duration((now - row.created_at).total_seconds() if row.created_at else None),
            duration((row.expire_at - now).total_seconds() if row.expire_at else None),
        )
        for row in rows
    ]
    return render(PENDING_COLUMNS, cells)


def render(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = [header, *rows]
    return "\n".join(
        "  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def duration(seconds: float | None) -> str:
    """90 -> 1m 30s, 7200 -> 2h 0m, 200000 -> 2d 7h; negative: "-" + that; None: "?"."""
    if seconds is None:
        return "?"
    sign, left = ("-", -seconds) if seconds < 0 else ("", seconds)
    whole = int(left)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{sign}{days}d {hours}h"
    if hours:
        return f"{sign}{hours}h {minutes}m"
    if minutes:
        return f"{sign}{minutes}m {secs}s"
    return f"{sign}{secs}s"
