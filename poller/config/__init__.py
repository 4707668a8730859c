"""Typed configuration; for now everything lives in :mod:`poller.config.models`."""

from __future__ import annotations

from poller.config.models import *  # noqa: F403
