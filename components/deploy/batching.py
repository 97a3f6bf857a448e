"""Micro-batching: images from concurrent requests go through the model in one call.

One call per batch costs less per image than one per image (fewer, larger matrix products and one pass of the
runtime's overhead), and the line's camera stations post concurrently. A batch closes at `max_batch` images or
`wait_ms` after its first one, so a lone request waits at most `wait_ms` for company. Each caller still gets its
own outputs and its own latency; preprocessing and decoding stay in the callers' threads.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future

import numpy as np

from defectops.components.deploy.runtimes import Runner

IDLE_EXIT_S = 5.0  # a closed batcher's thread leaves after this long with nothing to do


class MicroBatcher:
    batched = True

    def __init__(self, runner: Runner, max_batch: int, wait_ms: float):
        self.runner, self.max_batch, self.wait_s = runner, max_batch, wait_ms / 1000
        self._queue: queue.Queue[tuple[np.ndarray, Future]] = queue.Queue()
        self._closed = threading.Event()
        self.batches = self.images = 0  # counted for the bench: images / batches = the mean batch
        threading.Thread(target=self._loop, name="micro-batcher", daemon=True).start()

    def run(self, blob: np.ndarray) -> list[np.ndarray]:
        if self._closed.is_set():  # a request that began before a model swap still finishes on its model
            return self.runner.run(blob)
        done: Future = Future()
        self._queue.put((blob, done))
        return done.result()

    def close(self) -> None:
        self._closed.set()

    def _collect(self) -> list[tuple[np.ndarray, Future]] | None:
        try:
            first = self._queue.get(timeout=IDLE_EXIT_S)
        except queue.Empty:
            return None
        batch = [first]
        deadline = time.perf_counter() + self.wait_s
        while len(batch) < self.max_batch:
            left = deadline - time.perf_counter()
            try:
                batch.append(self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _loop(self) -> None:
        while True:
            batch = self._collect()
            if batch is None:
                if self._closed.is_set():
                    return
                continue
            # Different shapes (a classifier's crop beside a detector's letterbox never happens in one model,
            # but tiles of odd sizes might) run as separate calls.
            by_shape: dict[tuple, list[tuple[np.ndarray, Future]]] = {}
            for blob, done in batch:
                by_shape.setdefault(blob.shape, []).append((blob, done))
            for group in by_shape.values():
                self._run(group)

    def _run(self, group: list[tuple[np.ndarray, Future]]) -> None:
        try:
            outputs = self.runner.run(np.concatenate([blob for blob, _ in group]))
        except Exception as exc:  # noqa: BLE001 - every waiting request hears about it
            for _, done in group:
                done.set_exception(exc)
            return
        self.batches += 1
        self.images += len(group)
        start = 0
        for blob, done in group:
            n = len(blob)
            done.set_result([out[start:start + n] for out in outputs])
            start += n
