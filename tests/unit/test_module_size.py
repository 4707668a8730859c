"""poller's modules stay small: none passes 600 lines (split by concern before it does)."""

from __future__ import annotations

import pathlib

import poller

PACKAGE = pathlib.Path(poller.__file__).parent
LIMIT = 600


def oversized(root: pathlib.Path, limit: int = LIMIT) -> dict[str, int]:
    """Path (relative to ``root``) → line count, of every module longer than ``limit``."""
    counts = {
        str(path.relative_to(root)): len(path.read_text(encoding="utf-8").splitlines())
        for path in sorted(root.rglob("*.py"))
    }
    return {path: lines for path, lines in counts.items() if lines > limit}


def test_oversized_modules_are_named(tmp_path: pathlib.Path) -> None:
    """A module one line past the limit is reported with its length; one at the limit is not."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "at.py").write_text("x = 1\n" * LIMIT, encoding="utf-8")
    (tmp_path / "sub" / "past.py").write_text("x = 1\n" * (LIMIT + 1), encoding="utf-8")
    assert oversized(tmp_path) == {"sub/past.py": LIMIT + 1}


def test_no_poller_module_passes_600_lines() -> None:
    """Every module under poller/ has at most 600 lines."""
    assert (PACKAGE / "app.py").is_file()
    assert oversized(PACKAGE) == {}
