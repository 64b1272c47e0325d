"""Identify many files on every core, in batches, with a time limit per file.

Why it is built this way:

* **Signatures once per worker.** Each worker process builds its engine once
  (fido's signature load is the expensive part) and then receives *batches* of
  paths; there is never a process, or a task, per file.
* **A stuck file does not stop its batch.** fido matches with Python regular
  expressions, and a pathological file can backtrack for minutes. Inside the
  worker, ``signal.setitimer`` arms ``SIGALRM`` around each file; the handler
  raises an exception (a ``BaseException``, so fido's own ``except Exception``
  cannot swallow it) and the file is recorded as failed, ``"timeout after 30s"``,
  and the worker moves on to the next file of the batch. ``re`` checks for
  signals while it backtracks, so this interrupts a runaway match too.
* **A safety net in the parent.** Code that never returns to the interpreter
  (a C extension, Go inside pygfried) cannot be interrupted by a signal handler.
  Workers report every file as it finishes, so the parent knows which file each
  worker is on and since when; a worker silent for ``timeout`` plus a grace
  period is killed, that one file is recorded as failed, and the rest of its
  batch goes back on the queue for a fresh worker. A worker that dies (a
  segfault, the OOM killer) is handled the same way.
* **Own pipes, not a shared queue.** Each worker has a private pipe. Killing a
  process that is writing to a shared ``multiprocessing.Queue`` can leave its lock
  held and hang the others; with one pipe each, a killed worker only breaks
  its own pipe.

Results come back in input order, one per path, failures included.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from types import FrameType
from typing import Any

from preservation.errors import ConfigurationError, IdentificationError
from preservation.identify.interfaces import Identification

__all__ = ["IdentificationPool", "WorkerStats", "default_workers", "identify_files"]

_Batch = deque[tuple[int, str]]


def default_workers() -> int:
    """The cores this process may run on (respects taskset/cgroup affinity)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _default_batch_size(n_files: int, workers: int) -> int:
    # About eight batches per worker: few round trips, yet little idle time at the end.
    return max(1, min(64, math.ceil(n_files / (workers * 8))))


# Modules the forkserver imports before it forks a worker: one that loads an
# engine's signatures there gives every worker them at birth, loaded once. (Not
# siegfried: its Go runtime must not be forked once started.)
_PRELOADED = {"fido": "preservation.identify.fido_preload"}


@contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Start a worker without it re-running this program's ``__main__``.

    A new process (forkserver or spawn) re-imports the parent's main script
    by its path before it runs its target: for the ``preservation`` console
    script that is typer, rich and pydantic-settings, about 0.2 s per worker,
    for nothing, since the target lives in this module. Without a ``__file__``
    the preparation data names no main script, and the worker skips it.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or path is None or getattr(main.__spec__, "name", None):
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


# --- inside a worker process ---------------------------------------------------


class _FileTimeout(BaseException):
    """Raised by SIGALRM in a worker; BaseException so fido's ``except Exception`` lets it pass."""


_armed = False


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    if _armed:
        raise _FileTimeout


def _identify_within(
    engine: Any, meta: tuple[str, str, str], path: Path, timeout: float
) -> Identification:
    global _armed
    started = time.perf_counter()

    def failed(error: str) -> Identification:
        name, version, release = meta
        return Identification.failed(
            path,
            engine=name,
            engine_version=version,
            signature_release=release,
            error=error,
            elapsed=time.perf_counter() - started,
        )

    try:
        _armed = True
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            outcome: Identification = engine.identify_batch([path])[0]
        finally:
            _armed = False
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _FileTimeout:
        _armed = False
        return failed(f"timeout after {timeout:g}s")
    except Exception as err:  # noqa: BLE001 - one bad file is a result, not the end of the batch
        return failed(f"{type(err).__name__}: {err}")
    return outcome


@contextmanager
def _sigint_ignored_by_children() -> Iterator[None]:
    """Start processes that ignore Ctrl-C from their first instruction.

    Ctrl-C reaches the whole process group: a worker, or the forkserver that
    an exec starts, still importing its modules would die with a traceback on
    the user's terminal. An ignored signal stays ignored across fork and exec,
    so SIGINT is ignored while they start. It is blocked in this thread too,
    so that a Ctrl-C for this process in that instant is delayed (a blocked
    signal stays pending even when ignored), then delivered to its handler;
    one the kernel hands to another thread then is lost, and the user presses
    Ctrl-C again. With the forkserver the window is one process start per
    process lifetime.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread; its workers start there
        return
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)


def _serve(conn: Connection, engine_name: str, timeout: float) -> None:
    """Worker main loop: build the engine once, then identify batch after batch."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what Ctrl-C means
    try:
        _work(conn, engine_name, timeout)
    except (BrokenPipeError, ConnectionResetError, EOFError):
        return  # the parent is gone (interrupted, killed): nothing to report to


def _work(conn: Connection, engine_name: str, timeout: float) -> None:
    from preservation.identify.registry import get_engine

    try:
        engine = get_engine(engine_name)
        meta = (engine.name, engine.version, engine.signature_release)
    except BaseException as err:  # noqa: BLE001 - reported to the parent, which raises
        conn.send(("fatal", type(err).__name__, str(err)))
        return
    signal.signal(signal.SIGALRM, _on_alarm)
    conn.send(("ready", os.getpid(), meta))
    while True:
        batch = conn.recv()
        if batch is None:
            return
        for index, path in batch:
            conn.send(("file", index, _identify_within(engine, meta, Path(path), timeout)))
        conn.send(("batch", getattr(engine, "signature_loads", None)))


# --- in the parent --------------------------------------------------------------


@dataclass
class WorkerStats:
    """What one worker process did; ``signature_loads`` is the engine's own count."""

    pid: int | None = None
    files: int = 0
    batches: int = 0
    signature_loads: int | None = None
    killed: bool = False


@dataclass(eq=False)
class _Worker:
    process: Any
    conn: Connection
    stats: WorkerStats
    started: float
    ready: bool = False
    batch: _Batch | None = None
    last_progress: float = 0.0


class IdentificationPool:
    """Worker processes with a format engine loaded, reusable across calls.

    A long-lived caller (an ingest worker) keeps one pool so signatures are
    loaded once per worker process for its whole life; ``identify_files`` is the
    one-shot form::

        with IdentificationPool("fido", timeout=30) as pool:
            results = pool.identify(paths)
    """

    def __init__(
        self,
        engine_name: str = "fido",
        *,
        workers: int | None = None,
        timeout: float = 30.0,
        batch_size: int | None = None,
        start_method: str | None = None,
        startup_timeout: float = 300.0,
    ) -> None:
        if timeout <= 0:
            raise ConfigurationError(f"identification timeout must be positive, not {timeout}")
        self.engine_name = engine_name
        self.workers = workers or default_workers()
        self.timeout = float(timeout)
        self.batch_size = batch_size
        self.startup_timeout = startup_timeout
        # Grace before the parent kills: the worker's own alarm should always win.
        self.kill_after = self.timeout + min(max(1.0, 0.25 * self.timeout), 10.0)
        methods = multiprocessing.get_all_start_methods()
        default = "forkserver" if "forkserver" in methods else "spawn"
        self._ctx = multiprocessing.get_context(start_method or default)
        self._live: list[_Worker] = []
        self._all_stats: list[WorkerStats] = []
        self._meta: tuple[str, str, str] | None = None
        self._starting: threading.Thread | None = None
        self._start_error: BaseException | None = None

    def __enter__(self) -> IdentificationPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def stats(self) -> list[WorkerStats]:
        """Every worker started so far, including replaced ones."""
        return list(self._all_stats)

    def identify(
        self,
        paths: Iterable[Path | str],
        progress: Callable[[int, int], None] | None = None,
    ) -> list[Identification]:
        """One result per path, in input order; stuck or failing files become failed results.

        ``progress(done, total)`` is called as results arrive, for a terminal's bar.
        """
        items = [(i, str(p)) for i, p in enumerate(paths)]
        self._started()
        if not items:
            return []
        size = self.batch_size or _default_batch_size(len(items), self.workers)
        queue: deque[_Batch] = deque(deque(items[i : i + size]) for i in range(0, len(items), size))
        results: list[Identification | None] = [None] * len(items)
        try:
            self._run(queue, results, progress)
        except BaseException:
            self.close(kill=True)
            raise
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]

    def start(self) -> None:
        """Start every worker now, in the background; ``identify`` waits for the start.

        An ingest calls this first thing, so that the workers load their
        signatures while the bag is validated and scanned: the forkserver
        answers a new process only once its preload (the signatures) is done,
        so the start itself takes that long, and it must not hold up the caller.
        """
        if self._starting is not None or len(self._live) >= self.workers:
            return
        self._ensure_forkserver()  # here, in the caller's thread, where SIGINT can be masked

        def spawn_all() -> None:
            try:
                while len(self._live) < self.workers:
                    self._spawn()
            except BaseException as err:  # noqa: BLE001 - identify() raises it
                self._start_error = err

        self._starting = threading.Thread(target=spawn_all, name="identify-start", daemon=True)
        self._starting.start()

    def _started(self) -> None:
        """Wait for a background start; its failure is this call's."""
        starting, self._starting = self._starting, None
        if starting is not None:
            starting.join()
        error, self._start_error = self._start_error, None
        if error is not None:
            raise error

    def close(self, kill: bool = False) -> None:
        """Stop the workers (politely unless ``kill``)."""
        try:
            self._started()
        except Exception:  # noqa: BLE001, S110 - closing: what did start is stopped below
            pass
        for worker in self._live:
            if not kill:
                try:
                    worker.conn.send(None)
                except OSError:
                    pass
        for worker in self._live:
            if not kill:
                worker.process.join(timeout=5)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=5)
            worker.conn.close()
        self._live = []

    # -- the scheduling loop --

    def _run(
        self,
        queue: deque[_Batch],
        results: list[Identification | None],
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        remaining = sum(1 for r in results if r is None)
        total = len(results)
        startup_deaths = 0
        # Also wait for each worker's end-of-batch message, so it is idle for the next call.
        while remaining or any(w.batch is not None for w in self._live):
            wanted = min(self.workers, len(queue) + sum(w.batch is not None for w in self._live))
            while len(self._live) < wanted:
                self._spawn()
            for worker in self._live:
                if worker.ready and worker.batch is None and queue:
                    worker.batch = queue.popleft()
                    worker.last_progress = time.monotonic()
                    worker.conn.send(list(worker.batch))
            ready = wait([w.conn for w in self._live], timeout=self._next_deadline())
            for conn in ready:
                worker = next(w for w in self._live if w.conn is conn)
                try:
                    message = worker.conn.recv()
                except (EOFError, OSError):
                    worker.process.join(timeout=5)
                    code = worker.process.exitcode
                    if not worker.ready:
                        startup_deaths += 1
                        if startup_deaths >= 3:
                            raise IdentificationError(
                                f"format engine {self.engine_name!r}: worker processes die "
                                f"while starting (exit code {code})"
                            ) from None
                    remaining -= self._retire(
                        worker, queue, results, f"worker process died (exit code {code})"
                    )
                    continue
                remaining -= self._handle(worker, message, results)
                if progress:
                    progress(total - remaining, total)
            now = time.monotonic()
            for worker in list(self._live):
                if not worker.ready and now - worker.started > self.startup_timeout:
                    raise IdentificationError(
                        f"format engine {self.engine_name!r} did not start within "
                        f"{self.startup_timeout:g}s"
                    )
                if worker.batch and now - worker.last_progress > self.kill_after:
                    worker.stats.killed = True
                    worker.process.kill()
                    worker.process.join(timeout=5)
                    remaining -= self._retire(
                        worker,
                        queue,
                        results,
                        f"timeout after {self.timeout:g}s (the engine did not stop; "
                        "its worker process was killed)",
                    )

    def _spawn(self) -> None:
        parent_end, child_end = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(  # type: ignore[attr-defined]
            target=_serve,
            args=(child_end, self.engine_name, self.timeout),
            name=f"identify-{self.engine_name}",
            daemon=True,
        )
        if self._ctx.get_start_method() == "forkserver":
            self._ensure_forkserver()
            with _main_module_hidden():
                process.start()
        else:
            with _sigint_ignored_by_children():
                process.start()
        child_end.close()
        stats = WorkerStats(pid=process.pid)
        self._all_stats.append(stats)
        self._live.append(_Worker(process, parent_end, stats, started=time.monotonic()))

    def _ensure_forkserver(self) -> None:
        """Start the forkserver once per process, ignoring SIGINT, with the engine preloaded.

        The workers it forks then ignore Ctrl-C from their first instruction
        too. The preload only takes effect when the forkserver starts.
        """
        if self._ctx.get_start_method() != "forkserver":
            return
        from multiprocessing import forkserver

        if self.engine_name in _PRELOADED:
            self._ctx.set_forkserver_preload([_PRELOADED[self.engine_name]])
        with _sigint_ignored_by_children():
            forkserver.ensure_running()

    def _next_deadline(self) -> float:
        now = time.monotonic()
        deadlines = [w.last_progress + self.kill_after for w in self._live if w.batch]
        deadlines += [w.started + self.startup_timeout for w in self._live if not w.ready]
        return max(0.0, min(deadlines, default=now + 1.0) - now) + 0.01

    def _handle(
        self, worker: _Worker, message: tuple[Any, ...], results: list[Identification | None]
    ) -> int:
        kind = message[0]
        if kind == "file":
            _, index, identification = message
            assert worker.batch and worker.batch[0][0] == index
            worker.batch.popleft()
            results[index] = identification
            worker.stats.files += 1
            worker.last_progress = time.monotonic()
            return 1
        if kind == "batch":
            worker.batch = None
            worker.stats.batches += 1
            worker.stats.signature_loads = message[1]
        elif kind == "ready":
            worker.ready = True
            worker.stats.pid = message[1]
            self._meta = message[2]
        elif kind == "fatal":
            _, error_type, text = message
            error = (
                ConfigurationError if error_type == "ConfigurationError" else (IdentificationError)
            )
            raise error(f"format engine {self.engine_name!r} cannot start: {text}")
        return 0

    def _retire(
        self,
        worker: _Worker,
        queue: deque[_Batch],
        results: list[Identification | None],
        reason: str,
    ) -> int:
        """Drop a dead or killed worker: its current file fails, the rest of its batch requeues."""
        self._live.remove(worker)
        worker.conn.close()
        if not worker.batch:
            return 0
        index, path = worker.batch.popleft()
        name, version, release = self._meta or (self.engine_name, "unknown", "unknown")
        results[index] = Identification.failed(
            Path(path),
            engine=name,
            engine_version=version,
            signature_release=release,
            error=reason,
            elapsed=time.monotonic() - worker.last_progress,
        )
        if worker.batch:
            queue.appendleft(worker.batch)
        return 1


def identify_files(
    paths: Sequence[Path | str],
    engine_name: str = "fido",
    workers: int | None = None,
    timeout: float = 30.0,
    batch_size: int | None = None,
) -> list[Identification]:
    """Identify ``paths`` on all cores; one result per path, in input order.

    A file that takes longer than ``timeout`` seconds is recorded with
    ``error="timeout after 30s"`` (``known`` is False) and the others go on.
    """
    with IdentificationPool(
        engine_name, workers=workers, timeout=timeout, batch_size=batch_size
    ) as pool:
        return pool.identify(paths)
