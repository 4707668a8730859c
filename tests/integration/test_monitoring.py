"""deploy/monitoring: the alert rules and the dashboard name what a running poller exports."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import re
import shutil
import subprocess
from collections.abc import Iterator

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from poller.app import App
from poller.simulator import SimulatorServer
from poller.testing import WebhookReceiver

from .conftest import make_config

MONITORING = pathlib.Path(__file__).resolve().parents[2] / "deploy" / "monitoring"
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("_count", "_sum", "_created"),
    "info": ("_info",),
}
NOT_NAMES = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or"}
NOT_NAMES |= {"unless", "bool", "offset"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (functions, labels and keywords left out)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # string literals
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)  # label matchers, ranges
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        if re.match(r"\s*\(", expr[match.end() :]) or match.group() in NOT_NAMES:
            continue  # a function call or a keyword
        names.add(match.group())
    return names


def rule_expressions() -> Iterator[tuple[str, str]]:
    rules = yaml.safe_load((MONITORING / "alerts.yaml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            yield rule["alert"], rule["expr"]


def dashboard_expressions() -> Iterator[tuple[str, str]]:
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            yield panel["title"], target["expr"]


@pytest.fixture
async def exposition(server: SimulatorServer, receiver: WebhookReceiver, store_file: str) -> str:
    """What a freshly started poller's registry serves at /metrics, before any poll."""
    async with App(make_config(server.url, receiver.url, store_file)) as app:
        return (await asyncio.to_thread(app.metrics.exposition)).decode()


def exported_names(text: str) -> set[str]:
    """Every sample name the exposition's families can carry, with or without samples yet."""
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metric_names_reads_promql() -> None:
    """The expression reader finds metric names, not functions, labels, keywords or ranges."""
    expr = (
        'histogram_quantile(0.95, sum by (le, sink) (rate(a_bucket{job="x"}[5m]))) '
        "> 3 * b_seconds and on (sink) time() - c"
    )
    assert metric_names(expr) == {"a_bucket", "b_seconds", "c"}


async def test_alert_rules_name_exported_metrics(exposition: str) -> None:
    """Every metric an alert rule reads is one poller exports (`up` is Prometheus' own)."""
    exported = exported_names(exposition) | {"up"}
    missing = {alert: sorted(metric_names(expr) - exported) for alert, expr in rule_expressions()}
    assert {k: v for k, v in missing.items() if v} == {}
    assert len(missing) >= 9


async def test_dashboard_names_exported_metrics(exposition: str) -> None:
    """Every metric a dashboard panel reads is one poller exports."""
    exported = exported_names(exposition)
    missing = {
        title: sorted(metric_names(expr) - exported) for title, expr in dashboard_expressions()
    }
    assert {k: v for k, v in missing.items() if v} == {}


async def test_alerted_counters_exist_before_their_first_increment(exposition: str) -> None:
    """Counter series that alerts match exist at 0 from the start, so increase() sees the first."""
    got = samples(exposition)
    for source in ("batch_jobs", "fine_tuning_jobs", "files", "models"):
        labels = (("outcome", "auth_error"), ("source", source), ("workspace", "default"))
        assert got[("poller_api_requests_total", labels)] == 0
    assert got[("poller_config_reloads_total", (("outcome", "refused"),))] == 0
    assert got[("poller_deliveries_dead_total", (("sink", "hook"),))] == 0
    assert got[("poller_deliveries_total", (("outcome", "gone"), ("sink", "hook")))] == 0
    for kind in ("trigger", "hint"):
        assert got[("poller_proxy_unattributed_calls_total", (("kind", kind),))] == 0


async def test_process_and_python_collectors_are_served(exposition: str) -> None:
    """The registry serves RSS, open fds, start time, GC and Python's version."""
    got = {name for name, _labels in samples(exposition)}
    for name in (
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
        "python_gc_collections_total",
        "python_info",
    ):
        assert name in got


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run Prometheus' promtool in deploy/monitoring (skipped, or failed where required,
    when it is not installed)."""
    if shutil.which("promtool") is None:
        if os.environ.get("POLLER_REQUIRE_PROMTOOL") == "1":
            pytest.fail("promtool is required here (POLLER_REQUIRE_PROMTOOL=1)")
        pytest.skip("promtool (Prometheus) not installed")
    return subprocess.run(
        ["promtool", *args], cwd=MONITORING, capture_output=True, text=True, timeout=60
    )


def test_promtool_accepts_the_rules() -> None:
    """`promtool check rules` accepts deploy/monitoring/alerts.yaml."""
    result = promtool("check", "rules", "alerts.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_fire_when_due_and_not_after_a_handover() -> None:
    """`promtool test rules`: a stale source pages, a replica that dropped a workspace's
    series does not, and dead deliveries page for the sink that had them."""
    result = promtool("test", "rules", "alerts.test.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
