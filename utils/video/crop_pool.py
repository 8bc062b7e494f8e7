"""Worker processes for crop-making runs (``utils/preprocess_data.py``, ``utils/prepare_captions.py``):
dlib's models loaded once and shared by forking, Ctrl-C left to the parent, workers that die with it."""
from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import cv2

from utils.video.mouth_extractor import load_models


def die_with_parent(parent: int) -> None:
    """Have the kernel kill this worker when the parent process dies (Linux; elsewhere nothing happens).

    A worker outliving a SIGKILLed parent finished its clip, then printed a BrokenPipeError traceback
    when it could not hand the result back; killed at once, it leaves only a temporary file, which
    the next run deletes.
    """
    pr_set_pdeathsig = 1
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the request was made
        os._exit(1)


def become_worker(parent: int | None) -> None:
    """Settings every crop worker takes: a pool worker (``parent`` is its parent's pid) leaves Ctrl-C
    to the parent, which keeps the manifest consistent, and dies with it; OpenCV runs one thread."""
    if parent is not None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        die_with_parent(parent)
    cv2.setNumThreads(1)


@contextlib.contextmanager
def worker_results(jobs: Sequence[Any], n_process: int, initializer: Callable[..., None], initargs: tuple,
                   work: Callable[[Any], Any]) -> Iterator[Iterator[Any]]:
    """``work(job)`` of every job as they finish, in this process (``n_process`` 1) or a pool.

    ``initializer(*initargs, parent)`` prepares each process (``parent``: the pool's pid, or None in
    this process; it should call ``become_worker(parent)``).
    """
    if not jobs:
        yield iter(())
    elif n_process == 1:
        initializer(*initargs, None)
        yield map(work, jobs)
    else:
        # Forked after the models are loaded, workers share them instead of each spending ~1.2 s on it;
        # the pool is made before the progress bar so no thread of tqdm's is running at the fork.
        methods = multiprocessing.get_all_start_methods()
        if "fork" in methods:
            load_models()
        context = multiprocessing.get_context("fork" if "fork" in methods else None)
        # OpenCV's worker threads, if the parent has used them, are stopped before the fork: a child
        # inherits their condition variables mid-wait and hung in cv2.setNumThreads otherwise.
        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            pool = context.Pool(n_process, initializer=initializer, initargs=(*initargs, os.getpid()))
        finally:
            cv2.setNumThreads(threads)
        with pool:
            yield pool.imap_unordered(work, jobs, chunksize=1)
