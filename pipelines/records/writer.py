"""Decisions leave the request path through a bounded queue; one thread writes them in batches.

When the queue is full (the store is down or far slower than the line) the request still gets its
answer and the lost record is counted (`defectops_records_dropped_total`): a line is never stopped
for its paperwork, and the loss is visible, not silent.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from defectops.records.store import DecisionStore

log = logging.getLogger("defectops.records")


class RecordWriter:
    def __init__(self, store: DecisionStore, max_queue: int = 10_000, batch: int = 256,
                 retention_days: float | None = None, purge_every_s: float = 3600.0, linger_s: float = 0.25):
        self.store = store
        self.batch, self.linger_s = batch, linger_s
        self.retention_days, self.purge_every_s = retention_days, purge_every_s
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="record-writer", daemon=True)
        self.dropped = 0
        self.written = 0
        self.failed_batches = 0

    def start(self) -> RecordWriter:
        self._thread.start()
        return self

    def submit(self, row: dict, message: dict | None = None) -> bool:
        try:
            self._queue.put_nowait((row, message))
            return True
        except queue.Full:
            self.dropped += 1
            return False

    def depth(self) -> int:
        return self._queue.qsize()

    def _take(self) -> list:
        """The next batch: whatever arrives within `linger_s` of the first item (fewer, larger transactions
        take less time from the threads that answer requests)."""
        items = []
        try:
            items.append(self._queue.get(timeout=0.2))
        except queue.Empty:
            return items
        deadline = time.monotonic() + (0 if self._stop.is_set() else self.linger_s)
        while len(items) < self.batch:
            try:
                items.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        return items

    def _write(self, items: list) -> None:
        for attempt in range(3):
            try:
                self.store.record_many([r for r, _ in items], [m for _, m in items])
                self.written += len(items)
                return
            except Exception as exc:  # noqa: BLE001 - a store hiccup: retry, then count the loss
                log.warning("decision store write failed (attempt %d): %s", attempt + 1, exc)
                time.sleep(0.5 * (attempt + 1))
        self.failed_batches += 1
        self.dropped += len(items)

    def _run(self) -> None:
        next_purge = time.monotonic()
        while not (self._stop.is_set() and self._queue.empty()):
            items = self._take()
            if items:
                self._write(items)
            if self.retention_days and time.monotonic() >= next_purge:
                try:
                    removed = self.store.purge(self.retention_days)
                    if removed:
                        log.warning("removed %d decisions older than %g days", removed, self.retention_days)
                except Exception as exc:  # noqa: BLE001
                    log.warning("retention purge failed: %s", exc)
                next_purge = time.monotonic() + self.purge_every_s

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything queued so far is written (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while not self._queue.empty() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
