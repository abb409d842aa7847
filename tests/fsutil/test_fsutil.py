"""Atomic replacement: old or new content, the mode from the first byte, and flushes only when asked."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from agent_smith.fsutil import write_atomic


@pytest.mark.parametrize("durable", [True, False])
def test_a_file_is_replaced_whole_with_its_mode_and_no_temp_left(tmp_path: Path, durable: bool) -> None:
    path = tmp_path / "deep" / "state.json"
    write_atomic(path, "old", 0o600, durable=durable)
    write_atomic(path, b"new", 0o600, durable=durable)
    assert path.read_text() == "new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]


@pytest.mark.parametrize(("durable", "flushes"), [(True, 2), (False, 0)])
def test_only_a_durable_write_flushes_the_file_and_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, durable: bool, flushes: int
) -> None:
    calls: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(fd) or real(fd))
    write_atomic(tmp_path / "f", "x", durable=durable)
    assert len(calls) == flushes


def test_a_failed_write_leaves_the_old_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "f"
    write_atomic(path, "old")

    def refuse(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="No space"):
        write_atomic(path, "new", durable=False)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]
