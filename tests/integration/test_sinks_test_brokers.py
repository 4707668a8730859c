"""`poller sinks test` through each broker sink: the broker's answer, or why it failed."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from poller.cli import main
from poller.testing import free_port
from tests.integration.brokers import MOSQUITTO, REDIS, require, unique, write_config


def sinks_test(tmp_path: pathlib.Path, sink: dict[str, Any]) -> tuple[int, str, str]:
    """Exit status, all it wrote, and the last line of `poller sinks test bus`."""
    path = write_config(tmp_path / "p.yaml", f"sqlite:///{tmp_path}/p.db", {"name": "bus", **sink})
    result = CliRunner().invoke(main, ["sinks", "test", "bus", "--config", str(path)])
    return result.exit_code, result.output, result.output.splitlines()[-1]


def test_redis_answers_with_the_entry_id(tmp_path: pathlib.Path) -> None:
    """redis: exit 0 and the stream and entry XADD answered."""
    require("Redis", REDIS)
    stream = unique("poller-test")
    url = f"redis://127.0.0.1:{REDIS}/0"
    try:
        code, _output, line = sinks_test(tmp_path, {"type": "redis", "url": url, "stream": stream})
    finally:
        redis.Redis.from_url(url).delete(stream)
    assert code == 0, line
    assert line.startswith("sink bus: poller.test evt_")
    assert f": added to stream {stream} as entry " in line


def test_mqtt_answers_with_its_puback(tmp_path: pathlib.Path) -> None:
    """mqtt: exit 0 and the PUBACK at the default qos 1."""
    require("Mosquitto", MOSQUITTO)
    code, _output, line = sinks_test(
        tmp_path, {"type": "mqtt", "url": f"mqtt://127.0.0.1:{MOSQUITTO}"}
    )
    assert code == 0, line
    assert line.startswith("sink bus: poller.test evt_") and line.endswith(": PUBACK")


@pytest.mark.parametrize(
    ("sink", "error"),
    [
        ({"type": "nats", "url": "nats://u:Secret-n1@127.0.0.1:{port}"}, "NoServersError"),
        ({"type": "amqp", "url": "amqp://u:Secret-a1@127.0.0.1:{port}/", "exchange": "x"}, "AMQP"),
        ({"type": "redis", "url": "redis://:Secret-r1@127.0.0.1:{port}/0", "stream": "s"}, "Conn"),
        ({"type": "mqtt", "url": "mqtt://u:Secret-m1@127.0.0.1:{port}"}, "MqttError"),
    ],
)
def test_a_broker_that_is_down_exits_1_naming_the_failure(
    tmp_path: pathlib.Path, sink: dict[str, Any], error: str
) -> None:
    """Nothing listening: exit 1 and one line naming the failure, without the URL's password."""
    down = {**sink, "url": sink["url"].format(port=free_port()), "timeout": "5s"}
    code, _output, line = sinks_test(tmp_path, down)
    assert code == 1
    assert line.startswith(f"poller: sink bus failed: {error}"), line
    assert "Secret" not in line
