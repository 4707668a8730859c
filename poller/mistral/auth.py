"""How a workspace's API key appears on a request to Mistral's API."""

from __future__ import annotations

from poller import config as config_mod


def auth_headers(ws: config_mod.Workspace) -> dict[str, str]:
    """The header carrying ``ws``'s key (``Authorization: Bearer <key>`` by default); none
    for a workspace without a key."""
    if ws.api_key is None:
        return {}
    key = ws.api_key.get_secret_value()
    return {ws.auth_header: f"{ws.auth_scheme} {key}".strip() if ws.auth_scheme else key}
