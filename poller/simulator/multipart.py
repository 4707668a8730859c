"""Just enough ``multipart/form-data`` parsing for file uploads (no python-multipart here)."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message


@dataclass(frozen=True)
class Part:
    """One field of a form: a file when ``filename`` is set."""

    name: str
    data: bytes
    filename: str | None = None
    content_type: str | None = None


def _header(value: str) -> Message:
    message = Message()
    message["content-type"] = value
    return message


def parse(body: bytes, content_type: str) -> dict[str, Part]:
    """The fields of a ``multipart/form-data`` body by name; ``{}`` if it is not one."""
    header = _header(content_type)
    boundary = header.get_param("boundary")
    if header.get_content_type() != "multipart/form-data" or not isinstance(boundary, str):
        return {}
    fields: dict[str, Part] = {}
    for chunk in body.split(b"--" + boundary.encode("latin-1"))[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        headers: dict[str, str] = {}
        for line in head.decode("latin-1").split("\r\n"):
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        disposition = _header(headers.get("content-disposition", ""))
        name = disposition.get_param("name", header="content-type")
        if not isinstance(name, str):
            continue
        filename = disposition.get_param("filename", header="content-type")
        fields[name] = Part(
            name=name,
            data=data.removesuffix(b"\r\n"),
            filename=filename if isinstance(filename, str) else None,
            content_type=headers.get("content-type"),
        )
    return fields
