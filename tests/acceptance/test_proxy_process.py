"""The `poller` process with its proxy and actions: the official SDK through `poller run`."""

from __future__ import annotations

import json
import pathlib
import signal
import socket
from collections.abc import Callable, Iterator

import httpx
import pytest

from poller.simulator import Simulator, SimulatorServer
from poller.testing import free_port

from .conftest import poller, spawn, wait_until

sdk = pytest.importorskip("mistralai.client")

HELLO = [{"role": "user", "content": "Hello from the acceptance test"}]


@pytest.fixture
def sim() -> Iterator[tuple[Simulator, SimulatorServer]]:
    simulator = Simulator(seed=8, api_key="sk-acceptance-key")
    with SimulatorServer(simulator) as server:
        yield simulator, server


def config_text(api: str, tmp: pathlib.Path, port: int | None = None) -> str:
    text = (
        f"mistral:\n  base_url: {api}\n  api_key: sk-acceptance-key\n"
        f"store:\n  url: sqlite:///{tmp / 'p.db'}\n"
        "sources:\n  batch_jobs: false\n  fine_tuning_jobs: false\n  files: false\n"
        "  models: false\n"
        f"sinks:\n  - name: jsonl\n    type: file\n    path: {tmp / 'events.jsonl'}\n"
        "log:\n  level: info\n  format: json\n"
    )
    if port is not None:
        text += f"proxy:\n  listen: 127.0.0.1:{port}\n"
    return text


def lines(path: pathlib.Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_sdk_through_poller_run_records_once_per_call(
    sim: tuple[Simulator, SimulatorServer],
    write: Callable[[str], pathlib.Path],
    tmp_path: pathlib.Path,
) -> None:
    """The SDK chats (plain and streamed) through `poller run`; each call is one sink line."""
    _simulator, server = sim
    port = free_port()
    path = write(config_text(server.url, tmp_path, port))
    log = tmp_path / "run.log"
    proc = spawn(["run", "--config", str(path)], log)
    try:
        wait_until(lambda: "proxy_listening" in log.read_text())
        with sdk.Mistral(api_key="sk-acceptance-key", server_url=f"http://127.0.0.1:{port}") as m:
            plain = m.chat.complete(model="mistral-small-latest", messages=HELLO)
            with m.chat.stream(model="mistral-small-latest", messages=HELLO) as events:
                chunks = [e.data for e in events]
        sink = tmp_path / "events.jsonl"
        wait_until(lambda: len(lines(sink)) >= 2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, log.read_text()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    got = lines(tmp_path / "events.jsonl")
    assert [e["type"] for e in got] == ["chat_completion.created"] * 2
    data = [e["data"] for e in got]
    assert [d["id"] for d in data] == [plain.id, chunks[0].id]  # type: ignore[index]
    streamed = "".join(str(c.choices[0].delta.content or "") for c in chunks)
    assert [d["content"] for d in data] == [plain.choices[0].message.content, streamed]  # type: ignore[index]
    assert "sk-acceptance-key" not in log.read_text()


def test_action_chat_prints_answer_and_once_delivers(
    sim: tuple[Simulator, SimulatorServer],
    write: Callable[[str], pathlib.Path],
    tmp_path: pathlib.Path,
) -> None:
    """`poller action chat` prints the API's JSON; `poller once` then delivers its event."""
    _simulator, server = sim
    path = write(config_text(server.url, tmp_path))
    done = poller(
        "action", "chat", "--config", str(path), "--model", "mistral-small-latest",
        "--content", "Hi", "--max-tokens", "3",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["choices"][0]["finish_reason"] == "length"
    assert "recorded chat_completion.created" in done.stderr
    assert poller("once", "--config", str(path)).returncode == 0
    (event,) = lines(tmp_path / "events.jsonl")
    assert event["type"] == "chat_completion.created"
    assert event["data"]["id"] == answer["id"]  # type: ignore[index]


def test_action_request_stream_prints_json_lines(
    sim: tuple[Simulator, SimulatorServer],
    write: Callable[[str], pathlib.Path],
    tmp_path: pathlib.Path,
) -> None:
    """A streamed request prints one JSON chunk per line and records the assembled answer."""
    _simulator, server = sim
    path = write(config_text(server.url, tmp_path))
    body = json.dumps({"model": "codestral-latest", "prompt": "def f(", "stream": True})
    done = poller("action", "request", "POST", "/v1/fim/completions", "--json", body,
                  "--config", str(path))  # fmt: skip
    assert done.returncode == 0, done.stderr
    chunks = [json.loads(x) for x in done.stdout.splitlines()]
    assert chunks[-1]["usage"]["completion_tokens"] == len(chunks) - 2
    assert "recorded fim_completion.created" in done.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [(["chat", "--model", "mistral-nope", "--content", "hi"], 1,
      "poller: POST /chat/completions: HTTP 400: Invalid model: mistral-nope"),
     (["analyze-image", "--model", "mistral-small-latest", "--image-file", "missing.png",
       "--prompt", "what?"], 2, "poller: --image-file missing.png: no such file"),
     (["request", "POST", "/embeddings", "--json", "{oops"], 2,
      "poller: --json is not valid JSON (Expecting property name enclosed in double quotes "
      "at line 1, column 2); pass one JSON value, e.g. "
      """--json '{"model": "mistral-embed", "input": "hi"}'""")],
)  # fmt: skip
def test_action_bad_input_is_one_line(
    sim: tuple[Simulator, SimulatorServer],
    write: Callable[[str], pathlib.Path],
    tmp_path: pathlib.Path,
    args: list[str],
    code: int,
    message: str,
) -> None:
    """An unknown model, a missing file or invalid JSON: one line on stderr, non-zero exit."""
    _simulator, server = sim
    path = write(config_text(server.url, tmp_path))
    done = poller("action", *args, "--config", str(path))
    assert (done.returncode, done.stdout, done.stderr) == (code, "", message + "\n")


def test_run_with_proxy_port_taken_fails_with_one_line(
    sim: tuple[Simulator, SimulatorServer],
    write: Callable[[str], pathlib.Path],
    tmp_path: pathlib.Path,
) -> None:
    """A proxy address already in use ends `poller run` with exit 2 and a line naming the key."""
    _simulator, server = sim
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        path = write(config_text(server.url, tmp_path, port))
        done = poller("run", "--config", str(path), timeout=30)
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{path}: proxy.listen: cannot listen on")


def test_simulate_serves_the_empty_scenario(tmp_path: pathlib.Path) -> None:
    """`poller simulate` with its default (empty) scenario serves the API until SIGTERM."""
    port = free_port()
    proc = spawn(["simulate", "--port", str(port)], tmp_path / "sim.log")
    try:
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        body = {"model": "mistral-small-latest", "messages": HELLO}

        def answered() -> bool:
            try:
                return httpx.post(url, json=body, timeout=2).status_code == 200
            except httpx.HTTPError:
                return proc.poll() is not None

        wait_until(answered)
        assert proc.poll() is None, (tmp_path / "sim.log").read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
