"""Partial files and folders of saves in progress, each owned by a lock its writer holds.

A save writes under a temporary name in the target folder (``.onnxbridge-partial-`` plus random
characters) and renames into place when done. A process killed mid-save leaves its partial behind.
Each partial is ``flock``ed by its writer from the moment it exists until it is renamed or
removed; the kernel drops the lock when the writer dies, however it dies. So any later save or
load in any process removes the partials nobody holds, whatever the processes' ages, and leaves a
save running elsewhere alone.

Names of releases before 0.2 (``.onnxbridge-`` plus 8 characters) had no lock: they are removed
when older than this process's import of onnxbridge. Where ``fcntl`` is missing (Windows, where a
file being written cannot be deleted anyway), partials are judged by that age too.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["PREFIX", "PROCESS_START", "partial_file", "partial_folder", "remove_orphans"]

PREFIX = ".onnxbridge-partial-"
_LOCKED_NAME = re.compile(r"^\.onnxbridge-partial-[A-Za-z0-9_]+$")
_LEGACY_NAME = re.compile(r"^\.onnxbridge-[A-Za-z0-9_]{8}$")
PROCESS_START = time.time()  # when onnxbridge was imported into this process
_ATTEMPTS = 5  # a cleaner may remove a partial between its creation and its lock; then make another


def _flock(fd: int) -> bool:
    """Take ``fd``'s exclusive lock without waiting; ``False`` if another holds it. ``True`` without fcntl."""
    try:
        import fcntl
    except ImportError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _still_there(path: Path, fd: int) -> bool:
    """Whether ``path`` is still the file or folder ``fd`` holds (no cleaner removed it before the lock)."""
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except OSError:
        return False


def partial_file(folder: Path) -> tuple[int, Path]:
    """A new partial file in ``folder``: its descriptor (open for writing, holding the lock) and its path.

    The lock lasts while the descriptor is open: rename the file into place before closing it.
    """
    for _ in range(_ATTEMPTS):
        fd, name = tempfile.mkstemp(prefix=PREFIX, dir=folder)
        if _flock(fd) and _still_there(Path(name), fd):
            return fd, Path(name)
        os.close(fd)
    raise OSError(f"could not hold a partial file in {str(folder)!r}: another process removed it each time")


@contextlib.contextmanager
def partial_folder(folder: Path) -> Iterator[Path]:
    """A new partial folder in ``folder``, locked while the block runs and removed after it (if still there)."""
    for _ in range(_ATTEMPTS):
        path = Path(tempfile.mkdtemp(prefix=PREFIX, dir=folder))
        fd = os.open(path, os.O_RDONLY)
        if _flock(fd) and _still_there(path, fd):
            break
        os.close(fd)
    else:
        raise OSError(f"could not hold a partial folder in {str(folder)!r}: another process removed it each time")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)  # renamed into place already, or given up
        os.close(fd)


def remove_orphans(folder: Path) -> list[Path]:
    """Remove the partials in ``folder`` whose writer is gone; returns what was removed.

    Only names this library gives its partials are touched. Errors are ignored: another process
    may be cleaning up too, and a save never fails over it.
    """
    removed: list[Path] = []
    try:
        entries = [e for e in folder.iterdir() if _LOCKED_NAME.match(e.name) or _LEGACY_NAME.match(e.name)]
    except OSError:
        return removed
    for entry in entries:
        try:
            if entry.is_symlink():
                continue
            if _LEGACY_NAME.match(entry.name) or not _has_fcntl():
                if entry.lstat().st_mtime < PROCESS_START and _delete(entry):
                    removed.append(entry)
                continue
            fd = os.open(entry, os.O_RDONLY)
            try:
                if _flock(fd) and _still_there(entry, fd) and _delete(entry):  # its writer's lock died with it
                    removed.append(entry)
            finally:
                os.close(fd)
        except OSError:
            continue
    return removed


def _has_fcntl() -> bool:
    try:
        import fcntl  # noqa: F401
    except ImportError:
        return False
    return True


def _delete(entry: Path) -> bool:
    if entry.is_dir():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        entry.unlink(missing_ok=True)
    return not entry.exists()
