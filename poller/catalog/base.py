"""What every event type is made of: its payload ``Field``s and the ``EventType`` itself,
and the small builders the catalog's modules describe them with."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

Selector = tuple[str | int, ...]

WEBHOOK_PATH = "/webhooks/mistral-ai/{resource}/{action}"
"""The seed connector's per-event webhook path, as an ``http`` sink's URL template."""


@dataclasses.dataclass(frozen=True, slots=True)
class Field:
    """One payload field: its name in the event and where its value comes from."""

    name: str
    selector: Selector
    description: str
    schema: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False)
    """The value's JSON Schema, after the real API's type for it (null where it may lack)."""


@dataclasses.dataclass(frozen=True, slots=True)
class EventType:
    """One trigger: ``batch_job.succeeded`` and what its payload holds."""

    name: str
    description: str
    fields: tuple[Field, ...]
    seed: bool = True
    polled: bool = True

    @property
    def resource(self) -> str:
        return self.name.partition(".")[0]

    @property
    def action(self) -> str:
        return self.name.partition(".")[2]

    @property
    def webhook_path(self) -> str:
        """The seed's per-event webhook path, e.g. ``/webhooks/mistral-ai/batch_job/succeeded``."""
        return WEBHOOK_PATH.format(resource=self.resource, action=self.action)


def field(
    name: str, *selector: str | int, schema: Mapping[str, Any], description: str = ""
) -> Field:
    """A payload field named ``name``, read at ``selector`` (default: the same name)."""
    return Field(name, selector or (name,), description, schema)


def json_type(*types: str) -> dict[str, Any]:
    """A JSON Schema type: ``json_type("string", "null")`` is a string or null."""
    return {"type": types[0] if len(types) == 1 else list(types)}


def one_of(*values: str, nullable: bool = False) -> dict[str, Any]:
    """A string schema taking one of ``values`` (or null)."""
    choices: list[str | None] = [*values, None] if nullable else list(values)
    return {**(json_type("string", "null") if nullable else json_type("string")), "enum": choices}


DATE_TIME = {"type": "string", "format": "date-time"}
