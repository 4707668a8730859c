"""The documentation says what the code does: README's event catalog, every command and
option, every config key and every metric are where a reader looks for them."""

from __future__ import annotations

import pathlib
import re
from collections.abc import Iterator

import click
import pydantic
import pytest

from poller import catalog
from poller.cli import main
from poller.config import models
from poller.metrics import Metrics

ROOT = pathlib.Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
DOCS = README + "".join(p.read_text() for p in sorted((ROOT / "docs").glob("*.md")))
CATALOG_ROW = re.compile(r"^\| `([a-z_]+\.[a-z_]+)`[^|]*\|[^|]*\|([^|]*)\|$", re.MULTILINE)


def readme_catalog() -> dict[str, set[str]]:
    """Each event type of README's tables with the payload fields its row names; a row
    saying "the same" takes the row above's, "the same as `completed`" that row's."""
    rows: dict[str, set[str]] = {}
    previous = ""
    for match in CATALOG_ROW.finditer(README):
        name, cell = match.groups()
        fields = set(re.findall(r"`([a-z_]+)`", cell))
        if same_as := re.search(r"the same as `([a-z_]+)`", cell):
            fields = rows[f"{name.partition('.')[0]}.{same_as.group(1)}"]
        elif "the same" in cell:
            fields |= rows[previous]
        rows[name] = fields
        previous = name
    return rows


def test_readme_event_catalog_is_the_code_catalog() -> None:
    """README lists every event type there is, none that is not, each with its payload fields."""
    documented = readme_catalog()
    assert sorted(documented) == sorted(t.name for t in catalog.TYPES)
    for event_type in catalog.TYPES:
        assert documented[event_type.name] == {f.name for f in event_type.fields}, event_type.name


def commands(group: click.Group, prefix: str = "poller") -> Iterator[tuple[str, click.Command]]:
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from commands(command, f"{prefix} {name}")
        else:
            yield f"{prefix} {name}", command


COMMANDS = sorted(commands(main), key=lambda pair: pair[0])


@pytest.mark.parametrize(("line", "command"), COMMANDS, ids=[line for line, _ in COMMANDS])
def test_every_command_and_option_is_documented(line: str, command: click.Command) -> None:
    """Every command, and each of its long options, appears in README.md or docs/."""
    assert line in DOCS
    for param in command.params:
        if isinstance(param, click.Option):
            long = [o for o in param.opts + param.secondary_opts if o.startswith("--")]
            assert any(o in DOCS for o in long), f"{line}: {'/'.join(long)} is not documented"


def config_keys(
    model: type[pydantic.BaseModel], prefix: str = "", seen: frozenset[type] = frozenset()
) -> Iterator[tuple[str, str]]:
    """(dotted path, key) of every key the config file takes, sections included."""
    for name, info in model.model_fields.items():
        spelled = info.validation_alias if isinstance(info.validation_alias, str) else None
        key = spelled or info.alias or name
        yield f"{prefix}{key}", key
        pending = [info.annotation]
        while pending:
            annotation = pending.pop()
            pending.extend(getattr(annotation, "__args__", ()))
            if (
                isinstance(annotation, type)
                and issubclass(annotation, pydantic.BaseModel)
                and annotation not in seen
            ):
                yield from config_keys(annotation, f"{prefix}{key}.", seen | {annotation})


CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()
NAMED = {
    part
    for token in re.findall(r"`([a-z_.]+)`", CONFIGURATION)
    for part in (token, token.rpartition(".")[2], token.partition(".")[0])
}
KEYS = sorted(set(config_keys(models.ConfigFile)))


@pytest.mark.parametrize(("path", "key"), KEYS, ids=[path for path, _ in KEYS])
def test_every_config_key_is_documented(path: str, key: str) -> None:
    """docs/configuration.md names every key the config file takes (`key` or `a.key`)."""
    assert key in NAMED, f"{path} is not in docs/configuration.md"


def test_every_metric_is_documented() -> None:
    """docs/operations.md names every metric the daemon exports."""
    operations = (ROOT / "docs" / "operations.md").read_text()
    names = {metric.name for metric in Metrics().registry.collect()}
    assert len(names) > 10
    assert sorted(n for n in names if n not in operations) == []
