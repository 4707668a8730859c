"""Event schemas and the AsyncAPI document: generated from the catalog, kept in docs/events."""

from __future__ import annotations

import copy
import json
import pathlib
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner

from poller import asyncapi, eventdocs, eventschema
from poller.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "events"
OFFICIAL = ROOT / "tests" / "data" / "asyncapi" / "asyncapi-3.0.0.schema.json"

README_EVENT: dict[str, Any] = {
    "id": "evt_3k2qbn5pdmc4w6xsl7ayvjrt2e",
    "type": "batch_job.succeeded",
    "timestamp": "2026-11-27T10:42:07.118000Z",
    "workspace": "default",
    "data": {
        "id": "9f2c0d6e-6f1b-4a57-9a0e-2c1d3b4e5f60",
        "status": "SUCCESS",
        "output_file": "4be1a2c3-0000-4000-8000-000000000001",
        "total_requests": 120,
    },
}


def _problems(schema: dict[str, Any], document: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    return [e.message for e in validator.iter_errors(document)]


def test_docs_events_is_what_the_catalog_generates() -> None:
    """docs/events/ holds exactly the generated documents; regenerate with --write."""
    on_disk = {
        p.relative_to(DOCS).as_posix(): p.read_text(encoding="utf-8") for p in DOCS.rglob("*.json")
    }
    generated = eventdocs.files()
    stale = sorted(
        k for k in generated.keys() | on_disk.keys() if generated.get(k) != on_disk.get(k)
    )
    assert not stale, (
        f"docs/events is stale ({stale}): run `poller events schema --write docs/events`"
    )


def test_every_event_type_has_a_schema_file() -> None:
    """All 18 polled types, the 5 synchronous ones and poller.test have a schema file."""
    assert sorted(p.stem for p in (DOCS / "types").glob("*.json")) == [
        "agent_completion.created",
        "batch_job.cancelled",
        "batch_job.created",
        "batch_job.failed",
        "batch_job.succeeded",
        "chat_completion.created",
        "embeddings.generated",
        "file.deleted",
        "file.uploaded",
        "fim_completion.created",
        "fine_tuning_job.cancelled",
        "fine_tuning_job.created",
        "fine_tuning_job.failed",
        "fine_tuning_job.succeeded",
        "library.created",
        "library.deleted",
        "library_document.deleted",
        "library_document.failed",
        "library_document.processed",
        "library_document.uploaded",
        "model.created",
        "model.deleted",
        "ocr.completed",
        "poller.test",
    ]


def test_the_documented_envelope_matches_the_schema() -> None:
    """README's example envelope validates against its type's schema and the combined one."""
    assert _problems(eventschema.schema("batch_job.succeeded"), README_EVENT) == []
    assert _problems(eventschema.combined(), README_EVENT) == []


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"status": "succeeded"}, ("data", "status")),
        ({"total_requests": "120"}, ("data", "total_requests")),
        ({"extra": 1}, ("data",)),
    ],
)
def test_a_payload_off_the_schema_is_refused(change: dict[str, Any], path: tuple[str, ...]) -> None:
    """A wrong status, a wrong type or an undeclared field fails validation."""
    event = copy.deepcopy(README_EVENT)
    event["data"].update(change)
    validator = jsonschema.Draft202012Validator(eventschema.schema("batch_job.succeeded"))
    assert [tuple(e.absolute_path) for e in validator.iter_errors(event)][:1] in (
        [path],
        [(*path, next(iter(change)))],
    )


def test_a_missing_payload_field_is_refused() -> None:
    """Every catalog field is present in a payload (null where the API gave none)."""
    event = copy.deepcopy(README_EVENT)
    del event["data"]["output_file"]
    assert _problems(eventschema.schema("batch_job.succeeded"), event) == [
        "'output_file' is a required property"
    ]


@pytest.mark.parametrize(
    ("event_type", "field", "schema"),
    [
        ("file.uploaded", "size", {"type": "integer"}),
        ("batch_job.succeeded", "output_file", {"type": ["string", "null"]}),
        ("batch_job.failed", "status", {"type": "string", "enum": ["FAILED", "TIMEOUT_EXCEEDED"]}),
        ("fine_tuning_job.succeeded", "trained_tokens", {"type": ["integer", "null"]}),
        ("ocr.completed", "doc_size_bytes", {"type": ["integer", "null"]}),
        ("chat_completion.created", "content", {"type": ["string", "null"]}),
        (
            "chat_completion.created",
            "finish_reason",
            {
                "type": ["string", "null"],
                "enum": ["stop", "length", "model_length", "error", "tool_calls", None],
            },
        ),
        ("poller.test", "sink", {"type": "string"}),
    ],
)
def test_field_types_follow_the_api(event_type: str, field: str, schema: dict[str, Any]) -> None:
    """Payload field types are the real API's (nullable where the API's value may lack)."""
    prop = dict(eventschema.schema(event_type)["properties"]["data"]["properties"][field])
    prop.pop("description")
    assert prop == schema


def test_cloudevents_form_validates() -> None:
    """A CloudEvents structured-mode document of a type matches its CloudEvents schema."""
    document = {
        "specversion": "1.0",
        "id": "evt_3k2qbn5pdmc4w6xsl7ayvjrt2e",
        "source": "poller/default",
        "type": "file.deleted",
        "subject": "f1",
        "time": "2026-11-27T10:42:07.118000Z",
        "datacontenttype": "application/json",
        "data": {"id": "f1"},
    }
    assert _problems(eventschema.schema("file.deleted", eventschema.CLOUDEVENTS), document) == []
    assert _problems(eventschema.combined(eventschema.CLOUDEVENTS), document) == []
    assert _problems(eventschema.schema("file.deleted"), document) != []


def _official() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads(OFFICIAL.read_text(encoding="utf-8")))


def test_asyncapi_document_is_valid_asyncapi_3() -> None:
    """The AsyncAPI document validates against the official AsyncAPI 3.0.0 JSON Schema."""
    errors = [
        f"{list(e.absolute_path)}: {e.message}"
        for e in _official().iter_errors(
            json.loads((DOCS / "asyncapi.json").read_text(encoding="utf-8"))
        )
    ]
    assert errors == []


def test_the_official_schema_catches_a_broken_document() -> None:
    """An AsyncAPI 2-style operation (action publish) is refused by the official schema."""
    document = asyncapi.document()
    document["operations"]["nats.send"]["action"] = "publish"
    assert not _official().is_valid(document)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_asyncapi_references_all_resolve() -> None:
    """Every $ref in the AsyncAPI document points at something in it."""
    document = asyncapi.document()
    refs = _refs(document)
    assert len(refs) > 100
    for ref in refs:
        node: Any = document
        for step in ref.removeprefix("#/").split("/"):
            node = node[step.replace("~1", "/").replace("~0", "~")]
        assert isinstance(node, dict), ref


def test_asyncapi_channels_and_addresses() -> None:
    """Every channel poller publishes to, with its default address."""
    channels = asyncapi.document()["channels"]
    assert {k: v["address"] for k, v in channels.items()} == {
        "webhook": None,
        "webhookPerEvent": "/webhooks/mistral-ai/{resource}/{action}",
        "nats": "poller.{resource}.{action}",
        "amqp": "{resource}.{action}",
        "redis": "{stream}",
        "mqtt": "poller/{resource}/{action}",
    }
    assert channels["amqp"]["bindings"]["amqp"]["exchange"]["type"] == "topic"
    assert set(channels["webhook"]["messages"]) >= {
        "batch_job.succeeded",
        "batch_job.succeeded.cloudevents",
        "poller.test",
    }
    assert len(channels["mqtt"]["messages"]) == 48  # the envelope and the CloudEvents form
    assert len(channels["redis"]["messages"]) == 24  # one entry shape
    assert channels["webhookPerEvent"]["parameters"]["resource"]["enum"] == [
        "agent_completion",
        "batch_job",
        "chat_completion",
        "embeddings",
        "file",
        "fim_completion",
        "fine_tuning_job",
        "library",
        "library_document",
        "model",
        "ocr",
        "poller",
    ]


def test_cli_prints_one_type_the_combined_schema_and_asyncapi() -> None:
    """`poller events schema [TYPE] [--asyncapi]` prints what docs/events keeps."""
    runner = CliRunner()
    one = runner.invoke(main, ["events", "schema", "model.deleted"])
    assert one.exit_code == 0
    assert one.output == (DOCS / "types" / "model.deleted.json").read_text(encoding="utf-8")
    every = runner.invoke(main, ["events", "schema"])
    assert every.output == (DOCS / "events.schema.json").read_text(encoding="utf-8")
    document = runner.invoke(main, ["events", "schema", "--asyncapi"])
    assert document.output == (DOCS / "asyncapi.json").read_text(encoding="utf-8")


def test_cli_names_the_known_types_for_an_unknown_one() -> None:
    """An unknown type exits 2 with one line listing the known ones."""
    result = CliRunner().invoke(main, ["events", "schema", "batch_job.done"])
    assert result.exit_code == 2
    assert result.output.startswith("poller: no event type 'batch_job.done'; known types: ")
    assert result.output.count("\n") == 1


def test_cli_writes_docs_events(tmp_path: pathlib.Path) -> None:
    """--write DIR writes the same tree as docs/events/."""
    result = CliRunner().invoke(main, ["events", "schema", "--write", str(tmp_path)])
    assert result.exit_code == 0
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.json"))
    assert written == sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.json"))


def test_cli_prints_the_cloudevents_form() -> None:
    """--cloudevents prints a type's schema in the CloudEvents form."""
    result = CliRunner().invoke(main, ["events", "schema", "--cloudevents", "file.deleted"])
    assert result.exit_code == 0
    document = json.loads(result.output)
    assert document["title"] == "file.deleted (CloudEvents)"
    assert document["properties"]["specversion"] == {"const": "1.0"}
    assert document["required"] == [
        "specversion",
        "id",
        "source",
        "type",
        "subject",
        "time",
        "data",
    ]
