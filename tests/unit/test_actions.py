"""The seed's actions: request bodies and command-line input, before any call."""

from __future__ import annotations

import base64
import pathlib

import pytest

from poller import actions
from poller.exceptions import UsageError


def test_chat_body_is_the_seed_template() -> None:
    """model, one user message, temperature 0.7 and max_tokens 1024 by default."""
    assert actions.chat_body("m", "hi") == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.7,
        "max_tokens": 1024,
    }
    assert actions.chat_body("m", "hi", stream=True)["stream"] is True


def test_image_file_goes_as_a_data_url(tmp_path: pathlib.Path) -> None:
    """A local image is sent inline as a base64 data URL with its type."""
    image = tmp_path / "cat.png"
    image.write_bytes(b"\x89PNG\r\n")
    url = actions.image_url_of(image_url=None, image_file=str(image))
    assert url == "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n").decode()
    body = actions.image_body("pixtral", "What is it?", url)
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "What is it?"},
        {"type": "image_url", "image_url": url},
    ]


@pytest.mark.parametrize(
    ("url", "file", "message"),
    [(None, None, "give exactly one of --image-url URL and --image-file PATH"),
     ("https://x/y.png", "y.png", "give exactly one of --image-url URL and --image-file PATH"),
     (None, "notes.txt", "--image-file notes.txt: not a PNG, JPEG, GIF or WebP image (by its "
                         "name); pass one of those, or --image-url"),
     (None, "gone.jpg", "--image-file gone.jpg: no such file")],
)  # fmt: skip
def test_image_input_errors(url: str | None, file: str | None, message: str) -> None:
    """Image input that cannot be sent is one message saying what to change."""
    with pytest.raises(UsageError) as caught:
        actions.image_url_of(image_url=url, image_file=file)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("path", "base", "expected"),
    [("/models", "https://api.mistral.ai/v1", "/models"),
     ("/v1/models", "https://api.mistral.ai/v1", "/models"),
     ("v1/chat/completions", "https://api.mistral.ai/v1", "/chat/completions"),
     ("/v1/models", "https://gateway.example.com/mistral", "/v1/models"),
     ("/batch/jobs?status=RUNNING", "http://127.0.0.1:8080/v1", "/batch/jobs?status=RUNNING")],
)  # fmt: skip
def test_api_path_is_relative_to_the_base_url(path: str, base: str, expected: str) -> None:
    """PATH is taken under the base URL; a leading /v1 is dropped when the base ends in /v1."""
    assert actions.api_path(path, base) == expected


def test_json_errors_point_at_the_break(tmp_path: pathlib.Path) -> None:
    """Invalid JSON names the option and the place; a missing file says so."""
    with pytest.raises(UsageError, match=r"^--json is not valid JSON \(Expecting value at line 1"):
        actions.parse_json("")
    with pytest.raises(UsageError, match=r"^--json-file nowhere.json: no such file$"):
        actions.read_json_file("nowhere.json")
    good = tmp_path / "body.json"
    good.write_text('{"model": "mistral-embed", "input": "x"}')
    assert actions.read_json_file(str(good)) == {"model": "mistral-embed", "input": "x"}


def test_embeddings_need_an_input() -> None:
    """No input is refused before any call."""
    with pytest.raises(UsageError, match="--input"):
        actions.embeddings_body("mistral-embed", [])
    assert actions.embeddings_body("e", ["a", "b"]) == {"model": "e", "input": ["a", "b"]}


async def test_unusable_path_is_a_usage_error(tmp_path: pathlib.Path) -> None:
    """A path httpx cannot make a URL of is one clear error, not a traceback."""
    from poller import config as config_mod
    from poller.app import App
    from poller.exceptions import UsageError

    config = config_mod.from_mapping(
        {
            "store": {"url": f"sqlite:///{tmp_path}/p.db"},
            "mistral": {"base_url": "http://127.0.0.1:9/v1"},
        }
    )
    async with App(config) as app:
        with pytest.raises(UsageError, match="not a usable API path"):
            await actions.call(app, "GET", "//[::1", out=lambda _b: None)
