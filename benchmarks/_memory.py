"""Peak resident memory of this process, sampled from another process (Linux).

A thread cannot sample: protobuf serialization and onnxruntime's session set-up hold the
GIL for seconds, exactly when memory peaks. A forked sampler reads ``/proc/<pid>/statm``
every 2 ms whatever this process is doing.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from typing import Any

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss(pid: int | None = None) -> int:
    """Resident bytes of ``pid`` (default: this process)."""
    with open(f"/proc/{pid or os.getpid()}/statm") as handle:
        return int(handle.read().split()[1]) * _PAGE


def _sample(pid: int, peak: Any, stop: Any) -> None:
    while not stop.is_set():
        try:
            now = rss(pid)
        except OSError:
            return
        with peak.get_lock():
            peak.value = max(peak.value, now)
        time.sleep(0.002)


class PeakMemory:
    """``with PeakMemory() as m: ...`` then ``m.peak``: the highest RSS seen inside the block."""

    def __init__(self) -> None:
        ctx = mp.get_context("fork")
        self._peak, self._stop = ctx.Value("d", 0.0), ctx.Event()
        self._process = ctx.Process(target=_sample, args=(os.getpid(), self._peak, self._stop), daemon=True)
        self._process.start()
        self.start = 0
        self.peak = 0

    def __enter__(self) -> PeakMemory:
        self.start = rss()
        with self._peak.get_lock():
            self._peak.value = self.start
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.01)  # one more sample after the block
        self.peak = int(max(self._peak.value, rss()))

    def close(self) -> None:
        self._stop.set()
        self._process.join()
