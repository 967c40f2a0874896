"""twostream.data's forked clip workers."""

import os
import signal

from twostream import data


def _worker_state(_job) -> tuple:
    import torch

    return signal.getsignal(signal.SIGTERM), torch.get_num_threads(), os.getpid()


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def test_clip_workers_run_one_torch_thread_and_die_on_sigterm(monkeypatch):
    """A Python-level SIGTERM handler in the parent (app.py installs one) must not reach the
    workers: Pool.terminate's SIGTERM could then be lost just before a worker blocks on the task
    queue's lock, and the pool never finished closing (the test suite hung in Pool.__exit__)."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with data._pool(2) as pool:
            states = pool.map(_worker_state, range(4))
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert all(handler == signal.SIG_DFL and threads == 1 for handler, threads, _ in states), states
    assert all(pid != os.getpid() for _, _, pid in states)
