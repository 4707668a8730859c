"""``docs/events/``: every generated event document, by its path there.

The schemas (``eventschema``) and the AsyncAPI document (``asyncapi``) are generated from
the catalog; ``docs/events/`` keeps a copy for readers and code generators, and a test
fails when that copy differs from what ``files()`` gives.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from poller import asyncapi, eventschema


def dumps(document: Any) -> str:
    """The text a generated document is kept as: stable, readable, one final newline."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def files() -> dict[str, str]:
    """Every generated document by its path under ``docs/events/``."""
    out = {
        "events.schema.json": dumps(eventschema.combined(eventschema.ENVELOPE)),
        "cloudevents.schema.json": dumps(eventschema.combined(eventschema.CLOUDEVENTS)),
        "asyncapi.json": dumps(asyncapi.document()),
    }
    for t in eventschema.event_types():
        out[f"types/{t.name}.json"] = dumps(eventschema.schema(t.name))
    return out


def write(directory: Path) -> list[Path]:
    """Write ``files()`` under ``directory``; the paths written."""
    written = []
    for relative, text in files().items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
