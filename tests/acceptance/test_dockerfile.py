"""deploy/docker/Dockerfile: the rules a Dockerfile linter applies, and what the image promises
(its user, command, health check, ports and volume) matches the configs it runs."""

from __future__ import annotations

import pathlib
import subprocess

import pytest

from poller import config as config_mod

from . import deployfiles
from .conftest import ROOT

DOCKER = ROOT / "deploy" / "docker"
DOCKERFILE = (DOCKER / "Dockerfile").read_text()


def context() -> deployfiles.Context:
    """The build context as the repository's tracked files (a checkout sends no others)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    return deployfiles.Context(
        ROOT,
        deployfiles.DockerIgnore((ROOT / ".dockerignore").read_text()),
        frozenset(name for name in listed.split("\0") if name),
    )


def image() -> deployfiles.Image:
    return deployfiles.Image.read(DOCKERFILE)


def test_dockerfile_passes_every_rule() -> None:
    """The Dockerfile breaks none of the linter's rules."""
    assert deployfiles.lint(DOCKERFILE, context()) == []


def _swap(old: str, new: str) -> str:
    assert old in DOCKERFILE, old
    return DOCKERFILE.replace(old, new)


BROKEN = [
    ("untagged base", _swap("FROM python:3.11-slim-bookworm", "FROM python"), "explicit version"),
    ("latest base", _swap("FROM python:3.11-slim-bookworm", "FROM python:latest"), "not 'latest'"),
    ("named user", _swap("USER 10001:10001", "USER poller"), "numeric UID:GID"),
    ("root user", _swap("USER 10001:10001", "USER 0:0"), "must not run as root"),
    ("no user", _swap("USER 10001:10001\n", ""), "as root"),
    ("add", _swap("COPY poller /src/poller", "ADD poller /src/poller"), "use COPY"),
    ("shell entrypoint", _swap('ENTRYPOINT ["poller"]', "ENTRYPOINT poller"), "shell form"),
    (
        "shell health check",
        _swap(
            'CMD ["python", "-c", "import urllib.request;',
            "CMD python -c 'import urllib.request;",
        ).replace('timeout=4)"]', "timeout=4)'"),
        "HEALTHCHECK is in shell form",
    ),
    ("missing source", _swap("COPY poller /src/poller", "COPY poler /src/poller"), "no such file"),
    (
        "ignored source",
        _swap("COPY poller /src/poller", "COPY poller /src/poller\nCOPY tests /src/tests"),
        ".dockerignore leaves out tests/",
    ),
    (
        "apt lists kept",
        _swap("RUN pip install", "RUN apt-get update && apt-get install -y curl\nRUN pip install"),
        "rm -rf /var/lib/apt/lists/*",
    ),
    (
        "apt recommends",
        _swap(
            "RUN pip install",
            "RUN apt-get update && apt-get install -y curl && rm -rf /var/lib/apt/lists/*\n"
            "RUN pip install",
        ),
        "--no-install-recommends",
    ),
    ("pip cache", _swap("    PIP_NO_CACHE_DIR=1 \\\n", ""), "--no-cache-dir"),
    ("relative workdir", _swap("WORKDIR /var/lib/poller", "WORKDIR poller"), "absolute path"),
    ("cd in run", _swap("RUN pip install", "RUN cd /src && pip install"), "use WORKDIR"),
]


@pytest.mark.parametrize(("name", "text", "said"), BROKEN, ids=[b[0] for b in BROKEN])
def test_each_rule_names_its_mistake(name: str, text: str, said: str) -> None:
    """A Dockerfile with one mistake gets the line that names it."""
    problems = deployfiles.lint(text, context())
    assert any(said in problem for problem in problems), problems


def test_dockerignore_matches_like_the_builder() -> None:
    """The .dockerignore reader: the last matching pattern decides, parents count, ! keeps."""
    ignore = deployfiles.DockerIgnore("*\n!poller\n**/__pycache__\n!deploy/docker/poller.yaml\n")
    assert not ignore.excluded("poller/app.py")
    assert ignore.excluded("poller/__pycache__/app.cpython-311.pyc")
    assert ignore.excluded("tests/conftest.py")
    assert ignore.excluded("deploy/docker/compose.yaml")
    assert not ignore.excluded("deploy/docker/poller.yaml")


def test_image_runs_as_the_user_it_creates() -> None:
    """USER is the UID:GID the image's useradd/groupadd create, and not root."""
    uid, gid = image().user or (0, 0)
    assert uid >= 1000 and gid >= 1000
    run = " ".join(i.args for i in deployfiles.instructions(DOCKERFILE) if i.op == "RUN")
    assert f"useradd --system --uid {uid} --gid {gid}" in run
    assert f"groupadd --system --gid {gid}" in run


def test_image_installs_postgres_and_every_broker_sink() -> None:
    """The image installs poller with the postgres and brokers extras."""
    assert '"/src[postgres,brokers]"' in DOCKERFILE


@pytest.mark.parametrize(
    ("config", "environ"),
    [
        ("deploy/docker/poller.yaml", {"MISTRAL_API_KEY": "k"}),
        (
            "config/poller.yaml",
            {
                "MISTRAL_API_KEY": "k",
                "WEBHOOK_URL": "https://hooks.example.com/mistral",
                "WEBHOOK_SECRET": "whsec_cG9sbGVyLWRlbW8tc2VjcmV0LW9mLTMyLWJ5dGVzIQ==",
            },
        ),
    ],
)
def test_image_serves_what_its_configs_say(config: str, environ: dict[str, str]) -> None:
    """With the image's own config or the starting one (and the image's ENV), the ops listener
    is on the exposed port that the health check calls, and the store is in the volume."""
    facts = image()
    loaded = config_mod.load(ROOT / config, environ={**facts.env, **environ})
    assert loaded.ops.listen is not None
    host, port = config_mod.split_listen(loaded.ops.listen)
    assert host == "0.0.0.0" and port in facts.exposed
    assert f"http://127.0.0.1:{port}/healthz" in " ".join(facts.health)
    store = loaded.store.url.removeprefix("sqlite:///")
    assert any(pathlib.PurePosixPath(store).is_relative_to(v) for v in facts.volumes), store


def test_image_command_reads_the_config_it_ships() -> None:
    """ENTRYPOINT + CMD run `poller run` on the file the image copies its default config to."""
    facts = image()
    assert facts.command[:2] == ["poller", "run"]
    assert facts.copied[facts.config_path()] == "deploy/docker/poller.yaml"
