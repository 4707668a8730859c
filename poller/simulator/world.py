"""The mechanics of the simulated workspace: records, lifecycles, activity; not thread-safe.

``state.Simulator`` wraps a ``World`` behind its lock. Nothing runs in the background:
jobs carry a planned timeline and their status is read off the clock. Whenever the
simulator is touched it first *settles*: it files jobs under the status they have
reached, does what their final status implies (an output file, a fine-tuned model)
and, when activity is on, plays the activity ticks that fell due, all in time order.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import heapq
import itertools
import random
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from poller.simulator import activity as act
from poller.simulator import lifecycle, records
from poller.simulator.errors import InvalidRequest, NotFound
from poller.simulator.index import Table, first
from poller.simulator.lifecycle import BATCH, FINE_TUNING, Lifecycle
from poller.simulator.records import BatchJob, FineTuningJob, Item, Job, Json

BATCH_JOBS = "batch_jobs"
FINE_TUNING_JOBS = "fine_tuning_jobs"
FILES = "files"
MODELS = "models"
KINDS = (BATCH_JOBS, FINE_TUNING_JOBS, FILES, MODELS)

FILE_PURPOSES = ("fine-tune", "batch", "ocr")
SAMPLE_TYPES = ("pretrain", "instruct", "batch_request", "batch_result", "batch_error")
SOURCES = ("upload", "repository", "mistral")
DEFAULT_HYPERPARAMETERS: Json = {
    "training_steps": 10,
    "learning_rate": 0.0001,
    "weight_decay": 0.1,
    "warmup_fraction": 0.05,
    "epochs": None,
    "seq_len": None,
    "fim_ratio": 0.9,
}
TOKENS_PER_STEP = 131072
# the version (4) and variant (RFC 4122) bits of a uuid4
_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)
# activity deletes files and models only once they are this old, so a poller sees them first
MIN_AGE_TO_DELETE = 5.0
# at most this many activity ticks are played at once after a long jump of the clock
MAX_CATCH_UP_TICKS = 1000


def _durations(lc: Lifecycle, **given: float | None) -> dict[str, float]:
    out = dict(lc.durations)
    for status, seconds in given.items():
        if seconds is not None:
            if seconds < 0:
                raise InvalidRequest(f"{status.lower()}_for must be zero or more seconds")
            out[status] = float(seconds)
    return out


def _body_field(name: str) -> Callable[[Item], Hashable]:
    return lambda item: item.body[name]


def check(value: str, allowed: Sequence[str], what: str) -> None:
    if value not in allowed:
        raise InvalidRequest(f"{what} {value!r} is invalid; use one of {', '.join(allowed)}")


class World:
    """Every resource of the workspace and the clock they live by; the caller locks."""

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        seed: int | None,
        fine_tuning: bool,
        activity: bool,
        activity_every: float,
    ) -> None:
        if activity_every <= 0:
            raise InvalidRequest("activity_every must be more than 0 seconds")
        self.fine_tuning_enabled = fine_tuning
        self.clock = clock
        self.offset = 0.0
        self.rng = random.Random(seed)
        self.org_id = self.new_id()
        self.seq = itertools.count()
        self.batch: Table[BatchJob] = Table(
            {"model": lambda job: job.model, "agent_id": lambda job: job.agent_id}
        )
        self.ft: Table[FineTuningJob] = Table(
            {"model": lambda job: job.model, "suffix": lambda job: job.suffix}
        )
        self.files: Table[Item] = Table(
            {name: _body_field(name) for name in ("purpose", "sample_type", "source", "mimetype")}
        )
        self.models: Table[Item] = Table()
        # (at, seq, kind, id, version): planned status changes not yet filed
        self.due: list[tuple[float, int, str, str, int]] = []
        self.activity = act.Activity(enabled=activity, every=activity_every)
        self.activity.restart(self.now())
        self.add_base_models()

    def now(self) -> float:
        return self.clock() + self.offset

    # ------------------------------------------------------------ settling

    def settle(self) -> float:
        now = self.now()
        activity = self.activity
        tick = activity.next_tick()
        if tick is not None and now - tick > activity.every * MAX_CATCH_UP_TICKS:
            activity.ticks += int((now - tick) / activity.every) - MAX_CATCH_UP_TICKS
        while True:
            tick = activity.next_tick()
            self._run_due(now if tick is None or tick > now else tick)
            if tick is None or tick > now:
                return now
            self._tick(tick)
            activity.ticks += 1

    def _run_due(self, until: float) -> None:
        while self.due and self.due[0][0] <= until:
            at, _, kind, id, version = heapq.heappop(self.due)
            job = self.jobs(kind).get(id)
            if job is not None and job.version == version:
                self._file_job(kind, job, at)

    def jobs(self, kind: str) -> Table[Any]:
        return self.batch if kind == BATCH_JOBS else self.ft

    def _file_job(self, kind: str, job: Job, at: float) -> None:
        """File ``job`` under its status at ``at``; finish it if that status is final."""
        lc = BATCH if kind == BATCH_JOBS else FINE_TUNING
        i = lifecycle.index_at(job.timeline, at)
        status, entered = job.timeline[i]
        if status != job.status:
            self.jobs(kind).move(job, job.status, status)
            job.status = status
        if status in lc.terminal and not job.finished:
            job.finished = True
            if isinstance(job, BatchJob):
                self._finish_batch_job(job, entered)
            elif isinstance(job, FineTuningJob):
                self._finish_fine_tuning_job(job, entered)

    def track(self, kind: str, job: Job, at: float) -> None:
        """File a new or rewritten job at ``at`` and plan its later status changes."""
        self._file_job(kind, job, at)
        for _, when in job.timeline:
            if when > at:
                heapq.heappush(self.due, (when, next(self.seq), kind, job.id, job.version))

    def _finish_batch_job(self, job: BatchJob, at: float) -> None:
        completed, succeeded, failed = job.counters(at)
        if job.status == "SUCCESS":
            output = self.new_file(
                at,
                filename=f"batch_{job.id}_output.jsonl",
                purpose="batch",
                sample_type="batch_result",
                source="mistral",
                num_lines=succeeded,
                size=succeeded * self.rng.randint(400, 1200),
            )
            job.output_file = output.id
        elif job.status in ("FAILED", "TIMEOUT_EXCEEDED"):
            errors = self.new_file(
                at,
                filename=f"batch_{job.id}_error.jsonl",
                purpose="batch",
                sample_type="batch_error",
                source="mistral",
                num_lines=max(1, failed + job.total_requests - completed),
                size=max(1, failed) * self.rng.randint(150, 300),
            )
            job.error_file = errors.id

    def _finish_fine_tuning_job(self, job: FineTuningJob, at: float) -> None:
        if job.status != "SUCCESS":
            return
        job.fine_tuned_model = self.model_name(job.model, at, job.suffix)
        job.trained_tokens = job.metadata.get("train_tokens")
        self.new_model(at, root=job.model, model_id=job.fine_tuned_model, job=job.id)

    # -------------------------------------------------------------- helpers

    def new_id(self) -> str:
        """A uuid4 string drawn from the seeded generator."""
        bits = self.rng.getrandbits(128) & _UUID_CLEAR | _UUID4_SET
        h = f"{bits:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def hex8(self) -> str:
        return f"{self.rng.getrandbits(32):08x}"

    def model_name(self, root: str, at: float, suffix: str | None = None) -> str:
        """``ft:<root>:<workspace>:<YYYYMMDD>:[<suffix>:]<8 hex>``, as Mistral names them."""
        day = dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y%m%d")
        return f"ft:{root}:{self.org_id[:8]}:{day}:{suffix + ':' if suffix else ''}{self.hex8()}"

    def get(self, kind: str, id: str) -> Any:
        """The record of ``kind`` with ``id``; ``NotFound`` if there is none."""
        record = self.table(kind).get(id)
        if record is None:
            noun = {BATCH_JOBS: "Batch job", FINE_TUNING_JOBS: "Job", FILES: "File"}
            raise NotFound(f"{noun.get(kind, 'Model')} {id} not found")
        return record

    def view(self, kind: str, record: Any, now: float) -> Json:
        if isinstance(record, BatchJob):
            return records.batch_job_view(record, now)
        if isinstance(record, FineTuningJob):
            return records.fine_tuning_job_view(record, now, details=True)
        return dict(record.body)

    # ------------------------------------------------------------ creating

    def new_batch_job(
        self,
        at: float,
        *,
        model: str | None = "mistral-small-latest",
        endpoint: str = "/v1/chat/completions",
        total_requests: int | None = None,
        outcome: str = "SUCCESS",
        queued_for: float | None = None,
        running_for: float | None = None,
        created_at: float | None = None,
        metadata: Mapping[str, Any] | None = None,
        input_files: Sequence[str] | None = None,
        agent_id: str | None = None,
    ) -> BatchJob:
        check(outcome, BATCH.outcomes, "batch job outcome")
        if total_requests is not None and total_requests < 0:
            raise InvalidRequest("total_requests must be zero or more")
        durations = _durations(BATCH, QUEUED=queued_for, RUNNING=running_for)
        created = at if created_at is None else float(created_at)
        inputs = list(input_files or [])
        if total_requests is None:
            files = [self.files.get(f) for f in inputs]
            known = [f.body["num_lines"] for f in files if f and f.body["num_lines"] is not None]
            total_requests = sum(known) if known else self.rng.randint(10, 500)
        rng = self.rng
        reach = {"TIMEOUT_EXCEEDED": rng.uniform(0.3, 0.9), "CANCELLED": rng.uniform(0.1, 0.7)}
        fail_ratio = {"FAILED": rng.uniform(0.5, 1.0), "TIMEOUT_EXCEEDED": rng.uniform(0, 0.1)}
        job = BatchJob(
            id=self.new_id(),
            seq=next(self.seq),
            created_at=created,
            timeline=lifecycle.schedule(BATCH, "QUEUED", created, outcome, durations),
            outcome=outcome,
            durations=durations,
            model=model,
            endpoint=endpoint,
            input_files=inputs,
            metadata=None if metadata is None else dict(metadata),
            agent_id=agent_id,
            total_requests=total_requests,
            reach=reach.get(outcome, 1.0),
            fail_ratio=fail_ratio.get(outcome, rng.choice((0.0, 0.0, 0.01, 0.02))),
        )
        job.status = job.timeline[0][0]
        self.batch.add(job, job.status)
        self.track(BATCH_JOBS, job, at)
        return job

    def new_fine_tuning_job(
        self,
        at: float,
        *,
        model: str = "open-mistral-nemo",
        outcome: str = "SUCCESS",
        queued_for: float | None = None,
        validating_for: float | None = None,
        validated_for: float | None = None,
        running_for: float | None = None,
        created_at: float | None = None,
        training_files: Sequence[str | Mapping[str, Any]] | None = None,
        validation_files: Sequence[str] | None = None,
        hyperparameters: Mapping[str, Any] | None = None,
        suffix: str | None = None,
        auto_start: bool = True,
    ) -> FineTuningJob:
        check(outcome, FINE_TUNING.outcomes, "fine-tuning job outcome")
        durations = _durations(
            FINE_TUNING,
            QUEUED=queued_for,
            VALIDATING=validating_for,
            VALIDATED=validated_for,
            RUNNING=running_for,
        )
        created = at if created_at is None else float(created_at)
        hyper = DEFAULT_HYPERPARAMETERS | {
            k: v for k, v in (hyperparameters or {}).items() if v is not None
        }
        metadata = self.fine_tuning_metadata(durations, int(hyper.get("training_steps") or 10))
        timeline = lifecycle.schedule(
            FINE_TUNING, "QUEUED", created, outcome, durations, hold=not auto_start
        )
        job = FineTuningJob(
            id=self.new_id(),
            seq=next(self.seq),
            created_at=created,
            timeline=timeline,
            outcome=outcome,
            durations=durations,
            held=timeline[-1][0] not in FINE_TUNING.terminal,
            model=model,
            training_files=[
                {"file_id": f, "weight": 1.0} if isinstance(f, str) else dict(f)
                for f in training_files or ()
            ],
            validation_files=list(validation_files or ()),
            hyperparameters=hyper,
            suffix=suffix,
            auto_start=auto_start,
            metadata=metadata,
        )
        job.status = job.timeline[0][0]
        self.ft.add(job, job.status)
        self.track(FINE_TUNING_JOBS, job, at)
        return job

    def fine_tuning_metadata(self, durations: Mapping[str, float], steps: int) -> Json:
        """A ``JobMetadata``: estimates made when the job is created."""
        train_tokens = steps * TOKENS_PER_STEP
        return {
            "expected_duration_seconds": int(sum(durations[s] for s in FINE_TUNING.main)),
            "cost": round(train_tokens / 1_000_000 * 4.0, 2),
            "cost_currency": "EUR",
            "train_tokens_per_step": TOKENS_PER_STEP,
            "train_tokens": train_tokens,
            "data_tokens": self.rng.randint(50_000, 2_000_000),
            "estimated_start_time": None,
        }

    def new_file(self, at: float, **fields: Any) -> Item:
        """Add a file; ``fields`` as ``file_item`` takes them."""
        item = self.file_item(at, **fields)
        self.files.add(item)
        return item

    def file_item(
        self,
        at: float,
        *,
        filename: str | None = None,
        purpose: str = "fine-tune",
        size: int | None = None,
        sample_type: str | None = None,
        source: str = "upload",
        num_lines: int | None = None,
        created_at: float | None = None,
        mimetype: str | None = None,
        content: bytes | None = None,
    ) -> Item:
        check(purpose, FILE_PURPOSES, "file purpose")
        check(source, SOURCES, "file source")
        if sample_type is None:
            sample_type = "batch_request" if purpose == "batch" else "instruct"
        check(sample_type, SAMPLE_TYPES, "file sample_type")
        if content is not None:
            size = len(content) if size is None else size
            num_lines = content.count(b"\n") + (not content.endswith(b"\n") and bool(content))
        if num_lines is None:
            num_lines = self.rng.randint(10, 5000)
        if size is None:
            size = num_lines * self.rng.randint(200, 2000)
        if size < 0 or num_lines < 0:
            raise InvalidRequest("bytes and num_lines must be zero or more")
        filename = filename or f"{purpose.replace('-', '_')}_{self.hex8()}.jsonl"
        if mimetype is None and filename.endswith(".jsonl"):
            mimetype = "application/jsonl"
        created = at if created_at is None else float(created_at)
        item = Item(id=self.new_id(), seq=next(self.seq), created_at=created, body={})
        item.body.update(
            id=item.id,
            object="file",
            bytes=size,
            created_at=int(created),
            filename=filename,
            purpose=purpose,
            sample_type=sample_type,
            num_lines=num_lines,
            mimetype=mimetype,
            source=source,
            signature=(
                hashlib.sha256(content).hexdigest()[:16]
                if content is not None
                else f"{self.rng.getrandbits(64):016x}"
            ),
            expires_at=None,
            visibility="workspace",
        )
        return item

    def new_model(
        self,
        at: float,
        *,
        root: str = "open-mistral-nemo",
        model_id: str | None = None,
        job: str | None = None,
        created_at: float | None = None,
    ) -> Item:
        created = at if created_at is None else float(created_at)
        if model_id is None:
            model_id = self.model_name(root, created)
        if model_id in self.models.records:
            raise InvalidRequest(f"a model {model_id} already exists")
        base = self.models.get(root)
        card = records.fine_tuned_model_card(
            model_id,
            root=root,
            job=job or self.new_id(),
            created=created,
            owned_by=self.org_id,
            base=base.body if base and base.body["type"] == "base" else None,
        )
        item = Item(id=model_id, seq=next(self.seq), created_at=created, body=card)
        self.models.add(item)
        return item

    def add_base_models(self) -> None:
        for card in records.base_model_cards():
            item = Item(id=card["id"], seq=next(self.seq), created_at=card["created"], body=card)
            self.models.add(item)

    # ------------------------------------------------------------ changing

    def rewrite(self, kind: str, job: Job, at: float, target: str | None) -> None:
        """Move ``job`` to ``target`` (default: its next status) at ``at``."""
        lc = BATCH if kind == BATCH_JOBS else FINE_TUNING
        before = lifecycle.status_at(job.timeline, at)
        timeline, outcome = lifecycle.advance(
            lc, job.timeline, at, job.outcome, job.durations, target, hold=job.held
        )
        if isinstance(job, BatchJob):
            # requests stop being processed where the job stands when it is cut short
            if outcome in ("SUCCESS", "FAILED"):
                job.reach = 1.0
            elif before in ("QUEUED", "RUNNING"):
                job.reach = lifecycle.progress(job.timeline, at, job.reach)
            if outcome == "FAILED" and job.fail_ratio < 0.5:
                job.fail_ratio = self.rng.uniform(0.5, 1.0)
        job.timeline = timeline
        job.outcome = outcome
        job.held = timeline[-1][0] not in lc.terminal
        job.version += 1
        self.track(kind, job, at)

    def remove(self, kind: str, id: str) -> None:
        record = self.get(kind, id)
        self.table(kind).remove(id, record.status if isinstance(record, Job) else None)

    def table(self, kind: str) -> Table[Any]:
        tables: dict[str, Table[Any]] = {
            BATCH_JOBS: self.batch,
            FINE_TUNING_JOBS: self.ft,
            FILES: self.files,
            MODELS: self.models,
        }
        if kind not in tables:
            raise InvalidRequest(f"kind {kind!r} is unknown; use one of {', '.join(KINDS)}")
        return tables[kind]

    def clear(self) -> None:
        """Forget every resource but the base models."""
        for table in (self.batch, self.ft, self.files, self.models):
            table.clear()
        self.due.clear()
        self.add_base_models()
        self.activity.restart(self.now())

    # ------------------------------------------------------------ activity

    def _tick(self, at: float) -> None:
        activity = self.activity
        step = activity.ticks % act.CYCLE
        if step == 0 or activity.plan is None:
            activity.plan = act.plan_cycle(self.rng)
        for action in activity.plan[step]:
            self._act(action, at)

    def _act(self, action: act.Action, at: float) -> None:
        rng = self.rng
        if action.name == "batch_job":
            inputs = self._first(self.files, lambda f: f.body["sample_type"] == "batch_request")
            self.new_batch_job(
                at,
                model=rng.choice(
                    ("mistral-small-latest", "mistral-large-latest", "codestral-latest")
                ),
                outcome=action.outcome or "SUCCESS",
                queued_for=rng.uniform(1.5, 2.5),
                running_for=rng.uniform(4.0, 6.0),
                total_requests=rng.randint(5, 200),
                input_files=[inputs.id] if inputs else [],
                metadata={"source": "activity"},
            )
        elif action.name == "upload_file":
            purpose = rng.choice(("fine-tune", "batch"))
            self.new_file(at, purpose=purpose, num_lines=rng.randint(20, 2000))
        elif action.name == "fine_tuning_job" and self.fine_tuning_enabled:
            training = self._first(self.files, lambda f: f.body["purpose"] == "fine-tune")
            self.new_fine_tuning_job(
                at,
                model=rng.choice(("open-mistral-nemo", "mistral-small-latest", "codestral-latest")),
                outcome=action.outcome or "SUCCESS",
                training_files=[training.id] if training else [],
            )
        elif action.name == "cancel_batch_job":
            job = self._first(
                self.batch, lambda j: j.outcome == "SUCCESS", statuses=("QUEUED", "RUNNING")
            )
            if job is not None:
                self.rewrite(BATCH_JOBS, job, at, lifecycle.CANCELLATION_REQUESTED)
        elif action.name == "cancel_fine_tuning_job":
            active = ("QUEUED", "VALIDATING", "VALIDATED", "RUNNING")
            ft = self._first(self.ft, lambda j: True, statuses=active)
            if ft is not None:
                self.rewrite(FINE_TUNING_JOBS, ft, at, lifecycle.CANCELLATION_REQUESTED)
        elif action.name == "delete_file":
            old = self._first(
                self.files,
                lambda f: f.body["source"] == "upload",
                newest=False,
                before=at - MIN_AGE_TO_DELETE,
            )
            if old is not None:
                self.files.remove(old.id)
        elif action.name == "delete_model":
            model = self._first(
                self.models,
                lambda m: m.body["type"] == "fine-tuned",
                newest=False,
                before=at - MIN_AGE_TO_DELETE,
            )
            if model is not None:
                self.models.remove(model.id)

    def _first(
        self,
        table: Table[Any],
        keep: Callable[[Any], bool],
        *,
        statuses: Sequence[str] | None = None,
        newest: bool = True,
        before: float | None = None,
    ) -> Any:
        """The newest (or oldest) record that ``keep`` accepts, walking no further than needed."""
        found = first(
            [table.order] if statuses is None else table.statuses(statuses),
            lambda id: keep(table.records[id]),
            newest_first=newest,
            before=before,
        )
        return None if found is None else table.records[found]
