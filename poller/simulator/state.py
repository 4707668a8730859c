"""``Simulator``: the thread-safe simulated Mistral workspace, with no HTTP in it.

Every method answers with plain dicts shaped like the API's answers. The ``list_*``,
``get_*``, ``delete_*``, ``upload_file`` and ``start_fine_tuning_job`` methods are
what the ``/v1`` routes call; the others are the control API (``/_sim``), usable
directly from Python tests.

Each resource family is a module of its own built on ``core.SimulatorCore``
(``batch_jobs``, ``fine_tuning_jobs``, ``files``, ``models``, ``libraries``); ``Simulator``
composes them, so a new family is a new module and one more base here.
"""

from __future__ import annotations

from poller.simulator.batch_jobs import BatchJobs
from poller.simulator.files import Files
from poller.simulator.fine_tuning_jobs import FineTuningJobs
from poller.simulator.libraries import Libraries
from poller.simulator.models import Models
from poller.simulator.world import BATCH_JOBS, FILES, FINE_TUNING_JOBS, KINDS, MODELS

__all__ = ["BATCH_JOBS", "FILES", "FINE_TUNING_JOBS", "KINDS", "MODELS", "Simulator"]


class Simulator(BatchJobs, FineTuningJobs, Files, Models, Libraries):
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
