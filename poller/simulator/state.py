"""``Simulator``: the thread-safe simulated Mistral workspace, with no HTTP in it.

Every method answers with plain dicts shaped like the API's answers. The ``list_*``,
``get_*``, ``delete_*``, ``upload_file`` and ``start_fine_tuning_job`` methods are
what the ``/v1`` routes call; the others are the control API (``/_sim``), usable
directly from Python tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from poller.simulator import activity as act
from poller.simulator import inference, libraries, records, seeding, world
from poller.simulator.errors import InvalidRequest
from poller.simulator.faults import Fault, FaultQueue, make_fault
from poller.simulator.index import Page, Table, select
from poller.simulator.lifecycle import BATCH, CANCELLATION_REQUESTED, FINE_TUNING
from poller.simulator.records import FineTuningJob, Item, Json
from poller.simulator.stats import RequestStats
from poller.simulator.world import (
    BATCH_JOBS,
    FILES,
    FINE_TUNING_JOBS,
    KINDS,
    MODELS,
)

__all__ = ["BATCH_JOBS", "FILES", "FINE_TUNING_JOBS", "KINDS", "MODELS", "Simulator"]

FILE_ORDERS = ("newest", "oldest", "none")
"""How ``GET /v1/files`` orders its answer; ``none`` is stable but unrelated to creation."""

_DELETED_OBJECT = {BATCH_JOBS: "batch", FINE_TUNING_JOBS: "job", FILES: "file", MODELS: "model"}


def _page_args(page: int, page_size: int) -> tuple[int, int]:
    if page < 0:
        raise InvalidRequest("page must be 0 or more")
    if page_size < 1:
        raise InvalidRequest("page_size must be 1 or more")
    return page * page_size, page_size


def _listing(data: list[Json], total: int | None) -> Json:
    return {"data": data, "object": "list", "total": total}


def _file_order(order: str) -> str:
    if order not in FILE_ORDERS:
        raise InvalidRequest(f"files order {order!r} is unknown; use {', '.join(FILE_ORDERS)}")
    return order


def _one(value: str | None) -> list[str] | None:
    return None if value is None else [value]


def _select(
    table: Table[Any],
    *,
    offset: int,
    limit: int,
    statuses: Collection[str] | None = None,
    newest_first: bool = True,
    after: float | None = None,
    before: float | None = None,
    facets: Mapping[str, Collection[str] | None],
    keep: Callable[[str], bool] | None = None,
) -> Page:
    """One page of ``table``: by status and creation through its indexes, then by facets."""
    allowed = table.having(facets)
    if allowed is not None:
        also = keep
        keep = allowed.__contains__ if also is None else lambda id: id in allowed and also(id)
    return select(
        [table.order] if not statuses else table.statuses(statuses),
        offset=offset,
        limit=limit,
        newest_first=newest_first,
        after=after,
        before=before,
        keep=keep,
    )


class Simulator:
    """An in-memory Mistral workspace whose answers follow Mistral's OpenAPI schemas.

    Thread-safe: one lock guards everything. ``clock`` returns unix seconds and must
    not go backwards; ``advance_clock`` adds to it. ``seed`` makes ids and every
    random choice reproducible. With ``api_key`` every ``/v1`` request must carry
    ``<auth_header>: Bearer <api_key>``. ``fine_tuning=False`` answers 404 on
    ``/v1/fine_tuning/...`` as the deprecated upstream will. ``activity`` keeps the
    workspace busy by itself; ``scenario="demo"`` starts it with some history.
    ``files_order`` is how the files list is ordered (Mistral documents none): ``newest``
    first, ``oldest`` first, or ``none`` (by id, unrelated to creation).
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
        api_key: str | None = None,
        auth_header: str = "Authorization",
        fine_tuning: bool = True,
        activity: bool = False,
        activity_every: float = act.DEFAULT_EVERY,
        scenario: str | None = None,
        files_order: str = "newest",
    ) -> None:
        if scenario not in (None, "demo"):
            raise InvalidRequest(f"scenario {scenario!r} is unknown; use 'demo'")
        self.files_order = _file_order(files_order)
        self.api_key = api_key
        self.auth_header = auth_header
        self.fine_tuning = fine_tuning
        self._lock = threading.Lock()
        self._world = world.World(
            clock=clock,
            seed=seed,
            fine_tuning=fine_tuning,
            activity=activity,
            activity_every=activity_every,
        )
        self._faults = FaultQueue()
        self._fault_ids = 0
        self._stats = RequestStats()
        self.inference = inference.Inference(seed=seed)
        """The synchronous endpoints' stream counters and token pacing."""
        self.libraries = libraries.Libraries(
            clock=self._world.now, seed=seed, activity=self._world.activity
        )
        """Libraries and their documents (``poller.simulator.libraries``)."""
        if scenario == "demo":
            seeding.demo(self._world, self._world.now())
            self.libraries.demo()

    @contextmanager
    def _moment(self) -> Iterator[float]:
        """Hold the lock over a settled world; yields the moment it is settled at."""
        with self._lock:
            yield self._world.settle()

    # ---------------------------------------------------------------- clock

    def now(self) -> float:
        """The simulator's time, in unix seconds."""
        with self._lock:
            return self._world.now()

    def advance_clock(self, seconds: float) -> Json:
        """Move the clock forward by ``seconds``: ``{"now": unix}``."""
        if seconds < 0:
            raise InvalidRequest("the clock only moves forward; advance must be zero or more")
        with self._lock:
            self._world.offset += seconds
            return {"now": self._world.now()}

    # ------------------------------------------------------------- batch jobs

    def list_batch_jobs(
        self,
        *,
        page: int = 0,
        page_size: int = 100,
        status: Collection[str] | None = None,
        created_after: float | None = None,
        order_by: str = "-created",
        model: str | None = None,
        agent_id: str | None = None,
    ) -> Json:
        """``GET /v1/batch/jobs``: a ``ListBatchJobsResponse``."""
        offset, limit = _page_args(page, page_size)
        if order_by not in ("created", "-created"):
            raise InvalidRequest("order_by must be 'created' or '-created'")
        for name in status or ():
            world.check(name, BATCH.statuses, "batch job status")
        with self._moment() as now:
            table = self._world.batch
            found = _select(
                table,
                offset=offset,
                limit=limit,
                statuses=status,
                newest_first=order_by == "-created",
                after=created_after,
                facets={"model": _one(model), "agent_id": _one(agent_id)},
            )
            data = [records.batch_job_view(table.records[id], now) for id in found.ids]
            return _listing(data, found.total)

    def get_batch_job(self, id: str) -> Json:
        """``GET /v1/batch/jobs/{id}``: a ``BatchJob``."""
        with self._moment() as now:
            return records.batch_job_view(self._world.get(BATCH_JOBS, id), now)

    def create_batch_job(
        self,
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
    ) -> Json:
        """Add a batch job planned to reach ``outcome`` (also ``POST /v1/batch/jobs``).

        ``outcome`` is SUCCESS, FAILED, TIMEOUT_EXCEEDED or CANCELLED (cancelled while
        running); ``queued_for``/``running_for`` are seconds (defaults 2 and 5).
        """
        with self._moment() as now:
            job = self._world.new_batch_job(
                now,
                model=model,
                endpoint=endpoint,
                total_requests=total_requests,
                outcome=outcome,
                queued_for=queued_for,
                running_for=running_for,
                created_at=created_at,
                metadata=metadata,
                input_files=input_files,
                agent_id=agent_id,
            )
            return records.batch_job_view(job, now)

    def delete_batch_job(self, id: str) -> Json:
        """``DELETE /v1/batch/jobs/{id}``: a ``DeleteBatchJobResponse``."""
        return self.delete(BATCH_JOBS, id)

    # ------------------------------------------------------ fine-tuning jobs

    def list_fine_tuning_jobs(
        self,
        *,
        page: int = 0,
        page_size: int = 100,
        model: str | None = None,
        created_after: float | None = None,
        created_before: float | None = None,
        status: str | None = None,
        suffix: str | None = None,
    ) -> Json:
        """``GET /v1/fine_tuning/jobs``: a ``ListFineTuningJobsResponse``, newest first."""
        offset, limit = _page_args(page, page_size)
        if status is not None:
            world.check(status, FINE_TUNING.statuses, "fine-tuning job status")
        with self._moment() as now:
            table = self._world.ft
            found = _select(
                table,
                offset=offset,
                limit=limit,
                statuses=_one(status),
                after=created_after,
                before=created_before,
                facets={"model": _one(model), "suffix": _one(suffix)},
            )
            data = [records.fine_tuning_job_view(table.records[id], now) for id in found.ids]
            return _listing(data, found.total)

    def get_fine_tuning_job(self, id: str) -> Json:
        """``GET /v1/fine_tuning/jobs/{id}``: a ``CompletionFineTuningJobDetails``."""
        with self._moment() as now:
            job = self._world.get(FINE_TUNING_JOBS, id)
            return records.fine_tuning_job_view(job, now, details=True)

    def create_fine_tuning_job(
        self,
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
    ) -> Json:
        """Add a fine-tuning job planned to reach ``outcome`` (also ``POST /v1/fine_tuning/jobs``).

        ``outcome`` is SUCCESS, FAILED, FAILED_VALIDATION or CANCELLED; phases last
        3, 3, 3 and 8 seconds unless given. With ``auto_start=False`` the job waits in
        VALIDATED until ``start_fine_tuning_job``.
        """
        with self._moment() as now:
            job = self._world.new_fine_tuning_job(
                now,
                model=model,
                outcome=outcome,
                queued_for=queued_for,
                validating_for=validating_for,
                validated_for=validated_for,
                running_for=running_for,
                created_at=created_at,
                training_files=training_files,
                validation_files=validation_files,
                hyperparameters=hyperparameters,
                suffix=suffix,
                auto_start=auto_start,
            )
            return records.fine_tuning_job_view(job, now, details=True)

    def start_fine_tuning_job(self, id: str) -> Json:
        """``POST /v1/fine_tuning/jobs/{id}/start``: start a job held in VALIDATED."""
        with self._moment() as now:
            job: FineTuningJob = self._world.get(FINE_TUNING_JOBS, id)
            if job.status != "VALIDATED":
                raise InvalidRequest(f"Job {id} is {job.status}; only a VALIDATED job can start")
            self._world.rewrite(FINE_TUNING_JOBS, job, now, "RUNNING")
            return records.fine_tuning_job_view(job, now, details=True)

    # ------------------------------------------------------------------ files

    def list_files(
        self,
        *,
        page: int = 0,
        page_size: int = 100,
        purpose: str | None = None,
        sample_type: Collection[str] | None = None,
        source: Collection[str] | None = None,
        search: str | None = None,
        mimetypes: Collection[str] | None = None,
        include_total: bool = True,
    ) -> Json:
        """``GET /v1/files``: a ``ListFilesResponse``, in the order ``files_order`` says."""
        offset, limit = _page_args(page, page_size)
        with self._moment():
            table = self._world.files
            keep = None
            if search:
                needle = search.lower()

                def keep(id: str) -> bool:
                    return needle in table.records[id].body["filename"].lower()

            facets = {
                "purpose": _one(purpose),
                "sample_type": sample_type or None,
                "source": source or None,
                "mimetype": mimetypes or None,
            }
            if self.files_order == "none":
                # every match, then a page of them by id: stable, and blind to creation
                every = _select(table, offset=0, limit=len(table) or 1, facets=facets, keep=keep)
                ids = sorted(every.ids)[offset : offset + limit]
                found = Page(ids, every.total)
            else:
                found = _select(
                    table,
                    offset=offset,
                    limit=limit,
                    newest_first=self.files_order == "newest",
                    facets=facets,
                    keep=keep,
                )
            data = [dict(table.records[id].body) for id in found.ids]
            return _listing(data, found.total if include_total else None)

    def set_files_order(self, order: str) -> Json:
        """Order the files list ``newest`` first, ``oldest`` first or by ``none``."""
        with self._lock:
            self.files_order = _file_order(order)
            return {"files": self.files_order}

    def get_file(self, id: str) -> Json:
        """``GET /v1/files/{id}``: a ``GetFileResponse``."""
        with self._moment():
            item: Item = self._world.get(FILES, id)
            return {**item.body, "deleted": False}

    def create_file(
        self,
        *,
        filename: str | None = None,
        purpose: str = "fine-tune",
        bytes: int | None = None,
        sample_type: str | None = None,
        source: str = "upload",
        num_lines: int | None = None,
        created_at: float | None = None,
        mimetype: str | None = None,
        content: bytes | None = None,
    ) -> Json:
        """Add a file: a ``FileSchema``. Sizes and line counts are made up unless given."""
        with self._moment() as now:
            item = self._world.new_file(
                now,
                filename=filename,
                purpose=purpose,
                size=bytes,
                sample_type=sample_type,
                source=source,
                num_lines=num_lines,
                created_at=created_at,
                mimetype=mimetype,
                content=content,
            )
            return dict(item.body)

    def upload_file(
        self,
        filename: str,
        content: bytes,
        *,
        purpose: str = "fine-tune",
        mimetype: str | None = None,
    ) -> Json:
        """``POST /v1/files``: an uploaded file, as ``UploadFileOut``."""
        return self.create_file(
            filename=filename, purpose=purpose, content=content, mimetype=mimetype
        )

    def delete_file(self, id: str) -> Json:
        """``DELETE /v1/files/{id}``: a ``DeleteFileResponse``."""
        return self.delete(FILES, id)

    # ----------------------------------------------------------------- models

    def list_models(self) -> Json:
        """``GET /v1/models``: a ``ModelList`` of base and fine-tuned models."""
        with self._moment():
            # base models first, then fine-tuned ones as they were made
            cards = self._world.models.records.values()
            return {"object": "list", "data": [dict(item.body) for item in cards]}

    def get_model(self, id: str) -> Json:
        """``GET /v1/models/{id}``: a ``BaseModelCard`` or an ``FTModelCard``."""
        with self._moment():
            item: Item = self._world.get(MODELS, id)
            return dict(item.body)

    def create_model(
        self,
        *,
        root: str = "open-mistral-nemo",
        id: str | None = None,
        job: str | None = None,
        created_at: float | None = None,
    ) -> Json:
        """Add a fine-tuned model card (``ft:<root>:...`` unless ``id`` is given)."""
        with self._moment() as now:
            item = self._world.new_model(
                now, root=root, model_id=id, job=job, created_at=created_at
            )
            return dict(item.body)

    def delete_model(self, id: str) -> Json:
        """``DELETE /v1/models/{id}``: a ``DeleteModelResponse``; fine-tuned models only."""
        with self._moment():
            item: Item = self._world.get(MODELS, id)
            if item.body["type"] != "fine-tuned":
                raise InvalidRequest(
                    f"Model {id} is a base model; only fine-tuned models can be deleted"
                )
            self._world.remove(MODELS, id)
            return {"id": id, "object": "model", "deleted": True}

    # ------------------------------------------------------ any kind of resource

    def advance(self, kind: str, id: str, status: str | None = None) -> Json:
        """Move a job to its next status now, or to ``status`` through the ones between."""
        if kind not in (BATCH_JOBS, FINE_TUNING_JOBS):
            raise InvalidRequest(f"only jobs have statuses; {kind!r} does not")
        with self._moment() as now:
            job = self._world.get(kind, id)
            self._world.rewrite(kind, job, now, status)
            return self._world.view(kind, job, now)

    def cancel(self, kind: str, id: str) -> Json:
        """Request a job's cancellation: CANCELLATION_REQUESTED now, CANCELLED 3 s later."""
        if kind not in (BATCH_JOBS, FINE_TUNING_JOBS):
            raise InvalidRequest(f"only jobs can be cancelled; {kind!r} cannot")
        with self._moment() as now:
            job = self._world.get(kind, id)
            if job.status != CANCELLATION_REQUESTED:
                self._world.rewrite(kind, job, now, CANCELLATION_REQUESTED)
            return self._world.view(kind, job, now)

    def delete(self, kind: str, id: str) -> Json:
        """Delete any resource: ``{"id", "object", "deleted": true}``."""
        with self._moment():
            self._world.remove(kind, id)
            return {"id": id, "object": _DELETED_OBJECT[kind], "deleted": True}

    def bulk(
        self,
        *,
        batch_jobs: int = 0,
        fine_tuning_jobs: int = 0,
        files: int = 0,
        status: str = "SUCCESS",
        span: float = 30 * 86400.0,
    ) -> Json:
        """Quickly add finished resources created over the past ``span`` seconds."""
        with self._moment() as now:
            seeding.bulk(
                self._world,
                now,
                batch_jobs=batch_jobs,
                fine_tuning_jobs=fine_tuning_jobs,
                files=files,
                status=status,
                span=span,
            )
            return {"batch_jobs": batch_jobs, "fine_tuning_jobs": fine_tuning_jobs, "files": files}

    def counts(self) -> Json:
        """How many resources of each kind there are."""
        with self._moment():
            return {kind: len(self._world.table(kind)) for kind in KINDS}

    def reset(self) -> Json:
        """Forget every resource (base models excepted), fault and request count."""
        with self._lock:
            self._world.clear()
            self._faults.clear()
            self._stats.clear()
            self.inference.reset()
            self.libraries.clear()
            return {"reset": True}

    # --------------------------------------------------------------- activity

    def set_activity(self, enabled: bool, every: float | None = None) -> Json:
        """Turn self-generated traffic on or off; ``every`` seconds between ticks."""
        if every is not None and every <= 0:
            raise InvalidRequest("every must be more than 0 seconds")
        with self._moment() as now:
            activity = self._world.activity
            if enabled and (not activity.enabled or (every and every != activity.every)):
                activity.restart(now)
            activity.enabled = enabled
            activity.every = every or activity.every
            return activity.as_dict()

    def activity(self) -> Json:
        """Whether activity is on, its period and when its next tick is due."""
        with self._lock:
            return self._world.activity.as_dict()

    # ----------------------------------------------------- faults, auth, stats

    def add_fault(
        self,
        *,
        kind: str,
        match: Mapping[str, str] | None = None,
        count: int = 1,
        status: int | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        seconds: float | None = None,
        drop: int | None = None,
    ) -> Json:
        """Queue a fault for the next ``count`` matching ``/v1`` requests (-1: until cleared)."""
        with self._lock:
            self._fault_ids += 1
            fault = make_fault(
                f"fault_{self._fault_ids}",
                kind=kind,
                match=match,
                count=count,
                status=status,
                body=body,
                headers=headers,
                seconds=seconds,
                drop=drop,
            )
            self._faults.add(fault)
            return fault.as_dict()

    def clear_faults(self) -> Json:
        """Drop every queued fault: ``{"cleared": n}``."""
        with self._lock:
            return {"cleared": self._faults.clear()}

    def faults(self) -> list[Json]:
        """The queued faults, in the order they are tried."""
        with self._lock:
            return self._faults.as_list()

    def take_fault(self, method: str, path: str) -> Fault | None:
        """The fault a request to ``path`` is to suffer, if any (counted as a hit)."""
        with self._lock:
            return self._faults.take(method, path)

    def authorized(self, header: str | None) -> bool:
        """Whether a request whose auth header has this value may go through."""
        if self.api_key is None:
            return True
        if header is None:
            return False
        bare = self.auth_header.lower() != "authorization" and header == self.api_key
        return bare or header == f"Bearer {self.api_key}"

    def record_request(self, method: str, route: str, path: str, query: str, url: str) -> None:
        """Count one ``/v1`` request under ``"METHOD route"``."""
        with self._lock:
            self._stats.record(method, route, path, query, url, self._world.now())

    def stats(self) -> Json:
        """``{"total", "by_route": {"GET /v1/batch/jobs": n}, "recent": [...]}``."""
        with self._lock:
            return self._stats.as_dict()

    def reset_stats(self) -> Json:
        """Forget the requests counted so far."""
        with self._lock:
            self._stats.clear()
            return {"reset": True}
