"""Mistral's own Python SDK reads the simulator as it reads the real API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from poller.simulator import Simulator, SimulatorServer

sdk = pytest.importorskip("mistralai.client")
# the SDK's models keep the datetime class in place when they are built: build the runs'
# at collection, before a test freezes time (freezegun), not at their first use
for _model in ("WorkflowExecutionWithoutResultResponse", "WorkflowExecutionResponse"):
    getattr(pytest.importorskip("mistralai.client.models"), _model)

T0 = 1_750_000_000.0


@pytest.fixture(scope="module")
def mistral() -> Iterator[Any]:
    sim = Simulator(clock=lambda: T0, seed=4, scenario="demo", api_key="key")
    sim.create_batch_job()
    with SimulatorServer(sim) as server:
        yield sdk.Mistral(api_key="key", server_url=server.root)


def test_sdk_lists_and_reads_batch_jobs(mistral: Any) -> None:
    """The SDK parses a filtered batch job list and a single job."""
    listed = mistral.batch.jobs.list(status=["SUCCESS", "QUEUED"])
    assert {job.status for job in listed.data} == {"SUCCESS", "QUEUED"}
    assert mistral.batch.jobs.get(job_id=listed.data[0].id).id == listed.data[0].id


def test_sdk_lists_and_reads_files(mistral: Any) -> None:
    """The SDK parses the file list and a single file."""
    listed = mistral.files.list()
    assert listed.total == len(listed.data) > 0
    assert mistral.files.retrieve(file_id=listed.data[0].id).deleted is False


def test_sdk_uploads_a_file(mistral: Any) -> None:
    """An upload through the SDK's multipart request is counted in lines."""
    uploaded = mistral.files.upload(
        file={"file_name": "train.jsonl", "content": b'{"a": 1}\n{"b": 2}\n'}, purpose="fine-tune"
    )
    assert uploaded.num_lines == 2


def test_sdk_lists_models_of_both_kinds(mistral: Any) -> None:
    """The SDK tells base and fine-tuned model cards apart."""
    kinds = {type(model).__name__ for model in mistral.models.list().data}
    assert kinds == {"BaseModelCard", "FTModelCard"}


def test_sdk_sees_404_as_an_error(mistral: Any) -> None:
    """An unknown job raises the SDK's error, with the status code."""
    with pytest.raises(sdk.errors.SDKError, match="404"):
        mistral.batch.jobs.get(job_id="5bd3c4b4-2f69-4c04-a9a3-6f3c5e7e1d11")


def test_sdk_pages_through_workflow_runs_and_reads_one(mistral: Any) -> None:
    """The SDK follows the runs list's page tokens and reads a run by its id."""
    page = mistral.workflows.runs.list_runs(page_size=2, order="asc")
    seen = []
    while page is not None:
        seen += page.result.executions
        page = page.next() if page.result.next_page_token else None
    assert len(seen) == len({r.run_id for r in seen}) >= 4
    assert {r.status for r in seen} >= {"COMPLETED", "CONTINUED_AS_NEW"}
    one = mistral.workflows.runs.get_run(run_id=seen[0].run_id)
    assert (one.run_id, one.execution_id) == (seen[0].run_id, seen[0].execution_id)
