"""deploy/ and config/: what can be checked without systemd or a Docker engine is checked."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator

import httpx
import pytest
import yaml

from poller import config as config_mod
from poller.cli.sim import demo_config
from poller.model import Event
from poller.simulator import Simulator, SimulatorServer
from poller.sinks.http import HttpSink
from poller.testing import free_port

from .conftest import ROOT, env

UNIT = ROOT / "deploy" / "systemd" / "poller.service"
DOCKER = ROOT / "deploy" / "docker"
SECRET = "whsec_" + base64.b64encode(b"deploy-test-secret-of-32-bytes!!").decode()


def unit_keys(text: str) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key, []).append(value)
    return sections


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of deploy/docker/Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (DOCKER / "Dockerfile").read_text())
    return [
        (parts[0].upper(), parts[1] if len(parts) > 1 else "")
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
        for parts in [line.strip().split(None, 1)]
    ]


def instruction(name: str) -> list[str]:
    return [args for op, args in dockerfile() if op == name]


def test_unit_file_declares_notify_watchdog_and_hardening() -> None:
    """The unit is Type=notify with a watchdog, reload by SIGHUP, and the hardening keys."""
    service = unit_keys(UNIT.read_text())["Service"]
    expected = {
        "Type": "notify",
        "DynamicUser": "yes",
        "StateDirectory": "poller",
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "ExecReload": "/bin/kill -HUP $MAINPID",
    }
    assert {k: service[k][-1] for k in expected} == expected
    assert int(service["WatchdogSec"][-1]) > 0
    assert service["EnvironmentFile"] == ["-/etc/poller/poller.env"]
    assert service["ExecStart"][-1].split()[1:] == ["run", "--config", "/etc/poller/poller.yaml"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is absent")
def test_unit_file_passes_systemd_analyze_verify(tmp_path: pathlib.Path) -> None:
    """`systemd-analyze verify` accepts the unit without a warning (ExecStart pointed at poller)."""
    launcher = tmp_path / "poller"
    launcher.write_text(f'#!/bin/sh\nexec {sys.executable} -m poller "$@"\n')
    launcher.chmod(0o755)
    unit = tmp_path / "poller.service"
    unit.write_text(UNIT.read_text().replace("/opt/poller/bin/poller", str(launcher)))
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stderr) == (0, "")


def test_dockerfile_is_slim_non_root_with_volume_and_healthcheck() -> None:
    """python:3.11-slim, a non-root user, the state volume, a health check on /healthz."""
    assert instruction("FROM") == ["python:3.11-slim"]
    (user,) = instruction("USER")
    assert user not in ("root", "0")
    assert instruction("VOLUME") == ["/var/lib/poller"]
    (health,) = instruction("HEALTHCHECK")
    assert "http://127.0.0.1:9464/healthz" in health
    assert json.loads(instruction("ENTRYPOINT")[0]) == ["poller"]
    assert json.loads(instruction("CMD")[0]) == ["run", "--config", "/etc/poller/poller.yaml"]


def test_dockerfile_copies_only_what_exists_and_the_context_keeps() -> None:
    """Each COPY source exists in the repository and .dockerignore lets it through."""
    kept = {
        line[1:]
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    for args in instruction("COPY"):
        *sources, _target = args.split()
        for source in sources:
            assert (ROOT / source).exists(), source
            assert source in kept, f"{source} is excluded from the build context"


@pytest.fixture
def plain_venv(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A fresh venv with poller installed from a copy of the repository, as the image does.

    Its dependencies come from the running interpreter's site-packages (a .pth line), so the
    install step itself needs no network beyond pip's build backend.
    """
    base = tmp_path_factory.mktemp("venv")
    src = base / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "poller", src / "poller", ignore=shutil.ignore_patterns("__pycache__"))
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    pathlib.Path(purelib, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
         str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr
    return venv


@pytest.fixture
def sim_url() -> Iterator[str]:
    with SimulatorServer(Simulator(seed=5)) as server:
        yield server.url


def test_entrypoint_and_healthcheck_work_in_a_plain_venv(
    plain_venv: pathlib.Path, sim_url: str, tmp_path: pathlib.Path
) -> None:
    """ENTRYPOINT + CMD run the installed `poller` on the image's config; HEALTHCHECK passes."""
    port = free_port()
    image_config = (DOCKER / "poller.yaml").read_text()
    config = tmp_path / "poller.yaml"
    config.write_text(
        image_config.replace("0.0.0.0:9464", f"127.0.0.1:{port}").replace(
            "/var/lib/poller", str(tmp_path)
        )
    )
    command = [
        *json.loads(instruction("ENTRYPOINT")[0]),
        *json.loads(instruction("CMD")[0]),
    ]
    command[0] = str(plain_venv / "bin" / command[0])
    command[command.index("/etc/poller/poller.yaml")] = str(config)
    health = json.loads(instruction("HEALTHCHECK")[0].split("CMD", 1)[1])
    health = [str(plain_venv / "bin" / "python"), *health[1:]]
    health = [part.replace(":9464/", f":{port}/") for part in health]
    log = tmp_path / "run.log"
    child_env = env(MISTRAL_API_KEY="", MISTRAL_BASE_URL=sim_url)
    child_env.pop("PYTHONPATH")  # the installed package, not the work tree
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=child_env, cwd=tmp_path
        )
    try:
        deadline = time.monotonic() + 20
        while subprocess.run(health, env=child_env, capture_output=True).returncode != 0:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
    assert code == 0, log.read_text()
    assert (
        str(plain_venv)
        in subprocess.run(
            [plain_venv / "bin" / "python", "-c", "import poller; print(poller.__file__)"],
            capture_output=True,
            text=True,
            env=child_env,
            cwd=tmp_path,
        ).stdout
    )


def test_compose_file_references_what_exists() -> None:
    """compose.yaml is valid YAML; its build, mounts and commands point at real things."""
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"simulator", "receiver", "poller"}
    for name in ("simulator", "poller"):
        build = services[name]["build"]
        assert (DOCKER / build["context"] / build["dockerfile"]).resolve() == (
            DOCKER / "Dockerfile"
        ).resolve()
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DOCKER / source).exists(), source
    simulate = services["simulator"]["command"]
    assert simulate[0] == "simulate" and "0.0.0.0" in simulate
    assert "state" in compose["volumes"]


def compose_default(variable: str) -> str:
    text = (DOCKER / "compose.yaml").read_text()
    match = re.search(r"\$\{" + variable + r":-([^}]+)\}", text)
    assert match is not None
    return match.group(1)


@pytest.mark.parametrize(
    ("path", "environ"),
    [
        (ROOT / "config" / "demo.yaml", {}),
        (DOCKER / "poller.yaml", {"MISTRAL_API_KEY": "sk-x"}),
        (DOCKER / "poller-demo.yaml", {"WEBHOOK_SECRET": compose_default("WEBHOOK_SECRET")}),
    ],
)
def test_shipped_configs_load(path: pathlib.Path, environ: dict[str, str]) -> None:
    """Every config file shipped for demos and images is valid."""
    config = config_mod.load(path, environ=environ)
    assert config.ops.listen is not None


def test_demo_config_file_matches_poller_demo() -> None:
    """config/demo.yaml polls and delivers like `poller demo`'s embedded configuration."""
    from_file = config_mod.load(ROOT / "config" / "demo.yaml", environ={})
    embedded = demo_config("http://127.0.0.1:8080/v1", "sqlite:///poller-demo.db")
    assert from_file.workspaces == embedded.workspaces
    assert (from_file.store, from_file.sinks, from_file.log) == (
        embedded.store,
        embedded.sinks,
        embedded.log,
    )


@pytest.fixture
def receiver(tmp_path: pathlib.Path) -> Iterator[tuple[str, pathlib.Path]]:
    """deploy/docker/receiver.py running on a free port; yields (URL, its output file)."""
    port = free_port()
    out = tmp_path / "receiver.out"
    with out.open("wb") as handle:
        proc = subprocess.Popen(
            [sys.executable, str(DOCKER / "receiver.py")],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, "WEBHOOK_SECRET": SECRET, "PORT": str(port)},
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while "listening" not in out.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, out.read_text()
        time.sleep(0.05)
    try:
        yield url, out
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_sample_receiver_takes_signed_webhooks_only(
    receiver: tuple[str, pathlib.Path],
) -> None:
    """The compose receiver accepts poller's signature and refuses a wrong one."""
    url, out = receiver
    event = Event("evt_1", "file.uploaded", "default", "f1", dt.datetime.now(dt.UTC), {"id": "f1"})
    async with httpx.AsyncClient() as client:
        good = await HttpSink("r", url + "/w/{resource}", client=client, secrets=[SECRET]).deliver(
            event
        )
        other = "whsec_" + base64.b64encode(b"some-other-secret-of-32-bytes!!!").decode()
        bad = await HttpSink("r", url, client=client, secrets=[other]).deliver(event)
    assert (good.ok, good.status_code) == (True, 204)
    assert (bad.ok, bad.status_code) == (False, 401)
    (line,) = [json.loads(x) for x in out.read_text().splitlines() if x.startswith("{")]
    assert line == {"path": "/w/file", "id": "evt_1", "type": "file.uploaded", "data": {"id": "f1"}}


def test_kubernetes_manifest_runs_two_replicas_on_postgresql() -> None:
    """deploy/kubernetes: 2 replicas rolled one at a time, /readyz and /healthz probes, Secret
    env, ConfigMap config."""
    docs = list(yaml.safe_load_all((ROOT / "deploy" / "kubernetes" / "poller.yaml").read_text()))
    by_kind = {doc["kind"]: doc for doc in docs}
    assert set(by_kind) == {"ConfigMap", "Deployment"}, "the Secret is never committed"
    deployment = by_kind["Deployment"]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = container[probe]["httpGet"]
        assert get["path"] == path and ports[get["port"]] == 9464
    assert container["envFrom"] == [{"secretRef": {"name": "poller"}}]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"]["configMap"]["name"] == by_kind["ConfigMap"]["metadata"]["name"]
    assert container["args"] == ["run", "--config", f"{mounts['config']}/poller.yaml"]
    loaded = config_mod.parse(
        by_kind["ConfigMap"]["data"]["poller.yaml"],
        environ={
            "MISTRAL_API_KEY": "k",
            "WEBHOOK_SECRET": SECRET,
            "POLLER_STORE_URL": "postgresql+psycopg://poller:pw@db.internal/poller",
            "POD_NAME": "poller-7d9f-abc",
        },
    )
    assert loaded.store.url.startswith("postgresql+psycopg://")
    assert (loaded.ha.replica_id, loaded.ops.listen) == ("poller-7d9f-abc", "0.0.0.0:9464")


def test_dockerfile_installs_postgres_and_every_broker_sink() -> None:
    """The image installs poller with the postgres and brokers extras."""
    assert any('"/src[postgres,brokers]"' in args for args in instruction("RUN"))
