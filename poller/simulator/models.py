"""The simulator's models: ``/v1/models``, base and fine-tuned."""

from __future__ import annotations

from poller.simulator.core import SimulatorCore
from poller.simulator.errors import InvalidRequest
from poller.simulator.records import Item, Json
from poller.simulator.world import MODELS


class Models(SimulatorCore):
    """Model cards: list, get, create (fine-tuned), delete (fine-tuned only)."""

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
