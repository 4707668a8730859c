"""The simulator's batch jobs: ``/v1/batch/jobs``."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from poller.simulator import listing, records, world
from poller.simulator.core import SimulatorCore
from poller.simulator.errors import InvalidRequest
from poller.simulator.lifecycle import BATCH
from poller.simulator.records import Json
from poller.simulator.world import BATCH_JOBS


class BatchJobs(SimulatorCore):
    """Batch jobs: list, get, create, delete."""

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
        offset, limit = listing.page_args(page, page_size)
        if order_by not in ("created", "-created"):
            raise InvalidRequest("order_by must be 'created' or '-created'")
        for name in status or ():
            world.check(name, BATCH.statuses, "batch job status")
        with self._moment() as now:
            table = self._world.batch
            found = listing.select(
                table,
                offset=offset,
                limit=limit,
                statuses=status,
                newest_first=order_by == "-created",
                after=created_after,
                facets={"model": listing.one(model), "agent_id": listing.one(agent_id)},
            )
            data = [records.batch_job_view(table.records[id], now) for id in found.ids]
            return listing.answer(data, found.total)

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
