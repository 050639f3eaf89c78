"""paths.atomic_write: the file appears whole or not at all, synced, with its freshly
written pages dropped from the page cache (so mapping it later maps only what is read)."""

from __future__ import annotations

import os

import pytest

from pocketlm.paths import atomic_write


def test_atomic_write_drops_the_written_pages(tmp_path, monkeypatch):
    calls = []
    real = os.posix_fadvise

    def spy(fd, offset, length, advice):
        calls.append((os.readlink(f"/proc/self/fd/{fd}"), offset, length, advice))
        return real(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", spy)
    out = tmp_path / "m.tflite"
    atomic_write(out, lambda f: f.write(b"x" * 70000))
    assert out.read_bytes() == b"x" * 70000
    assert len(calls) == 1
    written, offset, length, advice = calls[0]
    assert advice == os.POSIX_FADV_DONTNEED and (offset, length) == (0, 0)
    assert os.path.dirname(written) == str(tmp_path)  # the temp file before its rename


def test_atomic_write_leaves_nothing_when_writing_fails(tmp_path):
    def fail(f):
        f.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        atomic_write(tmp_path / "m.tflite", fail)
    assert list(tmp_path.iterdir()) == []
