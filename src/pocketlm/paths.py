"""Checks of the paths a user names (model files, text files, outputs), done before any
work starts, with one wording everywhere: the CLI, the library and the app say the same.

Plain ``pathlib`` and ``os`` only: the runtime side uses it too.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

from .errors import ModelFileError, UsageError


def check_model_file(path: str | Path) -> Path:
    """``path`` as a Path if it is a readable file. Raises ModelFileError otherwise
    ("model file not found: X", "X is a directory, not a .tflite file", "cannot read X")."""
    p = Path(path)
    if p.is_dir():
        raise ModelFileError(f"{p} is a directory, not a .tflite file")
    if not p.exists():
        raise ModelFileError(f"model file not found: {p}")
    if not os.access(p, os.R_OK):
        raise ModelFileError(f"cannot read {p}: permission denied")
    return p


def check_input_file(path: str | Path, what: str = "text file") -> Path:
    """``path`` as a Path if it is a readable file. Raises UsageError otherwise."""
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{p} is a directory, not a {what}")
    if not p.exists():
        raise UsageError(f"{what} not found: {p}")
    if not os.access(p, os.R_OK):
        raise UsageError(f"cannot read {p}: permission denied")
    return p


def _writable_folder(folder: Path, for_what: Path) -> None:
    """The nearest existing folder at or above ``folder`` must be a writable directory."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"cannot write {for_what}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write {for_what}: {existing} is not writable")


def check_output_file(path: str | Path, example: str = "model.tflite") -> Path:
    """``path`` as a Path if a file can be written there (missing folders are created by the
    writer). Raises UsageError for a directory (the message suggests ``path/example``), or a
    folder that is a file or not writable."""
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{p} is a directory: give a file name, e.g. {p / example}")
    if p.exists() and not os.access(p, os.W_OK):
        raise UsageError(f"cannot write {p}: permission denied")
    _writable_folder(p.parent if str(p.parent) else Path("."), p)
    return p


def check_output_dir(path: str | Path) -> Path:
    """``path`` as a Path if it is, or can be created as, a writable directory.
    Raises UsageError otherwise."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UsageError(f"{p} is a file, not a directory")
    _writable_folder(p, p)
    return p


def drop_cached_pages(fd: int) -> None:
    """Evict a just-written (and synced) file's pages from the page cache.

    Why: on Linux 6.16+ ext4 caches freshly written data in large folios (up to 2 MiB), and
    a process that memory-maps the file maps a whole folio when it touches one byte of it.
    LiteRT reads a few bytes of each weight tensor even when XNNPACK's packed copy serves
    them, so a model used right after conversion showed 102 MiB of the 161 MiB GPT-2 int8
    file as resident, against 12 MiB once the pages came back through ordinary readahead
    (docs/benchmarks.md). Best effort: a platform without posix_fadvise skips it.
    """
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    except (AttributeError, OSError):
        pass


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Create ``path`` through ``write(file)`` on a temp file beside it, synced and renamed
    into place, so no half-written file is ever left there (OSError propagates; the temp
    file is removed on any failure)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
            drop_cached_pages(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a model file is not a secret
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
