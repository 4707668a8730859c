"""The simulator's files: ``/v1/files``, in the order ``files_order`` says."""

from __future__ import annotations

from collections.abc import Collection

from poller.simulator import listing
from poller.simulator.core import SimulatorCore
from poller.simulator.index import Page
from poller.simulator.records import Item, Json
from poller.simulator.world import FILES


class Files(SimulatorCore):
    """Files: list (in ``files_order``), get, create, upload, delete."""

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
        offset, limit = listing.page_args(page, page_size)
        with self._moment():
            table = self._world.files
            keep = None
            if search:
                needle = search.lower()

                def keep(id: str) -> bool:
                    return needle in table.records[id].body["filename"].lower()

            facets = {
                "purpose": listing.one(purpose),
                "sample_type": sample_type or None,
                "source": source or None,
                "mimetype": mimetypes or None,
            }
            if self.files_order == "none":
                # every match, then a page of them by id: stable, and blind to creation
                every = listing.select(
                    table, offset=0, limit=len(table) or 1, facets=facets, keep=keep
                )
                ids = sorted(every.ids)[offset : offset + limit]
                found = Page(ids, every.total)
            else:
                found = listing.select(
                    table,
                    offset=offset,
                    limit=limit,
                    newest_first=self.files_order == "newest",
                    facets=facets,
                    keep=keep,
                )
            data = [dict(table.records[id].body) for id in found.ids]
            return listing.answer(data, found.total if include_total else None)

    def set_files_order(self, order: str) -> Json:
        """Order the files list ``newest`` first, ``oldest`` first or by ``none``."""
        with self._lock:
            self.files_order = listing.file_order(order)
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
