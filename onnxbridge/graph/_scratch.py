"""On-disk copies of in-memory models, for tools that are better fed a path than bytes.

``onnx.checker`` and onnxruntime take a model as bytes or as a path. Bytes mean one
serialized copy of every weight (protobuf's limit makes it impossible past 2 GiB), and
onnxruntime parses those bytes into yet another. From a path with external data, the
checker reads only the graph and onnxruntime maps the weights from the file. So models
past :data:`SCRATCH_BYTES` of weights are written once, streamed tensor by tensor, into a
private temporary folder that lives as long as the object holding it.

A process killed while holding one cannot remove it; each folder therefore holds a lock
file locked while in use, and folders whose lock is free (their owner is gone) are removed
the next time any onnxbridge process makes one.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import IO, TYPE_CHECKING

from onnxbridge.graph import _files, _partials

if TYPE_CHECKING:
    import onnx

SCRATCH_BYTES = 32 << 20  # weights past this are handed to tools as a file, not as bytes
PREFIX = "onnxbridge-scratch-"
_NAME = re.compile(r"^onnxbridge-scratch-[A-Za-z0-9_]+$")
LOCK_NAME = ".in-use"


def wants_file(model: onnx.ModelProto) -> bool:
    """Whether tools should read ``model`` from a file rather than from serialized bytes."""
    return _files.stored_bytes(model) > SCRATCH_BYTES


class ModelFile:
    """The file tools read a model from, when it is too large to hand them as bytes.

    Models with more than a few tens of MB of weights are read from a file: the one they were
    loaded from, or a private scratch copy made once (weights streamed to external data).
    Serializing them would cost a copy of every weight, and is impossible past protobuf's 2 GiB.
    """

    def __init__(self, loaded_from: Path | None = None) -> None:
        self.loaded_from = loaded_from
        self._copy: ScratchCopy | None = None

    @classmethod
    def scratch(cls, model: onnx.ModelProto) -> ModelFile:
        """``model`` written to a scratch copy now, read from it from then on (the copy lives as long as this)."""
        copy = ScratchCopy(model)
        held = cls(copy.path)
        held._copy = copy
        return held

    def path(self, model: onnx.ModelProto) -> Path | None:
        """A file holding ``model``, or ``None`` when bytes will do."""
        if not wants_file(model):
            return None
        if self.loaded_from is not None:
            return self.loaded_from
        if self._copy is None or self._copy.source is not model:
            self._copy = ScratchCopy(model)
        return self._copy.path


class ScratchCopy:
    """``model`` written to ``<private temporary folder>/model.onnx`` with its weights in ``model.onnx.data``.

    The folder is removed when this object is garbage-collected, or at exit. The copy is a
    snapshot: later changes to ``model`` are not seen.
    """

    def __init__(self, model: onnx.ModelProto) -> None:
        remove_abandoned()
        self.source = model
        self.folder = Path(tempfile.mkdtemp(prefix=PREFIX))
        lock = _hold_lock(self.folder / LOCK_NAME)
        self._finalizer = weakref.finalize(self, _remove, self.folder, lock)
        try:
            self.path = _files.save_model(model, self.folder / "model.onnx", external_data=True)
        except BaseException:
            self._finalizer()
            raise

    def close(self) -> None:
        """Remove the folder now (a session reading from it keeps its own mapping on POSIX)."""
        self._finalizer()


def _hold_lock(path: Path) -> IO[bytes] | None:
    try:
        import fcntl
    except ImportError:  # Windows: files in use cannot be deleted there, so no lock is needed
        return None
    handle = path.open("wb")
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return handle


def _remove(folder: Path, lock: IO[bytes] | None) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    if lock is not None:
        lock.close()


def remove_abandoned(root: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove scratch folders whose owning process is gone; returns what was removed.

    A folder counts as abandoned when it is older than this process's import of
    onnxbridge and its lock file can be locked (the owner's lock died with it). Folders
    of running processes, folders without a lock file and anything not named like a
    scratch folder are left alone.
    """
    try:
        import fcntl
    except ImportError:
        return []
    removed: list[Path] = []
    base = Path(root if root is not None else tempfile.gettempdir())
    try:
        entries = [e for e in base.iterdir() if _NAME.match(e.name)]
    except OSError:
        return removed
    for entry in entries:
        lock_path = entry / LOCK_NAME
        try:
            if entry.is_symlink() or entry.stat().st_mtime >= _partials.PROCESS_START or not lock_path.is_file():
                continue
            with lock_path.open("rb") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # a live process holds it
                shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
        except OSError:
            continue
    return removed
