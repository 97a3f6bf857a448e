"""Per-image work (decoding, hashing) on every core: the one pool helper the data steps share."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial

POOL_THRESHOLD = 200  # below this many items, starting worker processes costs more than it saves


def _each(fn: Callable, chunk: Sequence) -> list:
    return [fn(item) for item in chunk]


def map_images(fn: Callable, items: Sequence) -> list:
    """[fn(item) for item in items], in worker processes when there are many (fn must pickle:
    a module-level function or a partial of one)."""
    workers = min(os.cpu_count() or 1, 8)
    if len(items) < POOL_THRESHOLD or workers == 1:
        return [fn(item) for item in items]
    size = max(16, len(items) // (workers * 8))
    chunks = [items[i:i + size] for i in range(0, len(items), size)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return [result for results in pool.map(partial(_each, fn), chunks) for result in results]
