"""The simulator's fine-tuning jobs: ``/v1/fine_tuning/jobs``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from poller.simulator import listing, records, world
from poller.simulator.core import SimulatorCore
from poller.simulator.errors import InvalidRequest
from poller.simulator.lifecycle import FINE_TUNING
from poller.simulator.records import FineTuningJob, Json
from poller.simulator.world import FINE_TUNING_JOBS


class FineTuningJobs(SimulatorCore):
    """Fine-tuning jobs: list, get, create, start."""

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
        offset, limit = listing.page_args(page, page_size)
        if status is not None:
            world.check(status, FINE_TUNING.statuses, "fine-tuning job status")
        with self._moment() as now:
            table = self._world.ft
            found = listing.select(
                table,
                offset=offset,
                limit=limit,
                statuses=listing.one(status),
                after=created_after,
                before=created_before,
                facets={"model": listing.one(model), "suffix": listing.one(suffix)},
            )
            data = [records.fine_tuning_job_view(table.records[id], now) for id in found.ids]
            return listing.answer(data, found.total)

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
