"""Use every core on CPU: Ultralytics leaves one idle.

On CPU, Ultralytics pins torch to `cpu_count - 1` threads (every `select_device` call resets it)
and forces dataloader workers to 0. On a 2-core box that is one busy thread for a whole
training run; `bench/train_threads.py` measures what the fix is worth. One place decides the
thread count, so training, evaluation and scoring agree.
"""

from __future__ import annotations

import os


def cpu_cores() -> int:
    """Cores this process may run on (a container's CPU set, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def use_cores(threads: int | None = None) -> int:
    """Give torch `threads` intra-op threads (None: all cores) and keep Ultralytics from undoing it."""
    import torch
    from ultralytics.utils import torch_utils

    n = threads or cpu_cores()
    torch_utils.NUM_THREADS = n  # select_device() re-applies this on every train/val/predict
    torch.set_num_threads(n)
    return n


def cpu_workers(workers: int, threads: int) -> int:
    """Dataloader workers on CPU: only cores torch does not use. Measured on 2 cores
    (bench/train_threads.py): 2 workers beside 2 torch threads were slower than none."""
    return max(0, min(workers, cpu_cores() - threads))


def keep_workers(workers: int):
    """An Ultralytics callback setting the dataloader workers on CPU (Ultralytics forces 0 there)."""
    def restore(trainer) -> None:
        if trainer.device.type == "cpu":
            trainer.args.workers = workers
    return restore
