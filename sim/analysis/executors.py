"""Where runs execute: in this process, in a local process pool, or on a Dask cluster.

An executor maps a picklable, module-level function over picklable tasks and returns the
results *in task order*, whatever order they finish in. Runs are pure functions of
``(scenario, seed, replication)``, so every executor returns the same numbers; only the wall
clock differs.

- :class:`InProcessExecutor` -- one after another in this process (the default for one run).
- :class:`ProcessExecutor` -- a local ``concurrent.futures.ProcessPoolExecutor`` of ``jobs``
  processes (the default for many runs).
- :class:`DaskExecutor` -- a Dask ``distributed`` cluster: an existing scheduler at
  ``tcp://HOST:PORT`` (its workers need this package installed) or, without an address, a
  local cluster of ``jobs`` single-threaded worker processes. Dask is the optional extra
  ``pip install -e .[cluster]`` and is imported only here, only when asked for.

:func:`make_executor` picks one from the command line's ``--executor``, ``--jobs`` and
``--scheduler``. Problems a user can fix (Dask missing, a scheduler out of reach, a bad job
count) raise :class:`ExecutorError` with one clear message.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent import futures as _futures
from typing import Any, TypeVar

__all__ = [
    "EXECUTORS",
    "DaskExecutor",
    "Executor",
    "ExecutorError",
    "InProcessExecutor",
    "ProcessExecutor",
    "TaskFailed",
    "TaskProgress",
    "default_jobs",
    "make_executor",
]

T = TypeVar("T")
R = TypeVar("R")

TaskProgress = Callable[[int, int], None]
"""Called as ``progress(done, total)`` each time a task finishes."""

EXECUTORS = ("inprocess", "process", "dask")
"""The names ``--executor`` accepts."""

DASK_CONNECT_TIMEOUT = 10.0
"""Seconds to wait for a Dask scheduler before giving up."""

_PRELOAD = ["sim.analysis.compare"]


class ExecutorError(Exception):
    """An executor cannot be set up as asked (Dask missing, scheduler unreachable, bad jobs)."""


def default_jobs() -> int:
    """Return the number of processes to use by default: the CPUs this process may run on."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # pragma: no cover - not Linux
        return max(os.cpu_count() or 1, 1)


def _check_jobs(jobs: int | None) -> int:
    if jobs is None:
        return default_jobs()
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ExecutorError(f"--jobs must be an integer >= 1, got {jobs!r}")
    return jobs


class Executor:
    """Runs ``fn`` over tasks and returns the results in task order (a context manager)."""

    name = "executor"
    jobs = 1

    def map(
        self,
        fn: Callable[[T], R],
        tasks: Sequence[T],
        *,
        progress: TaskProgress | None = None,
    ) -> list[R]:
        """Return ``[fn(task) for task in tasks]``, computed wherever this executor runs."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the executor's processes or connections (idempotent)."""

    def describe(self) -> str:
        """Return a short description for reports: ``"process pool (2 jobs)"``."""
        return self.name

    def __enter__(self) -> Executor:
        """Return the executor itself."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the executor."""
        self.close()


class InProcessExecutor(Executor):
    """Runs every task in this process, one after another, in order."""

    name = "inprocess"

    def map(
        self,
        fn: Callable[[T], R],
        tasks: Sequence[T],
        *,
        progress: TaskProgress | None = None,
    ) -> list[R]:
        """Return ``[fn(task) for task in tasks]``, reporting progress after each task."""
        results = []
        for done, task in enumerate(tasks, start=1):
            results.append(fn(task))
            if progress is not None:
                progress(done, len(tasks))
        return results

    def describe(self) -> str:
        """Return ``"in-process"``."""
        return "in-process"


def _start_method() -> str:
    """Return how pool processes start: ``fork`` on Linux, else forkserver (or spawn).

    Forked workers inherit the loaded modules (fast) and never re-run the main script, so
    they work under any entry point. Where fork is not the safe default (macOS, Windows), the
    other methods re-import the main script in every worker: a script that starts runs must
    guard them with ``if __name__ == "__main__":``.
    """
    methods = multiprocessing.get_all_start_methods()
    if sys.platform.startswith("linux") and "fork" in methods:
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


class _FutureExecutor(Executor):
    """Submits every task at once and collects the futures: the pool's and Dask's ``map``.

    Subclasses say how to submit the tasks (one future each, in task order), iterate the
    futures as they finish, gather the results in task order and cancel what is left.
    """

    def map(
        self,
        fn: Callable[[T], R],
        tasks: Sequence[T],
        *,
        progress: TaskProgress | None = None,
    ) -> list[R]:
        """Return ``[fn(task) for task in tasks]``, in task order, whatever order they finish in.

        ``progress(done, total)`` is called as each task finishes. The first exception in a
        task is raised here as soon as that task ends, after the tasks not yet finished are
        cancelled; so is an interrupt (Ctrl-C). How far cancelling reaches is the
        executor's: the process pool ends its workers, Dask cancels what it can.
        """
        tasks = list(tasks)
        if not tasks:
            return []
        pending = self._submit(fn, tasks)
        try:
            for done, future in enumerate(self._as_completed(pending), start=1):
                error = future.exception()
                if error is not None:
                    raise error
                if progress is not None:
                    progress(done, len(tasks))
            return self._gather(pending)
        except BaseException:
            self._cancel(pending)
            raise

    def _submit(self, fn: Callable[[T], R], tasks: list[T]) -> list[Any]:
        raise NotImplementedError

    def _as_completed(self, pending: list[Any]) -> Iterable[Any]:
        raise NotImplementedError

    def _gather(self, pending: list[Any]) -> list[Any]:
        raise NotImplementedError

    def _cancel(self, pending: list[Any]) -> None:
        raise NotImplementedError


class ProcessExecutor(_FutureExecutor):
    """Runs tasks in a pool of ``jobs`` local processes (``ProcessPoolExecutor``).

    The pool starts on first use and is reused by later ``map`` calls until :meth:`close`;
    a failed or interrupted ``map`` ends its workers, and the next one starts a fresh pool.
    """

    name = "process"

    def __init__(self, jobs: int | None = None) -> None:
        self.jobs = _check_jobs(jobs)
        self._pool: _futures.ProcessPoolExecutor | None = None

    def _ensure_pool(self) -> _futures.ProcessPoolExecutor:
        if self._pool is None:
            method = _start_method()
            context = multiprocessing.get_context(method)
            if method == "forkserver":
                context.set_forkserver_preload(_PRELOAD)
            self._pool = _futures.ProcessPoolExecutor(self.jobs, mp_context=context)
        return self._pool

    def _submit(self, fn: Callable[[T], R], tasks: list[T]) -> list[Any]:
        pool = self._ensure_pool()
        return [pool.submit(_call_in_worker, fn, task) for task in tasks]

    def _as_completed(self, pending: list[Any]) -> Iterable[Any]:
        return _futures.as_completed(pending)

    def _gather(self, pending: list[Any]) -> list[Any]:
        return [future.result() for future in pending]

    def _cancel(self, pending: list[Any]) -> None:
        """Cancel what has not started and stop the workers: nothing is left running.

        The tasks under way are pure computations whose results nobody will read, and a
        pool waits for them when it shuts down (after Ctrl-C, for minutes), so its processes
        are ended. The next ``map`` starts a fresh pool.
        """
        for future in pending:
            future.cancel()
        pool, self._pool = self._pool, None
        if pool is None:
            return
        # No public way to end the workers before Python 3.14; shutdown forgets them.
        processes = list((getattr(pool, "_processes", None) or {}).values())
        for process in processes:
            process.terminate()
        for process in processes:
            process.join()
        pool.shutdown(wait=False, cancel_futures=True)  # the pool is broken now: let it go

    def close(self) -> None:
        """Shut the pool down, cancelling tasks not yet started."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def describe(self) -> str:
        """Return ``"process pool (N jobs)"``."""
        return f"process pool ({self.jobs} job{'s' if self.jobs != 1 else ''})"


class TaskFailed(Exception):
    """A task's exception that could not travel back from its worker as itself."""


def _call_in_worker(fn: Callable[[T], R], task: T) -> R:
    """Run one task in a pool process; an exception that would not unpickle comes back whole.

    The pool sends a task's exception back pickled. One that does not survive the trip (an
    ``__init__`` with other arguments, an unpicklable attribute) would arrive as an unrelated
    error or break the pool: it is sent as :class:`TaskFailed` with its type, message and
    traceback instead.
    """
    try:
        return fn(task)
    except Exception as exc:
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:
            trace = "".join(traceback.format_exception(exc)).rstrip()
            failure = TaskFailed(f"{type(exc).__name__}: {exc}\n{trace}")
        else:
            raise
    # Raised outside the handler, so that it carries no context: the original would be
    # pickled with it (some libraries pickle an exception's context) and fail again.
    raise failure


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise ExecutorError(
            "--executor dask needs Dask distributed: pip install -e '.[cluster]' "
            "(or pip install 'dask[distributed]')"
        ) from None
    return distributed


class DaskExecutor(_FutureExecutor):
    """Runs tasks on a Dask ``distributed`` cluster.

    ``scheduler`` is the address of a running scheduler (``tcp://10.0.0.5:8786``): every
    worker needs this package (and the same versions of its dependencies) installed. Without
    it, a local cluster of ``jobs`` single-threaded worker processes starts on loopback and
    stops on :meth:`close`. ``client`` lets a caller hand in a ``distributed.Client`` it
    manages itself (it is not closed here). ``timeout`` bounds the wait for the scheduler
    (default :data:`DASK_CONNECT_TIMEOUT`).
    """

    name = "dask"

    def __init__(
        self,
        scheduler: str | None = None,
        *,
        jobs: int | None = None,
        client: Any = None,
        timeout: float | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.jobs = _check_jobs(jobs)
        self._owns_client = client is None
        self._cluster: Any = None
        self._client: Any = client
        if client is not None:
            return
        distributed = _import_distributed()
        timeout = DASK_CONNECT_TIMEOUT if timeout is None else timeout
        try:
            if scheduler is None:
                import dask

                # Workers start like the process pool's: forked on Linux, so they never re-run
                # the main script (which need not guard its entry point).
                method = {"distributed.worker.multiprocessing-method": _start_method()}
                with dask.config.set(method):
                    self._cluster = distributed.LocalCluster(
                        n_workers=self.jobs,
                        threads_per_worker=1,
                        processes=True,
                        host="127.0.0.1",
                        dashboard_address=":0",
                    )
                self._client = distributed.Client(self._cluster, timeout=timeout)
            else:
                self._client = distributed.Client(scheduler, timeout=timeout)
        except (OSError, TimeoutError, ValueError) as exc:
            self.close()
            where = scheduler if scheduler is not None else "a local cluster"
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ExecutorError(f"cannot reach the Dask scheduler at {where}: {reason}") from None
        except RuntimeError as exc:  # a local worker process failed to start
            self.close()
            raise ExecutorError(
                f"cannot start a local Dask cluster: {exc} (its workers are spawned processes: "
                "the script that starts them must guard its entry point with "
                "if __name__ == '__main__'; or give --scheduler tcp://HOST:PORT)"
            ) from None

    def _submit(self, fn: Callable[[T], R], tasks: list[T]) -> list[Any]:
        return list(self._client.map(fn, tasks, pure=False))

    def _as_completed(self, pending: list[Any]) -> Iterable[Any]:
        return _import_distributed().as_completed(pending)

    def _gather(self, pending: list[Any]) -> list[Any]:
        return list(self._client.gather(pending))

    def _cancel(self, pending: list[Any]) -> None:
        self._client.cancel(pending)

    def close(self) -> None:
        """Close the client and the local cluster this executor started (not a given client)."""
        if self._owns_client and self._client is not None:
            self._client.close()
        self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    def describe(self) -> str:
        """Return ``"Dask scheduler tcp://..."`` or ``"Dask local cluster (N workers)"``."""
        if self.scheduler is not None:
            return f"Dask scheduler {self.scheduler}"
        if self._owns_client:
            return f"Dask local cluster ({self.jobs} workers)"
        return "Dask cluster"


def make_executor(
    kind: str | None = None,
    *,
    jobs: int | None = None,
    scheduler: str | None = None,
    runs: int = 2,
) -> Executor:
    """Return the executor the command-line options ask for.

    ``kind`` is one of :data:`EXECUTORS` or None to choose: Dask when a ``scheduler`` is
    given; in-process for a single run or ``jobs == 1``; otherwise a process pool of ``jobs``
    (default: the CPUs available) processes, never more than ``runs``. A ``scheduler`` with a
    kind other than ``dask`` is an error.
    """
    if kind is not None and kind not in EXECUTORS:
        raise ExecutorError(f"unknown executor {kind!r} (use one of: {', '.join(EXECUTORS)})")
    if jobs is not None:
        _check_jobs(jobs)
    if scheduler is not None:
        if kind not in (None, "dask"):
            raise ExecutorError(f"--scheduler needs --executor dask, not --executor {kind}")
        if not scheduler.strip() or "://" not in scheduler:
            raise ExecutorError(
                f"--scheduler must be an address such as tcp://HOST:8786, got {scheduler!r}"
            )
        kind = "dask"
    if kind is None:
        kind = "inprocess" if runs <= 1 or jobs == 1 else "process"
    if kind == "inprocess":
        return InProcessExecutor()
    if kind == "process":
        return ProcessExecutor(max(1, min(_check_jobs(jobs), max(runs, 1))))
    return DaskExecutor(scheduler, jobs=jobs)
