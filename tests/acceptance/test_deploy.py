"""deploy/ and config/: what can be checked without systemd or a Docker engine is checked."""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import json
import os
import pathlib
import re
import shlex
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

from . import deployfiles
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


def image() -> deployfiles.Image:
    return deployfiles.Image.read((DOCKER / "Dockerfile").read_text())


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
    command = list(image().command)
    command[0] = str(plain_venv / "bin" / command[0])
    command[command.index("/etc/poller/poller.yaml")] = str(config)
    health = [str(plain_venv / "bin" / "python"), *image().health[1:]]
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


def test_compose_poller_service_fits_the_image() -> None:
    """compose's poller runs as the image's user, mounts its config where the image reads it,
    keeps state in the image's volume, publishes the config's ops port and passes its vars."""
    facts = image()
    service = yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]["poller"]
    uid, gid = facts.user or (0, 0)
    assert service.get("user", f"{uid}:{gid}") == f"{uid}:{gid}" and uid != 0
    mounts = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
    config_file = DOCKER / mounts[facts.config_path()]
    assert set(mounts) - {facts.config_path()} == set(facts.volumes)
    loaded = config_mod.load(
        config_file, environ={**facts.env, "WEBHOOK_SECRET": compose_default("WEBHOOK_SECRET")}
    )
    assert loaded.ops.listen is not None
    port = config_mod.split_listen(loaded.ops.listen)[1]
    published = [int(p.rsplit(":", 1)[1]) for p in service["ports"]]
    assert published == [port] and port in facts.exposed
    assert deployfiles.required_variables(config_file.read_text()) <= set(service["environment"])


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


def readme_block(heading: str) -> list[str]:
    """The command lines of the first ```sh block under README.md's ``heading``."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index(f"\n{heading}\n") :]
    block = section[section.index("```sh\n") + 6 :]
    return block[: block.index("```")].splitlines()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is absent")
def test_readme_systemd_steps_work_as_written(
    plain_venv: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """README's systemd steps, run as written (/opt and /etc in a scratch directory, no sudo,
    no systemctl), install the starting config and secrets where the unit reads them, and
    their check-config passes with the installed poller."""
    root = tmp_path / "root"
    (root / "etc" / "systemd" / "system").mkdir(parents=True)

    def sandbox(text: str) -> str:
        return text.replace("/opt/poller", str(plain_venv)).replace("/etc/", f"{root}/etc/")

    walked = []
    venv = ""
    for line in readme_block("### With systemd"):
        command = line.split("  #")[0].strip()
        if made := re.fullmatch(r"sudo python3\.11 -m venv (\S+)", command):
            venv = made.group(1)  # the fixture made it: a fresh venv
        elif installs := re.fullmatch(r"sudo (\S+)/bin/pip install \.", command):
            assert installs.group(1) == venv  # the fixture installed the repository there
        elif not re.match(r"(sudo )?(systemctl|journalctl)\b", command):
            walked.append(sandbox(command.replace("sudo ", "")))
    assert venv == "/opt/poller"
    child_env = env()
    child_env.pop("PYTHONPATH")  # the installed package, not the work tree
    checked = ""
    for command in walked:
        result = subprocess.run(
            ["bash", "-c", command], capture_output=True, text=True, cwd=ROOT, env=child_env
        )
        assert result.returncode == 0, (command, result.stdout, result.stderr)
        if "check-config" in command:
            checked = result.stdout
    assert ": ok — workspaces: default" in checked
    service = unit_keys((root / "etc/systemd/system/poller.service").read_text())["Service"]
    binary, *args = service["ExecStart"][-1].split()
    assert pathlib.Path(sandbox(binary)).is_file()
    assert (
        pathlib.Path(sandbox(args[args.index("--config") + 1])).read_text()
        == (ROOT / "config" / "poller.yaml").read_text()
    )
    secrets = pathlib.Path(sandbox(service["EnvironmentFile"][-1].lstrip("-")))
    assert secrets.stat().st_mode & 0o777 == 0o600
    given = {line.split("=", 1)[0] for line in secrets.read_text().splitlines()}
    assert given == deployfiles.required_variables((ROOT / "config" / "poller.yaml").read_text())


def test_starting_config_keeps_its_store_in_the_units_state_directory() -> None:
    """Under the unit (StateDirectory=poller), the starting config's store is in /var/lib/poller."""
    service = unit_keys(UNIT.read_text())["Service"]
    state = f"/var/lib/{service['StateDirectory'][-1]}"
    variables = deployfiles.required_variables((ROOT / "config" / "poller.yaml").read_text())
    environ = {name: "x" for name in variables} | {
        "WEBHOOK_URL": "https://hooks.example.com/mistral",
        "WEBHOOK_SECRET": SECRET,
        "STATE_DIRECTORY": state,
    }
    loaded = config_mod.load(ROOT / "config" / "poller.yaml", environ=environ)
    assert loaded.store.url == f"sqlite:///{state}/poller.db"
    assert loaded.ops.listen == "127.0.0.1:9464"


def test_readme_docker_runs_give_what_their_config_needs() -> None:
    """Each `docker run` of README passes every variable its config needs, keeps the state in
    the image's volume and publishes the exposed ops port."""
    facts = image()
    text = "\n".join(readme_block("### In a container")).replace("\\\n", " ")
    runs = [shlex.split(line.split("  #")[0]) for line in text.splitlines() if "docker run" in line]
    assert len(runs) == 2
    for words in runs:
        flags = list(itertools.pairwise(words))
        given = {value for flag, value in flags if flag == "-e"}
        mounts = {value.split(":")[1]: value.split(":")[0] for flag, value in flags if flag == "-v"}
        config = mounts.get(facts.config_path(), "deploy/docker/poller.yaml")
        config_text = (ROOT / config.removeprefix("$PWD/")).read_text()
        assert deployfiles.required_variables(config_text) <= given, config
        assert set(facts.volumes) <= set(mounts)
        published = [int(value.rsplit(":", 1)[1]) for flag, value in flags if flag == "-p"]
        assert published and set(published) <= set(facts.exposed)
