"""Typed configuration: YAML with line numbers, ``${VAR}`` expansion, one-line errors.

The file as written (see ``docs/configuration.md``) is validated by :class:`ConfigFile` and
its ``*Section`` models; :func:`parse` then normalises it into :class:`Config`, whose values
are effective: every workspace carries its merged ``poll`` and ``sources``, defaults are
filled in, and nothing is left for callers to merge. Every problem becomes one
:class:`~poller.exceptions.ConfigError` line ``<file>:<line>: <key>: <what to change>``, and
every problem found is reported at once (a file that is not YAML stops at its first).

The parts, each importable on its own: ``fields`` (field types and value checks), ``models``
(the pydantic models), ``reader`` (YAML with line numbers, ``${VAR}``), ``errors`` (pydantic
errors as one line), ``across`` (checks across sections), ``build`` (the file as written
into :class:`Config`) and ``partial`` (the config of a command that reads only part of it).
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable, Mapping
from typing import Any

from poller.config import partial
from poller.config.build import build
from poller.config.fields import (
    DEFAULT_BASE_URL,
    RESERVED_HEADERS,
    STORE_SCHEMES,
    URL_PLACEHOLDERS,
    BaseUrl,
    Concurrency,
    Duration,
    HeaderName,
    Headers,
    LeaseTtl,
    Listen,
    OneLine,
    OptionalSecret,
    PageSize,
    PositiveDuration,
    PositiveInt,
    SinkName,
    SinkUrl,
    Size,
    StoreUrl,
    Threshold,
    WebhookSecrets,
    WorkspaceName,
    mask_url,
    split_listen,
)
from poller.config.models import (
    DEFAULT_STORE_URL,
    SINK_EXTRAS,
    SINK_TYPES,
    SOURCE_NAMES,
    AmqpSinkConfig,
    BrokerSinkConfig,
    Config,
    ConfigFile,
    FileSinkConfig,
    HaConfig,
    HttpSinkConfig,
    LogConfig,
    LogSinkConfig,
    MistralSection,
    MqttSinkConfig,
    NatsSinkConfig,
    OpsConfig,
    PollConfig,
    PollOverrides,
    ProxyConfig,
    ProxySection,
    RedisSinkConfig,
    RetryConfig,
    ShutdownConfig,
    SinkConfig,
    SourceConfig,
    SourceEntry,
    SourcesConfig,
    SourceSection,
    SourcesSection,
    StoreConfig,
    StoreSection,
    Workspace,
    WorkspaceEntry,
)
from poller.config.reader import EXAMPLE_PATH, Path, Where, read_yaml
from poller.exceptions import ConfigError

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_STORE_URL",
    "EXAMPLE_PATH",
    "RESERVED_HEADERS",
    "SINK_EXTRAS",
    "SINK_TYPES",
    "SOURCE_NAMES",
    "STORE_SCHEMES",
    "URL_PLACEHOLDERS",
    "AmqpSinkConfig",
    "BaseUrl",
    "BrokerSinkConfig",
    "Concurrency",
    "Config",
    "ConfigFile",
    "Duration",
    "FileSinkConfig",
    "HaConfig",
    "HeaderName",
    "Headers",
    "HttpSinkConfig",
    "LeaseTtl",
    "Listen",
    "LogConfig",
    "LogSinkConfig",
    "MistralSection",
    "MqttSinkConfig",
    "NatsSinkConfig",
    "OneLine",
    "OpsConfig",
    "OptionalSecret",
    "PageSize",
    "Path",
    "PollConfig",
    "PollOverrides",
    "PositiveDuration",
    "PositiveInt",
    "ProxyConfig",
    "ProxySection",
    "RedisSinkConfig",
    "RetryConfig",
    "ShutdownConfig",
    "SinkConfig",
    "SinkName",
    "SinkUrl",
    "Size",
    "SourceConfig",
    "SourceEntry",
    "SourceSection",
    "SourcesConfig",
    "SourcesSection",
    "StoreConfig",
    "StoreSection",
    "StoreUrl",
    "Threshold",
    "WebhookSecrets",
    "Workspace",
    "WorkspaceEntry",
    "WorkspaceName",
    "from_mapping",
    "json_schema",
    "load",
    "mask_url",
    "parse",
    "resolve_path",
    "split_listen",
]

DEFAULT_CONFIG_PATH = "/etc/poller/poller.yaml"


def resolve_path(cli_value: str | None, environ: Mapping[str, str] | None = None) -> pathlib.Path:
    """The config file to read: ``--config``, else ``$POLLER_CONFIG``, else the default."""
    env = os.environ if environ is None else environ
    return pathlib.Path(cli_value or env.get("POLLER_CONFIG") or DEFAULT_CONFIG_PATH)


def load(
    path: str | os.PathLike[str],
    environ: Mapping[str, str] | None = None,
    *,
    directory_exists: Callable[[str], bool] | None = None,
    reads: partial.Reads | None = None,
    on_skip: Callable[[partial.Skipped], None] | None = None,
) -> Config:
    """Read and validate the config file at ``path``.

    ``directory_exists`` (e.g. ``os.path.isdir``) makes a SQLite store whose directory is
    missing one of the problems; without it the filesystem is not looked at. ``reads``
    (e.g. ``partial.operator()``) says which parts the caller uses: a ``${VAR}`` not set
    elsewhere leaves its part out instead of being a problem, and ``on_skip`` hears what.
    """
    source = os.fspath(path)
    try:
        text = pathlib.Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(
            f"cannot read the config file: {reason}; pass --config PATH or set POLLER_CONFIG",
            path=source,
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"cannot read the config file: it is not UTF-8 text (byte {exc.start})", path=source
        ) from None
    return parse(
        text,
        source=source,
        environ=environ,
        directory_exists=directory_exists,
        reads=reads,
        on_skip=on_skip,
    )


def parse(
    text: str,
    *,
    source: str = "<config>",
    environ: Mapping[str, str] | None = None,
    directory_exists: Callable[[str], bool] | None = None,
    reads: partial.Reads | None = None,
    on_skip: Callable[[partial.Skipped], None] | None = None,
) -> Config:
    """Validate YAML ``text``; ``source`` names it in errors (``load`` tells the rest)."""
    env = os.environ if environ is None else environ
    where = Where(source)
    data = read_yaml(text, where, env)
    if reads is not None:
        data, skipped = partial.skip(data, where, reads)
        config = build(data, where, env, directory_exists)
        if skipped is not None and on_skip is not None:
            on_skip(skipped)
        return config
    return build(data, where, env, directory_exists)


def from_mapping(data: Mapping[str, Any], *, source: str = "<config>") -> Config:
    """Validate an already-parsed, already-expanded mapping shaped like the file."""
    return build(data, Where(source), os.environ)


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of the YAML file, as written before ``${VAR}`` expansion."""
    schema = ConfigFile.model_json_schema(mode="validation")
    schema["not"] = {"required": ["mistral", "workspaces"]}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
