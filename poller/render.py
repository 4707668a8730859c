"""How poller prints for people: readable tables and event lines on a terminal, JSON for
scripts."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from poller import utils

if TYPE_CHECKING:
    from poller.model import Event


def stamp(moment: dt.datetime) -> str:
    """A moment as tables show it: UTC to the second, zone written, ``2026-11-28 10:42:07Z``.

    A moment without a zone (as some drivers return them) is taken to be UTC already.
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dt.datetime):
        return stamp(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, Mapping | list):
        return json.dumps(value, default=str, separators=(",", ":"))
    return str(value)


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A plain text table with a header row; ``-`` for missing values."""
    cells = [[c.upper() for c in columns]] + [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def jsonable(value: Any) -> Any:
    """``value`` with datetimes as RFC 3339 strings, ready for ``json.dumps``."""
    if isinstance(value, dt.datetime):
        return utils.isoformat(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def to_json(value: Any) -> str:
    return json.dumps(jsonable(value), indent=2, sort_keys=False)


def age(since: dt.datetime | None, now: dt.datetime | None = None) -> str | None:
    """``3m12s`` since a moment, or ``None``."""
    if since is None:
        return None
    return utils.format_duration(max(0.0, ((now or utils.utcnow()) - since).total_seconds()))


def until(moment: dt.datetime | None, now: dt.datetime | None = None) -> str | None:
    """``in 12s`` before a moment, ``3s ago`` after it, or ``None``."""
    if moment is None:
        return None
    seconds = (moment - (now or utils.utcnow())).total_seconds()
    if seconds >= 0:
        return f"in {utils.format_duration(seconds)}"
    return f"{utils.format_duration(-seconds)} ago"


# SGR colours by the last word of an event type: outcomes stand out from arrivals
_ACTION_COLOURS = {
    "succeeded": "32",  # green
    "completed": "32",
    "generated": "32",
    "failed": "31",  # red
    "cancelled": "33",  # yellow
    "deleted": "33",
}
_DIM, _RESET = "\x1b[2m", "\x1b[0m"


def event_line(event: Event, *, colour: bool = False) -> str:
    """One event on a terminal: time, workspace, type, resource id, event id.

    ``colour``: the type in a colour by its action (ANSI), time and event id dimmed.
    """
    stamp = utils.isoformat(event.timestamp)
    if not colour:
        return f"{stamp}  {event.workspace}  {event.type}  {event.resource_id}  {event.id}"
    tint = _ACTION_COLOURS.get(event.type.rpartition(".")[2], "36")  # cyan: a new resource
    return (
        f"{_DIM}{stamp}{_RESET}  {event.workspace}  \x1b[{tint}m{event.type}{_RESET}  "
        f"{event.resource_id}  {_DIM}{event.id}{_RESET}"
    )
