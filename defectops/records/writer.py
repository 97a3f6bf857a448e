"""Decisions leave the request path through a bounded queue; a writer *process* stores them in batches.

A process, not a thread: the store's Python work (SQLAlchemy, JSON, the driver) then never holds the
interpreter lock the request threads need, so recording costs the line next to nothing. When the queue
is full (the store is down or far slower than the line) the request still gets its answer and the lost
record is counted (`defectops_records_dropped_total`): a line is never stopped for its paperwork, and
the loss is visible, not silent. If the endpoint dies, the writer stores what it already received and
exits; only what was still in the endpoint's own buffers is lost.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import time

log = logging.getLogger("defectops.records")
_STOP = "stop"


def _take(inbox, batch: int, linger_s: float, parent: int) -> tuple[list, bool]:
    """The next batch (whatever arrives within `linger_s` of its first item) and whether to stop after it."""
    items: list = []
    try:
        first = inbox.get(timeout=0.5)
    except queue.Empty:
        return items, os.getppid() != parent  # the endpoint was killed: everything received is stored
    except (EOFError, OSError):  # the endpoint is gone
        return items, True
    if first == _STOP:
        return items, True
    items.append(first)
    deadline = time.monotonic() + linger_s
    while len(items) < batch:
        try:
            item = inbox.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        except (EOFError, OSError):
            return items, True
        if item == _STOP:
            return items, True
        items.append(item)
    return items, False


def _write(store, items: list, failures) -> None:
    for attempt in range(3):
        try:
            store.record_many([r for r, _ in items], [m for _, m in items])
            return
        except Exception as exc:  # noqa: BLE001 - a store hiccup: retry, then count the loss
            log.warning("decision store write failed (attempt %d): %s", attempt + 1, exc)
            time.sleep(0.5 * (attempt + 1))
    with failures.get_lock():
        failures.value += len(items)


def _serve(url: str, inbox, failures, batch: int, linger_s: float, retention_days: float | None,
           purge_every_s: float) -> None:
    from defectops.records.store import DecisionStore

    store = DecisionStore(url)
    parent = os.getppid()
    next_purge = time.monotonic()
    stopping = False
    while not stopping:
        items, stopping = _take(inbox, batch, linger_s, parent)
        if items:
            _write(store, items, failures)
        if retention_days and time.monotonic() >= next_purge:
            try:
                removed = store.purge(retention_days)
                if removed:
                    log.warning("removed %d decisions older than %g days", removed, retention_days)
            except Exception as exc:  # noqa: BLE001
                log.warning("retention purge failed: %s", exc)
            next_purge = time.monotonic() + purge_every_s
    store.close()


class RecordWriter:
    def __init__(self, url: str, max_queue: int = 10_000, batch: int = 512, retention_days: float | None = None,
                 purge_every_s: float = 3600.0, linger_s: float = 0.25):
        context = multiprocessing.get_context("spawn")  # no fork of a process holding ONNX Runtime threads
        self._queue = context.Queue(maxsize=max_queue)
        self._failures = context.Value("q", 0)
        self._process = context.Process(target=_serve, name="record-writer", daemon=True,
                                        args=(url, self._queue, self._failures, batch, linger_s, retention_days,
                                              purge_every_s))
        self._full = 0

    def start(self) -> RecordWriter:
        self._process.start()
        return self

    @property
    def dropped(self) -> int:
        return self._full + self._failures.value

    def submit(self, row: dict, message: dict | None = None) -> bool:
        try:
            self._queue.put_nowait((row, message))
            return True
        except queue.Full:
            self._full += 1
            return False

    def depth(self) -> int:
        try:
            return self._queue.qsize()
        except NotImplementedError:  # macOS
            return 0

    def alive(self) -> bool:
        return self._process.is_alive()

    def stop(self, timeout: float = 20.0) -> None:
        """Store everything queued so far, then end the writer."""
        if self._process.is_alive():
            self._queue.put(_STOP)
            self._process.join(timeout)
        if self._process.is_alive():
            self._process.terminate()
