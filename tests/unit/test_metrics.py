"""Metric labels and what one observation does to the exposition."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from prometheus_client.parser import text_string_to_metric_families

from poller.exceptions import (
    ApiError,
    AuthError,
    GarbledError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    UnreachableError,
)
from poller.metrics import Metrics, api_outcome, delivery_outcome
from poller.model import Delivery, Event, Outcome


@pytest.mark.parametrize(
    ("exc", "label"),
    [
        (None, "ok"),
        (AuthError("no"), "auth_error"),
        (NotFoundError("no"), "not_found"),
        (RateLimitedError("no", retry_after=3), "rate_limited"),
        (ServerError("no"), "server_error"),
        (UnreachableError("no"), "unreachable"),
        (GarbledError("no"), "garbled"),
        (ApiError("no", status_code=400), "client_error"),
        (RuntimeError("no"), "error"),
    ],
)
def test_api_outcome(exc: BaseException | None, label: str) -> None:
    """Each API error class has its own outcome label."""
    assert api_outcome(exc) == label


@pytest.mark.parametrize(
    ("outcome", "label"),
    [
        (Outcome(ok=True, status_code=200), "delivered"),
        (Outcome(ok=False, status_code=503), "failed"),
        (Outcome(ok=False, error="timed out"), "failed"),
        (Outcome(ok=False, status_code=422, rejected=True), "rejected"),
        (Outcome(ok=False, status_code=410, gone=True), "gone"),
    ],
)
def test_delivery_outcome(outcome: Outcome, label: str) -> None:
    """An attempt is delivered, failed, rejected or gone."""
    assert delivery_outcome(outcome) == label


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.exposition().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@dataclasses.dataclass
class Result:
    last_success_at: dt.datetime | None = None
    error_streak: int = 0
    disabled: str | None = None
    next_delay: float = 30.0


WHEN = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)
SRC = (("source", "batch_jobs"), ("workspace", "prod"))


def test_a_successful_poll_counts_events_and_its_success_time() -> None:
    """An ok poll counts itself, its events by type, and sets the last success time."""
    metrics = Metrics()
    metrics.track_source("prod", "batch_jobs", 30)
    event = Event("evt_1", "batch_job.created", "prod", "j1", WHEN, {})
    metrics.observe_poll("prod", "batch_jobs", Result(last_success_at=WHEN), [event, event])
    got = samples(metrics)
    assert got[("poller_polls_total", (("outcome", "ok"), *SRC))] == 1
    assert got[("poller_polls_total", (("outcome", "error"), *SRC))] == 0
    assert got[("poller_events_total", (("type", "batch_job.created"), ("workspace", "prod")))] == 2
    assert got[("poller_source_last_success_timestamp_seconds", SRC)] == WHEN.timestamp()
    assert got[("poller_source_interval_seconds", SRC)] == 30


def test_a_failing_poll_shows_its_backoff() -> None:
    """A failed poll counts as error and exposes its streak and backoff delay."""
    metrics = Metrics()
    metrics.observe_poll("prod", "batch_jobs", Result(error_streak=3, next_delay=20))
    got = samples(metrics)
    assert got[("poller_polls_total", (("outcome", "error"), *SRC))] == 1
    assert got[("poller_source_error_streak", SRC)] == 3
    assert got[("poller_source_backoff_seconds", SRC)] == 20


def test_an_untracked_source_drops_its_gauges_and_keeps_its_counters() -> None:
    """A source another replica polls now has no gauges here; tracked again, it starts at 0."""
    metrics = Metrics()
    metrics.track_source("prod", "batch_jobs", 30)
    metrics.observe_poll("prod", "batch_jobs", Result(last_success_at=WHEN))
    metrics.untrack_source("prod", "batch_jobs")
    got = samples(metrics)
    assert not [name for name, labels in got if name.startswith("poller_source_")]
    assert got[("poller_polls_total", (("outcome", "ok"), *SRC))] == 1
    metrics.track_source("prod", "batch_jobs", 30)
    got = samples(metrics)
    assert ("poller_source_last_success_timestamp_seconds", SRC) not in got
    assert got[("poller_source_error_streak", SRC)] == 0


def test_api_observer_counts_outcome_and_latency() -> None:
    """The client's hook counts each request by outcome and observes its duration."""
    metrics = Metrics()
    observe = metrics.api_observer("prod", "batch_jobs")
    observe(None, 0.2)
    observe(ServerError("boom", status_code=503), 0.1)
    got = samples(metrics)
    assert got[("poller_api_requests_total", (("outcome", "ok"), *SRC))] == 1
    assert got[("poller_api_requests_total", (("outcome", "server_error"), *SRC))] == 1
    assert got[("poller_api_request_duration_seconds_count", SRC)] == 2
    assert got[("poller_api_request_duration_seconds_sum", SRC)] == pytest.approx(0.3)


def test_two_registries_do_not_share_series() -> None:
    """Each Metrics has its own registry: a second App starts from zero."""
    first, second = Metrics(), Metrics()
    first.observe_poll("prod", "batch_jobs", Result(last_success_at=WHEN))
    assert ("poller_polls_total", (("outcome", "ok"), *SRC)) not in samples(second)


def test_dead_deliveries_are_counted() -> None:
    """A delivery given up (schedule spent, or past max_age) counts in its sink's dead counter."""
    metrics = Metrics()
    metrics.track_sink("hook")
    event = Event("evt_1", "batch_job.created", "prod", "j1", WHEN, {})
    delivery = Delivery(1, "hook", event, attempts=7, created_at=WHEN, next_attempt_at=WHEN)
    metrics.observe_delivery("hook", delivery, Outcome(ok=False, status_code=422), "dead")
    metrics.observe_delivery("hook", delivery, Outcome(ok=False, status_code=422), "pending")
    metrics.observe_expired("hook", 2)
    assert samples(metrics)[("poller_deliveries_dead_total", (("sink", "hook"),))] == 3
