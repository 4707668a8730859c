"""``poller action``: the seed's four actions as commands. Parse, call, print."""

from __future__ import annotations

import sys
from typing import Any

import click

from poller import config as config_mod
from poller.cli.common import (
    EXIT_USAGE,
    F,
    config_option,
    fail,
    guarded,
    load_config,
    run_async,
    setup_logging,
)


@click.group()
def action() -> None:
    """The seed's actions: call the API, print its JSON answer, record the trigger.

    Each action records the event the proxy would record for the same call into the
    outbox; the running daemon delivers it (or the next `poller once`).
    """


def action_options(func: F) -> F:
    func = click.option(
        "--workspace", default=None, metavar="NAME", help="Workspace to call (default: the first)."
    )(func)
    return config_option(func)


def run_action(
    config_path: str | None, workspace: str | None, method: str, path: str, body: Any
) -> None:
    config = load_config(config_path)
    setup_logging(config)
    result = run_async(_action(config, workspace, method, path, body))
    for event in result.events:
        click.echo(
            f"poller: recorded {event.type} {event.id} (the daemon delivers it, "
            "or the next `poller once`)",
            err=True,
        )


async def _action(
    config: config_mod.Config, workspace: str | None, method: str, path: str, body: Any
) -> Any:
    from poller import actions
    from poller.app import App

    def out(data: bytes) -> None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()

    async with App(config) as app:
        return await actions.call(app, method, path, body, out=out, workspace=workspace)


@action.command("chat")
@action_options
@click.option("--model", required=True, help="Model id, e.g. mistral-small-latest.")
@click.option("--content", required=True, help="The user message.")
@click.option("--temperature", type=float, default=0.7, show_default=True)
@click.option("--max-tokens", type=click.IntRange(min=0), default=1024, show_default=True)
@click.option("--stream", is_flag=True, help="Stream: one JSON line per chunk as it arrives.")
@guarded
def action_chat(
    config_path: str | None,
    workspace: str | None,
    model: str,
    content: str,
    temperature: float,
    max_tokens: int,
    stream: bool,
) -> None:
    """Create a chat completion (records chat_completion.created)."""
    from poller import actions

    body = actions.chat_body(
        model, content, temperature=temperature, max_tokens=max_tokens, stream=stream
    )
    run_action(config_path, workspace, "POST", "/chat/completions", body)


@action.command("analyze-image")
@action_options
@click.option("--model", required=True, help="A vision model, e.g. mistral-small-latest.")
@click.option("--image-url", default=None, metavar="URL", help="The image's URL.")
@click.option("--image-file", default=None, metavar="PATH", help="A local image (sent inline).")
@click.option("--prompt", required=True, help="What to ask about the image.")
@guarded
def action_analyze_image(
    config_path: str | None,
    workspace: str | None,
    model: str,
    image_url: str | None,
    image_file: str | None,
    prompt: str,
) -> None:
    """Ask a vision model about an image (records chat_completion.created)."""
    from poller import actions

    image = actions.image_url_of(image_url=image_url, image_file=image_file)
    body = actions.image_body(model, prompt, image)
    run_action(config_path, workspace, "POST", "/chat/completions", body)


@action.command("embeddings")
@action_options
@click.option("--model", required=True, help="An embedding model, e.g. mistral-embed.")
@click.option("--input", "inputs", multiple=True, required=True, help="Text to embed; repeat.")
@guarded
def action_embeddings(
    config_path: str | None, workspace: str | None, model: str, inputs: tuple[str, ...]
) -> None:
    """Create embeddings (records embeddings.generated)."""
    from poller import actions

    body = actions.embeddings_body(model, list(inputs))
    run_action(config_path, workspace, "POST", "/embeddings", body)


@action.command("request")
@action_options
@click.argument("method", type=click.Choice(["GET", "POST", "PUT", "PATCH", "DELETE"], False))
@click.argument("path")
@click.option("--json", "json_text", default=None, metavar="BODY", help="A JSON request body.")
@click.option("--json-file", default=None, metavar="FILE", help="A file holding the JSON body.")
@guarded
def action_request(
    config_path: str | None,
    workspace: str | None,
    method: str,
    path: str,
    json_text: str | None,
    json_file: str | None,
) -> None:
    """Call any endpoint, PATH relative to the base URL; record its event, if it has one."""
    from poller import actions

    if json_text is not None and json_file is not None:
        fail("give --json or --json-file, not both", EXIT_USAGE)
    body = None
    if json_text is not None:
        body = actions.parse_json(json_text)
    elif json_file is not None:
        body = actions.read_json_file(json_file)
    run_action(config_path, workspace, method, path, body)
