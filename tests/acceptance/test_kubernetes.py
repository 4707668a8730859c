"""deploy/kubernetes/poller.yaml: valid against the Kubernetes API's schemas, and a pod that the
kubelet would start from the image deploy/docker/Dockerfile builds."""

from __future__ import annotations

import copy
import pathlib
import posixpath
import re
import tomllib
from typing import Any

import kubernetes_validate
import pytest
import yaml

from poller import config as config_mod

from . import deployfiles
from .conftest import ROOT

MANIFEST = ROOT / "deploy" / "kubernetes" / "poller.yaml"
TEXT = MANIFEST.read_text()
KUBERNETES = "1.30"
"""The oldest Kubernetes release the manifest is checked against (its schemas ship offline)."""


def documents() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(TEXT) if doc]


def by_kind() -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in documents()}


def pod() -> dict[str, Any]:
    spec: dict[str, Any] = by_kind()["Deployment"]["spec"]["template"]["spec"]
    return spec


def container() -> dict[str, Any]:
    [only] = pod()["containers"]
    return dict(only)


def image() -> deployfiles.Image:
    return deployfiles.Image.read((ROOT / "deploy" / "docker" / "Dockerfile").read_text())


def config_text() -> str:
    return str(by_kind()["ConfigMap"]["data"]["poller.yaml"])


def secret_keys() -> set[str]:
    """The keys of the Secret the header's ``kubectl create secret`` makes (never committed)."""
    [secret] = [ref["secretRef"]["name"] for ref in container().get("envFrom", [])]
    command = re.search(r"kubectl create secret generic " + secret + r"((?:.|\n#)*?)\n#\s*\n", TEXT)
    assert command is not None, f"the header does not say how to create the Secret {secret}"
    return set(re.findall(r"--from-literal=([A-Z_][A-Z0-9_]*)=", command.group(1)))


def loaded() -> config_mod.Config:
    environ = {name: "x" for name in deployfiles.required_variables(config_text())}
    environ["POLLER_STORE_URL"] = "postgresql+psycopg://poller:pw@db.internal/poller"
    environ["WEBHOOK_SECRET"] = "whsec_cG9sbGVyLWRlbW8tc2VjcmV0LW9mLTMyLWJ5dGVzIQ=="
    return config_mod.parse(config_text(), environ=environ)


@pytest.mark.parametrize("index", range(len(documents())))
def test_every_document_is_valid_for_the_api(index: int) -> None:
    """Each document passes the Kubernetes API's JSON Schema, unknown fields refused."""
    document = documents()[index]
    assert kubernetes_validate.validate(document, KUBERNETES, strict=True) == KUBERNETES


def test_the_schema_check_refuses_a_misspelt_field() -> None:
    """The validator is strict: a misspelt securityContext field is an error, not ignored."""
    deployment = copy.deepcopy(by_kind()["Deployment"])
    deployment["spec"]["template"]["spec"]["securityContext"]["runAsUsr"] = 10001
    with pytest.raises(kubernetes_validate.ValidationError, match="runAsUsr"):
        kubernetes_validate.validate(deployment, KUBERNETES, strict=True)


def test_two_replicas_share_a_postgresql_store() -> None:
    """Two replicas, the Secret not committed, the config a PostgreSQL store with ha."""
    assert set(by_kind()) == {"ConfigMap", "Deployment"}, "the Secret is never committed"
    assert by_kind()["Deployment"]["spec"]["replicas"] == 2
    config = loaded()
    assert config.store.url.startswith("postgresql+psycopg://")
    assert config.ha.replica_id is not None


def test_replicas_are_rolled_one_at_a_time() -> None:
    """A rollout starts a new pod before an old one goes (docs/ha.md#upgrading)."""
    assert by_kind()["Deployment"]["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }


def test_pod_runs_as_the_images_numeric_user() -> None:
    """runAsNonRoot with runAsUser/runAsGroup/fsGroup equal to the image's numeric USER."""
    security = pod()["securityContext"]
    uid, gid = image().user or (0, 0)
    assert security["runAsNonRoot"] is True
    assert (security["runAsUser"], security["runAsGroup"], security["fsGroup"]) == (uid, gid, gid)
    assert uid != 0
    locked = container()["securityContext"]
    assert locked["allowPrivilegeEscalation"] is False
    assert locked["capabilities"]["drop"] == ["ALL"]


def _writable_mounts() -> list[str]:
    return [m["mountPath"] for m in container()["volumeMounts"] if not m.get("readOnly")]


def test_every_path_the_process_writes_is_a_writable_volume() -> None:
    """With a read-only root filesystem, the store, file sinks and /tmp are writable mounts."""
    assert container()["securityContext"]["readOnlyRootFilesystem"] is True
    config = loaded()
    written = ["/tmp"]
    if config.store.url.startswith("sqlite"):
        written.append(posixpath.dirname(config.store.url.removeprefix("sqlite:///")))
    written += [
        posixpath.dirname(sink.path)
        for sink in config.sinks
        if isinstance(sink, config_mod.FileSinkConfig)
    ]
    for path in written:
        assert any(
            pathlib.PurePosixPath(path).is_relative_to(mount) for mount in _writable_mounts()
        ), f"{path} is written but is no writable volume"


def test_probes_call_the_ops_listener_of_the_config() -> None:
    """Readiness and liveness probes hit /readyz and /healthz on the config's ops port."""
    listen = loaded().ops.listen
    assert listen is not None
    host, port = config_mod.split_listen(listen)
    assert host == "0.0.0.0", "the kubelet probes the pod's address, not its loopback"
    ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = container()[probe]["httpGet"]
        assert (get["path"], ports.get(get["port"], get["port"])) == (path, port)
    annotations = by_kind()["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)


def test_the_config_file_read_is_in_the_configmap_mount() -> None:
    """The --config path the container runs with is a key of the mounted ConfigMap."""
    args = container().get("args") or image().command[1:]
    path = pathlib.PurePosixPath(args[args.index("--config") + 1])
    mounts = {m["name"]: m["mountPath"] for m in container()["volumeMounts"]}
    [volume] = [
        v for v in pod()["volumes"] if "configMap" in v and mounts[v["name"]] == str(path.parent)
    ]
    configmap = by_kind()["ConfigMap"]
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    assert path.name in configmap["data"]


def test_every_variable_the_config_needs_is_given() -> None:
    """Each ${VAR} of the config comes from the pod's env or the Secret the header creates."""
    given = {e["name"] for e in container().get("env", [])} | secret_keys()
    needed = deployfiles.required_variables(config_text())
    assert needed and needed <= given, needed - given


def test_image_is_the_released_version_the_header_builds() -> None:
    """The pod runs the image tagged with poller's version, as the header's docker build tags it."""
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    reference = container()["image"]
    assert reference.rpartition(":")[2] == version
    assert f"docker build -f deploy/docker/Dockerfile -t {reference} ." in TEXT
