"""Mistral's own Python SDK reads the simulator as it reads the real API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from poller.simulator import Simulator, SimulatorServer

sdk = pytest.importorskip("mistralai.client")

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


# the SDK warns of the deprecated parameters and fields it handles itself (page, hash...)
SDK_DEPRECATIONS = pytest.mark.filterwarnings("ignore:.*DEPRECATED:DeprecationWarning")


@SDK_DEPRECATIONS
def test_sdk_reads_libraries_and_their_documents(mistral: Any) -> None:
    """The SDK parses the library list, a library's documents and a document's status."""
    libraries = mistral.beta.libraries.list().data
    assert {lib.name for lib in libraries} == {"Product manuals", "Support answers"}
    manuals = next(lib for lib in libraries if lib.name == "Product manuals")
    documents = mistral.beta.libraries.documents.list(library_id=manuals.id).data
    assert len(documents) == manuals.nb_documents == 4
    assert {d.process_status for d in documents} == {"done", "missing_content"}
    status = mistral.beta.libraries.documents.status(
        library_id=manuals.id, document_id=documents[0].id
    )
    assert status.process_status == documents[0].process_status


@SDK_DEPRECATIONS
def test_sdk_uploads_reprocesses_and_deletes_a_document(mistral: Any) -> None:
    """Upload (multipart), reprocess and delete of a document through the SDK."""
    library = mistral.beta.libraries.create(name="Scratch")
    document = mistral.beta.libraries.documents.upload(
        library_id=library.id, file={"file_name": "notes.md", "content": b"# notes\n"}
    )
    assert (document.name, document.process_status, document.size) == ("notes.md", "todo", 8)
    mistral.beta.libraries.documents.reprocess(library_id=library.id, document_id=document.id)
    mistral.beta.libraries.documents.delete(library_id=library.id, document_id=document.id)
    assert mistral.beta.libraries.get(library_id=library.id).nb_documents == 0
    assert mistral.beta.libraries.delete(library_id=library.id).id == library.id
