"""`poller sinks test NAME`: one signed poller.test event through a sink, nothing recorded."""

from __future__ import annotations

import base64
import json
import pathlib
from collections.abc import Callable

from standardwebhooks.webhooks import Webhook

from poller.testing import WebhookReceiver, free_port

from .conftest import poller

SECRET = "whsec_" + base64.b64encode(b"sinks-test-secret-of-32-bytes!!!").decode()


def config_text(url: str, store: pathlib.Path, extra_sink: str = "") -> str:
    return (
        f"mistral:\n  base_url: http://127.0.0.1:9/v1\nstore:\n  url: sqlite:///{store}\n"
        f"sinks:\n  - name: hook\n    type: http\n    url: {url}\n    secret: {SECRET}\n"
        f"{extra_sink}"
    )


def test_a_receiver_takes_the_signed_test_event(
    write: Callable[[str], pathlib.Path], tmp_path: pathlib.Path
) -> None:
    """Delivered: exit 0, one line with the answer; signed, valid, and the store untouched."""
    store = tmp_path / "p.db"
    with WebhookReceiver() as receiver:
        path = write(config_text(receiver.url + "/hooks/{resource}/{action}", store))
        result = poller("sinks", "test", "hook", "--config", str(path))
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    assert line.startswith("sink hook: poller.test evt_")
    assert "(HTTP 200, " in line and line.endswith(' ms): {"ok":true}')
    (request,) = receiver.requests
    assert request.path == "/hooks/poller/test"
    Webhook(SECRET).verify(request.body, request.headers)
    envelope = request.json()
    assert envelope["id"] == request.headers["webhook-id"] == line.split()[3]
    assert (envelope["type"], envelope["workspace"], envelope["data"]["sink"]) == (
        "poller.test",
        "default",
        "hook",
    )
    assert not store.exists()  # the test event is never recorded


def test_each_run_sends_a_new_id(
    write: Callable[[str], pathlib.Path], tmp_path: pathlib.Path
) -> None:
    """Two runs send two ids, so a deduplicating receiver takes the second one too."""
    with WebhookReceiver() as receiver:
        path = write(config_text(receiver.url, tmp_path / "p.db"))
        for _ in range(2):
            assert poller("sinks", "test", "hook", "--config", str(path)).returncode == 0
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 2


def test_a_refusal_exits_1_with_the_answer(
    write: Callable[[str], pathlib.Path], tmp_path: pathlib.Path
) -> None:
    """A 4xx from the receiver: exit 1 and one line with its status and body."""
    with WebhookReceiver(lambda _r: 422) as receiver:
        path = write(config_text(receiver.url, tmp_path / "p.db"))
        result = poller("sinks", "test", "hook", "--config", str(path))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == 'poller: sink hook refused the event: HTTP 422: {"error":"refused"}\n'


def test_a_receiver_that_is_down_exits_1(
    write: Callable[[str], pathlib.Path], tmp_path: pathlib.Path
) -> None:
    """Nothing listening: exit 1 and one line naming the connection failure."""
    path = write(config_text(f"http://127.0.0.1:{free_port()}/hook", tmp_path / "p.db"))
    result = poller("sinks", "test", "hook", "--config", str(path))
    assert result.returncode == 1
    assert result.stderr.startswith("poller: sink hook failed: ConnectError")
    assert result.stderr.count("\n") == 1


def test_a_gone_receiver_is_named(
    write: Callable[[str], pathlib.Path], tmp_path: pathlib.Path
) -> None:
    """410 Gone: exit 1 and a line saying the receiver asks poller to stop."""
    with WebhookReceiver(lambda _r: 410) as receiver:
        path = write(config_text(receiver.url, tmp_path / "p.db"))
        result = poller("sinks", "test", "hook", "--config", str(path))
    assert result.returncode == 1
    assert result.stderr.startswith(
        "poller: sink hook gone (the receiver asks poller to stop sending): HTTP 410"
    )


def test_a_file_sink_gets_the_test_event(
    write: Callable[[str], pathlib.Path], tmp_path: pathlib.Path
) -> None:
    """Any sink type: a file sink appends the poller.test envelope."""
    out = tmp_path / "events.jsonl"
    extra = f"  - name: archive\n    type: file\n    path: {out}\n"
    path = write(config_text("http://127.0.0.1:9/", tmp_path / "p.db", extra))
    result = poller("sinks", "test", "archive", "--config", str(path))
    assert result.returncode == 0, result.stderr
    (line,) = out.read_text().splitlines()
    assert json.loads(line)["type"] == "poller.test"
    assert result.stdout.startswith("sink archive: poller.test evt_")


def test_an_unknown_sink_is_a_usage_error(
    write: Callable[[str], pathlib.Path], tmp_path: pathlib.Path
) -> None:
    """A name not in the config: exit 2, one line listing the configured sinks."""
    path = write(config_text("http://127.0.0.1:9/", tmp_path / "p.db"))
    result = poller("sinks", "test", "nope", "--config", str(path))
    assert result.returncode == 2
    assert result.stderr == f"poller: no sink named 'nope' in {path} (sinks: hook)\n"
