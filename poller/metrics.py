"""Prometheus metrics of one poller process, in a registry of its own (never the global one).

Counters and histograms are observed where things happen: the API client reports each
request through its ``observe`` hook, the runner reports each poll, the sink workers report
each attempt through ``on_result``. The outbox figures and the sinks' circuits are read when
``/metrics`` is scraped, by a collector that queries the store (scrapes run off the event
loop). Every name of poller's own starts with ``poller_`` and carries its unit; the registry
also serves the standard ``process_*`` and ``python_*`` collectors.

Every label set a documented alert matches exists from the start (each outcome of each
source and sink at 0), so ``increase()`` sees the first occurrence too.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Mapping

import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from poller import __version__, utils
from poller.exceptions import (
    ApiError,
    AuthError,
    GarbledError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    UnreachableError,
)
from poller.health import PollResult
from poller.model import Delivery, Event, Outcome
from poller.proxy import strangers
from poller.store.ledger import Ledger
from poller.store.rows import DEAD
from poller.store.sinkstate import SinkState

log = structlog.get_logger("poller.metrics")

ApiObserver = Callable[[BaseException | None, float], None]
"""Called by the API client after each HTTP exchange: (the error raised or None, seconds)."""

_API_OUTCOMES: tuple[tuple[type[ApiError], str], ...] = (
    (AuthError, "auth_error"),
    (NotFoundError, "not_found"),
    (RateLimitedError, "rate_limited"),
    (ServerError, "server_error"),
    (UnreachableError, "unreachable"),
    (GarbledError, "garbled"),
    (ApiError, "client_error"),
)
API_OUTCOMES = ("ok", *(name for _cls, name in _API_OUTCOMES), "error")
POLL_OUTCOMES = ("ok", "error", "disabled")
DELIVERY_OUTCOMES = ("delivered", "failed", "rejected", "gone")
RELOAD_OUTCOMES = ("applied", "refused")


def api_outcome(exc: BaseException | None) -> str:
    """The ``outcome`` label of one API request, from the error it raised (None: a 2xx)."""
    if exc is None:
        return "ok"
    for cls, name in _API_OUTCOMES:
        if isinstance(exc, cls):
            return name
    return "error"


def delivery_outcome(outcome: Outcome) -> str:
    """The ``outcome`` label of one delivery attempt."""
    if outcome.ok:
        return "delivered"
    if outcome.gone:
        return "gone"
    if outcome.rejected:
        return "rejected"
    return "failed"


class Metrics:
    """The instruments of one process and the registry ``/metrics`` serves."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        source = ["workspace", "source"]
        self.polls = Counter(
            "poller_polls", "Polls of a source, by outcome.", [*source, "outcome"], registry=r
        )
        self.polls_skipped = Counter(
            "poller_polls_skipped",
            "Scheduled polls of a source skipped because its previous poll was still running.",
            source,
            registry=r,
        )
        self.api_requests = Counter(
            "poller_api_requests",
            "HTTP requests to the Mistral API, by source and outcome.",
            [*source, "outcome"],
            registry=r,
        )
        self.api_latency = Histogram(
            "poller_api_request_duration_seconds",
            "Time of one HTTP exchange with the Mistral API.",
            source,
            registry=r,
        )
        self.events = Counter(
            "poller_events",
            "Events recorded in the outbox, by type.",
            ["workspace", "type"],
            registry=r,
        )
        self.deliveries = Counter(
            "poller_deliveries",
            "Delivery attempts, by sink and outcome.",
            ["sink", "outcome"],
            registry=r,
        )
        self.dead = Counter(
            "poller_deliveries_dead",
            "Deliveries given up (schedule spent or past retry.max_age), by sink.",
            ["sink"],
            registry=r,
        )
        self.delivery_latency = Histogram(
            "poller_delivery_duration_seconds",
            "Time of one delivery attempt.",
            ["sink"],
            registry=r,
        )
        self.last_success = Gauge(
            "poller_source_last_success_timestamp_seconds",
            "Unix time of the last successful poll of a source.",
            source,
            registry=r,
        )
        self.error_streak = Gauge(
            "poller_source_error_streak",
            "Consecutive failed polls of a source (0 when its last poll succeeded).",
            source,
            registry=r,
        )
        self.backoff = Gauge(
            "poller_source_backoff_seconds",
            "While a source is failing, the delay before its next poll; 0 when healthy.",
            source,
            registry=r,
        )
        self.disabled = Gauge(
            "poller_source_disabled",
            "1 when a source was switched off (the fine-tuning API answered 404).",
            source,
            registry=r,
        )
        self.interval = Gauge(
            "poller_source_interval_seconds",
            "The idle interval of a source; ready means a success within 3 of them.",
            source,
            registry=r,
        )
        self.reloads = Counter(
            "poller_config_reloads",
            "SIGHUP reloads of the config file, by outcome (applied, refused).",
            ["outcome"],
            registry=r,
        )
        self.proxy_dropped = Counter(
            "poller_proxy_calls_dropped",
            "Proxied calls not recorded because the recorder's queue was full (proxy.queue_size).",
            registry=r,
        )
        self.proxy_unattributed = Counter(
            "poller_proxy_unattributed_calls",
            "Proxied calls answered 2xx that recorded nothing: their key is no workspace's "
            "api_key. kind: what they would have recorded (trigger, hint).",
            ["kind"],
            registry=r,
        )
        for outcome in RELOAD_OUTCOMES:
            self.reloads.labels(outcome)
        for kind in strangers.KINDS:
            self.proxy_unattributed.labels(kind)
        Gauge("poller_build_info", "poller's version; always 1.", ["version"], registry=r).labels(
            __version__
        ).set(1)
        ProcessCollector(registry=r)  # process_resident_memory_bytes, _open_fds, _start_time…
        PlatformCollector(registry=r)  # python_info
        GCCollector(registry=r)  # python_gc_* (CPython)

    # -- registration ------------------------------------------------------------------

    def track_source(self, workspace: str, source: str, interval: float) -> None:
        """Create the series of a source (so they exist before its first poll)."""
        for outcome in POLL_OUTCOMES:
            self.polls.labels(workspace, source, outcome)
        for outcome in API_OUTCOMES:
            self.api_requests.labels(workspace, source, outcome)
        self.api_latency.labels(workspace, source)
        self.polls_skipped.labels(workspace, source)
        self.interval.labels(workspace, source).set(interval)
        self.error_streak.labels(workspace, source).set(0)
        self.backoff.labels(workspace, source).set(0)
        self.disabled.labels(workspace, source).set(0)

    def track_sink(self, sink: str) -> None:
        """Create the series of a sink (so they exist before its first delivery)."""
        for outcome in DELIVERY_OUTCOMES:
            self.deliveries.labels(sink, outcome)
        self.dead.labels(sink)
        self.delivery_latency.labels(sink)

    def watch_outbox(
        self,
        ledger: Ledger,
        sinks: Callable[[], Mapping[str, SinkState]],
        clock: Callable[[], dt.datetime] = utils.utcnow,
    ) -> None:
        """Serve the outbox figures and circuits of the sinks ``sinks()`` names at scrape time."""
        self.registry.register(OutboxCollector(ledger, sinks, clock))

    # -- observations ------------------------------------------------------------------

    def api_observer(self, workspace: str, source: str) -> ApiObserver:
        """The ``observe`` hook of one source's API client."""
        latency = self.api_latency.labels(workspace, source)

        def observe(exc: BaseException | None, seconds: float) -> None:
            self.api_requests.labels(workspace, source, api_outcome(exc)).inc()
            latency.observe(seconds)

        return observe

    def observe_poll(
        self,
        workspace: str,
        source: str,
        result: PollResult,
        events: Iterable[Event] = (),
    ) -> None:
        """One finished poll: its outcome, the events it recorded, the source's state after it."""
        if result.disabled:
            outcome = "disabled"
        elif result.error_streak:
            outcome = "error"
        else:
            outcome = "ok"
        self.polls.labels(workspace, source, outcome).inc()
        for event in events:
            self.events.labels(event.workspace, event.type).inc()
        if result.last_success_at is not None:
            self.last_success.labels(workspace, source).set(result.last_success_at.timestamp())
        self.error_streak.labels(workspace, source).set(result.error_streak)
        self.backoff.labels(workspace, source).set(
            result.next_delay if result.error_streak else 0.0
        )
        self.disabled.labels(workspace, source).set(1 if result.disabled else 0)

    def observe_unattributed(self, kind: str) -> None:
        """A proxied call with a key no workspace has, answered 2xx: it recorded nothing."""
        self.proxy_unattributed.labels(kind).inc()

    def observe_skipped_poll(self, workspace: str, source: str) -> None:
        """A scheduled poll that did not start: the source's previous one still runs."""
        self.polls_skipped.labels(workspace, source).inc()

    def observe_delivery(
        self, sink: str, delivery: Delivery, outcome: Outcome, status: str
    ) -> None:
        """A sink worker's ``on_result`` hook."""
        self.deliveries.labels(sink, delivery_outcome(outcome)).inc()
        if status == DEAD:
            self.dead.labels(sink).inc()
        if outcome.duration_ms is not None:
            self.delivery_latency.labels(sink).observe(outcome.duration_ms / 1000.0)

    def observe_expired(self, sink: str, count: int) -> None:
        """A sink worker's ``on_expired`` hook: ``count`` deliveries passed ``retry.max_age``."""
        self.dead.labels(sink).inc(count)

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format (queries the store: call it off the loop)."""
        return generate_latest(self.registry)


class OutboxCollector:
    """Outbox depth, oldest pending age and circuit state per sink, read at scrape time."""

    def __init__(
        self,
        ledger: Ledger,
        sinks: Callable[[], Mapping[str, SinkState]],
        clock: Callable[[], dt.datetime],
    ) -> None:
        self.ledger = ledger
        self.sinks = sinks
        self.clock = clock

    def describe(self) -> list[Metric]:
        return []  # names are checked at scrape time; registering must not query the store

    def collect(self) -> Iterator[Metric]:
        states = dict(self.sinks())
        up = GaugeMetricFamily("poller_store_up", "1 when the store answered the last scrape.")
        try:
            stats = self.ledger.sink_stats()
        except Exception as exc:  # a scrape must still answer when the store does not
            log.warning("metrics_store_unavailable", error=f"{type(exc).__name__}: {exc}")
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        now = self.clock()
        families = {
            "pending": GaugeMetricFamily(
                "poller_outbox_pending", "Deliveries waiting for a sink.", labels=["sink"]
            ),
            "failing": GaugeMetricFamily(
                "poller_outbox_failing",
                "Pending deliveries whose last attempt failed.",
                labels=["sink"],
            ),
            "dead": GaugeMetricFamily(
                "poller_outbox_dead", "Deliveries given up (replayable).", labels=["sink"]
            ),
            "age": GaugeMetricFamily(
                "poller_outbox_oldest_pending_age_seconds",
                "Age of a sink's oldest pending delivery; 0 when none is pending.",
                labels=["sink"],
            ),
            "open": GaugeMetricFamily(
                "poller_sink_circuit_open",
                "1 while a sink is failing and only probed.",
                labels=["sink"],
            ),
            "enabled": GaugeMetricFamily(
                "poller_sink_enabled",
                "0 when a sink was disabled (HTTP 410 Gone) until `poller sinks enable`.",
                labels=["sink"],
            ),
        }
        for name in sorted(states):
            st = stats.get(name)
            oldest = st.oldest_pending_at if st else None
            families["pending"].add_metric([name], st.pending if st else 0)
            families["failing"].add_metric([name], st.failing if st else 0)
            families["dead"].add_metric([name], st.dead if st else 0)
            age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
            families["age"].add_metric([name], age)
            families["open"].add_metric([name], 1 if states[name].circuit_open else 0)
            families["enabled"].add_metric([name], 1 if states[name].enabled else 0)
        yield from families.values()
