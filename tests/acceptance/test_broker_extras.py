"""`poller check-config` names the extra a broker sink needs when its library is missing."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

from .conftest import ROOT, env

CONFIG = """\
sinks:
  - name: console
    type: log
  - name: hook
    type: file
    path: /tmp/events.jsonl
  - name: bus
    type: {type}
    url: {url}
{extra}"""
BROKERS = [
    ("nats", "nats", "nats://127.0.0.1:4222", ""),
    ("amqp", "aio_pika", "amqp://guest:guest@127.0.0.1:5672/", "    exchange: poller\n"),
    ("redis", "redis", "redis://127.0.0.1:6379/0", "    stream: poller:events\n"),
    ("mqtt", "aiomqtt", "mqtt://127.0.0.1:1883", ""),
]
# The module is made unimportable the way an absent package is: None in sys.modules.
BLOCKED = "import sys; sys.modules[{module!r}] = None; from poller.cli import main; main()"


def check_config(path: pathlib.Path, blocked: str | None) -> subprocess.CompletedProcess[str]:
    code = BLOCKED.format(module=blocked) if blocked else "from poller.cli import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env(),
        cwd=ROOT,
    )


@pytest.mark.parametrize(("kind", "module", "url", "extra"), BROKERS, ids=[b[0] for b in BROKERS])
def test_missing_client_library_names_the_extra(
    tmp_path: pathlib.Path, kind: str, module: str, url: str, extra: str
) -> None:
    """Without its client library, a broker sink's config fails with the pip line to run."""
    path = tmp_path / "poller.yaml"
    path.write_text(CONFIG.format(type=kind, url=url, extra=extra))
    result = check_config(path, module)
    assert result.returncode == 2
    assert result.stderr == (
        f"{path}:8: sinks[2].type: {kind} needs the {kind} extra: pip install 'poller[{kind}]'\n"
    )


def test_installed_client_libraries_pass(tmp_path: pathlib.Path) -> None:
    """With the libraries installed (the test extras include every broker), the config is ok."""
    path = tmp_path / "poller.yaml"
    text = "sinks:\n"
    for kind, _, url, extra in BROKERS:
        text += f"  - name: {kind}-bus\n    type: {kind}\n    url: {url}\n{extra}"
    path.write_text(text)
    result = check_config(path, None)
    assert result.returncode == 0, result.stderr
    assert "sinks: nats-bus (nats), amqp-bus (amqp), redis-bus (redis), mqtt-bus (mqtt)" in (
        result.stdout
    )
