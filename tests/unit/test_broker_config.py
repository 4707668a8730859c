"""Broker sink config: defaults, one-line errors, secrets in URLs, target templates."""

from __future__ import annotations

import datetime as dt
import textwrap

import pytest

from poller import asyncapi, config
from poller.app import secrets_of
from poller.exceptions import ConfigError
from poller.model import Event
from poller.sinks import base


def parse(sinks: str) -> config.Config:
    text = "sinks:\n" + textwrap.indent(textwrap.dedent(sinks), "  ")
    return config.parse(text, source="poller.yaml", environ={"BUS_PASSWORD": "pw-from-env"})


def error(sinks: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse(sinks)
    return str(info.value)


def test_defaults_of_each_broker_type() -> None:
    """Default subject, routing key and topic, qos, format and timeout, as documented."""
    cfg = parse(
        """\
        - {name: n, type: nats, url: "nats://127.0.0.1:4222"}
        - {name: a, type: amqp, url: "amqp://127.0.0.1/", exchange: poller}
        - {name: r, type: redis, url: "redis://127.0.0.1:6379/0", stream: "poller:events"}
        - {name: m, type: mqtt, url: "mqtt://127.0.0.1:1883"}
        """
    )
    nats, amqp, redis, mqtt = cfg.sinks
    assert isinstance(nats, config.NatsSinkConfig)
    assert nats.subject == "poller.{resource}.{action}"
    assert isinstance(amqp, config.AmqpSinkConfig)
    assert amqp.routing_key == "{resource}.{action}"
    assert isinstance(redis, config.RedisSinkConfig)
    assert redis.maxlen is None
    assert isinstance(mqtt, config.MqttSinkConfig)
    assert mqtt.topic == "poller/{resource}/{action}" and mqtt.qos == 1
    assert {s.format for s in (nats, amqp, redis, mqtt)} == {"standard"}
    # the AsyncAPI document describes these same channels
    assert (asyncapi.NATS_SUBJECT, asyncapi.AMQP_ROUTING_KEY, asyncapi.MQTT_TOPIC) == (
        nats.subject,
        amqp.routing_key,
        mqtt.topic,
    )
    assert {s.timeout for s in (nats, amqp, redis, mqtt)} == {15.0}


@pytest.mark.parametrize(
    ("sink", "message"),
    [
        (
            "{name: n, type: nats}",
            "poller.yaml:2: sinks[0].url: missing; a nats sink needs the broker's URL, "
            "e.g. url: nats://127.0.0.1:4222",
        ),
        (
            "{name: n, type: nats, url: 'nats://h', subject: 'poller.{job}'}",
            "poller.yaml:2: sinks[0].subject: unknown placeholder {job}; "
            "use {resource}, {action}, {type}, {workspace}",
        ),
        (
            "{name: n, type: nats, url: 'nats://h', subject: 'poller.>'}",
            "poller.yaml:2: sinks[0].subject: '>' cannot appear here; "
            "use e.g. poller.{workspace}.{resource}.{action}",
        ),
        (
            "{name: a, type: amqp, url: 'amqp://h/'}",
            "poller.yaml:2: sinks[0].exchange: missing; an amqp sink needs the exchange to "
            "publish to, e.g. exchange: poller",
        ),
        (
            "{name: r, type: redis, url: 'redis://h', stream: 'events:{type}'}",
            "poller.yaml:2: sinks[0].stream: a stream is one key without placeholders or "
            "whitespace, e.g. poller:events",
        ),
        (
            "{name: r, type: redis, url: 'redis://:pw@h:6379/events', stream: s}",
            "poller.yaml:2: sinks[0].url: '/events' is not a database number; "
            "use e.g. redis://127.0.0.1:6379/0 (or no path, for database 0)",
        ),
        (
            "{name: m, type: mqtt, url: 'mqtt://h', qos: 3}",
            "poller.yaml:2: sinks[0].qos: qos is 0 (at most once), 1 (at least once, the default) "
            "or 2 (exactly once)",
        ),
    ],
)
def test_errors_say_what_to_change(sink: str, message: str) -> None:
    """Each broker key's mistakes give one line naming the key and the fix."""
    assert error(f"- {sink}\n") == message


def test_url_credentials_are_secrets_and_masked_in_repr() -> None:
    """Passwords in broker URLs (and a NATS token) go to the redactor, never into repr."""
    cfg = parse(
        """\
        - {name: n, type: nats, url: "nats://nats-token-1@127.0.0.1:4222"}
        - {name: a, type: amqp, url: "amqp://poller:${BUS_PASSWORD}@127.0.0.1/", exchange: e}
        - {name: r, type: redis, url: "redis://:redis-pw-2@127.0.0.1:6379/0", stream: s}
        - {name: m, type: mqtt, url: "mqtt://poller:mqtt%2Fpw@127.0.0.1:1883"}
        """
    )
    secrets = secrets_of(cfg)
    for secret in ("nats-token-1", "pw-from-env", "redis-pw-2", "mqtt%2Fpw", "mqtt/pw"):
        assert secret in secrets
    for secret in ("pw-from-env", "redis-pw-2", "mqtt%2Fpw"):
        assert secret not in repr(cfg)


EVENT = Event(
    id="evt_01",
    type="fine_tuning_job.succeeded",
    workspace="research",
    resource_id="ftjob-1",
    timestamp=dt.datetime(2026, 11, 28, tzinfo=dt.UTC),
    data={},
)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("poller.{resource}.{action}", "poller.fine_tuning_job.succeeded"),
        ("{resource}.{action}", "fine_tuning_job.succeeded"),
        ("poller/{workspace}/{type}", "poller/research/fine_tuning_job.succeeded"),
        ("fixed", "fixed"),
        ("{other}", "{other}"),
    ],
)
def test_expand(template: str, expected: str) -> None:
    """Templates take {resource}, {action}, {type} and {workspace}, nothing else."""
    assert base.expand(template, EVENT) == expected
