"""Ready-made workspaces: many finished resources at once, and the demo's history."""

from __future__ import annotations

from poller.simulator import lifecycle
from poller.simulator.errors import InvalidRequest
from poller.simulator.lifecycle import BATCH, FINE_TUNING
from poller.simulator.records import BatchJob, FineTuningJob, Job
from poller.simulator.world import DEFAULT_HYPERPARAMETERS, World, check


def bulk(
    w: World,
    now: float,
    *,
    batch_jobs: int,
    fine_tuning_jobs: int,
    files: int,
    status: str,
    span: float,
) -> None:
    """Add finished resources created over the ``span`` seconds before ``now``.

    Unlike jobs that finish in the simulator's time, these point at output files
    and models that no longer exist: seeding 100,000 jobs stays quick and small.
    """
    if min(batch_jobs, fine_tuning_jobs, files) < 0:
        raise InvalidRequest("bulk counts must be zero or more")
    if span <= 0:
        raise InvalidRequest("bulk span must be more than 0 seconds")
    if batch_jobs:
        check(status, BATCH.outcomes, "bulk batch job status")
    if fine_tuning_jobs:
        check(status, FINE_TUNING.outcomes, "bulk fine-tuning job status")
    # the longest a bulk job takes, so that every one has finished by now
    latest = now - 700.0
    rng = w.rng

    def created(n: int) -> list[float]:
        return sorted(latest - span * rng.random() for _ in range(n))

    jobs: list[BatchJob] = []
    path = BATCH.path(status)
    for at in created(batch_jobs):
        queued, running = rng.uniform(1, 60), rng.uniform(10, 600)
        durations = {"QUEUED": queued, "RUNNING": running}
        # what lifecycle.schedule would plan, built directly: this loop runs 100,000 times
        moments = (at, at + queued, at + queued + running, at + queued + running + 1.0)
        job = BatchJob(
            id=w.new_id(),
            seq=next(w.seq),
            created_at=at,
            timeline=list(zip(path, moments, strict=False)),
            outcome=status,
            durations=durations,
            status=status,
            finished=True,
            model=rng.choice(("mistral-small-latest", "mistral-large-latest")),
            endpoint="/v1/chat/completions",
            input_files=[w.new_id()],
            metadata=None,
            total_requests=1 + int(rng.random() * 1000),
            reach=rng.uniform(0.3, 0.9) if status in ("TIMEOUT_EXCEEDED", "CANCELLED") else 1,
            fail_ratio=rng.uniform(0.5, 1.0) if status == "FAILED" else 0.0,
        )
        if status == "SUCCESS":
            job.output_file = w.new_id()
        elif status in ("FAILED", "TIMEOUT_EXCEEDED"):
            job.error_file = w.new_id()
        jobs.append(job)
    w.batch.load(jobs, _status)
    w.ft.load([_fine_tuning_job(w, at, status) for at in created(fine_tuning_jobs)], _status)
    w.files.load(
        w.file_item(at, purpose=rng.choice(("fine-tune", "batch"))) for at in created(files)
    )


def _status(job: Job) -> str:
    return job.status


def _fine_tuning_job(w: World, at: float, status: str) -> FineTuningJob:
    durations = dict(FINE_TUNING.durations)
    job = FineTuningJob(
        id=w.new_id(),
        seq=next(w.seq),
        created_at=at,
        timeline=lifecycle.schedule(FINE_TUNING, "QUEUED", at, status, durations),
        outcome=status,
        durations=durations,
        status=status,
        finished=True,
        model="open-mistral-nemo",
        training_files=[{"file_id": w.new_id(), "weight": 1.0}],
        hyperparameters=dict(DEFAULT_HYPERPARAMETERS),
        metadata=w.fine_tuning_metadata(durations, 10),
    )
    if status == "SUCCESS":
        job.fine_tuned_model = w.model_name(job.model, job.timeline[-1][1])
        job.trained_tokens = job.metadata["train_tokens"]
    return job


def demo(w: World, now: float) -> None:
    """A workspace with some history: finished jobs, their files, a fine-tuned model."""
    hour = 3600.0
    train = w.new_file(
        now,
        filename="support_chats_train.jsonl",
        num_lines=1200,
        created_at=now - 3 * hour,
    )
    evals = w.new_file(
        now,
        filename="support_chats_eval.jsonl",
        num_lines=150,
        created_at=now - 3 * hour + 60,
    )
    batch_input = w.new_file(
        now,
        filename="product_descriptions.jsonl",
        purpose="batch",
        num_lines=250,
        created_at=now - 2.5 * hour,
    )
    w.new_fine_tuning_job(
        now,
        created_at=now - 2.9 * hour,
        training_files=[train.id],
        validation_files=[evals.id],
        suffix="support",
        running_for=1800.0,
    )
    w.new_fine_tuning_job(
        now,
        model="mistral-small-latest",
        outcome="FAILED_VALIDATION",
        created_at=now - 1.5 * hour,
        training_files=[evals.id],
    )
    for hours_ago, outcome in (
        (2.0, "SUCCESS"),
        (1.6, "SUCCESS"),
        (1.2, "FAILED"),
        (0.8, "CANCELLED"),
        (0.4, "SUCCESS"),
    ):
        w.new_batch_job(
            now,
            outcome=outcome,
            created_at=now - hours_ago * hour,
            queued_for=30.0,
            running_for=600.0,
            input_files=[batch_input.id],
            metadata={"team": "catalog"},
        )
