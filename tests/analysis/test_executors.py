from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from sim.analysis import executors
from sim.analysis.compare import compare, grid_variants
from sim.analysis.executors import (
    DaskExecutor,
    ExecutorError,
    InProcessExecutor,
    ProcessExecutor,
    default_jobs,
    make_executor,
)

SMOKE = Path(__file__).resolve().parents[2] / "scenarios" / "smoke.yaml"


def square_slowly(x: int) -> int:
    """Later tasks finish first, so results must be put back in task order."""
    time.sleep(0.02 * (4 - x) if x < 4 else 0.0)
    return x * x


def fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError(f"task {x} failed")
    return x


def first_fast_then_long(x: int) -> int:
    """Task 0 ends at once; the others would run for a minute."""
    if x:
        time.sleep(60.0)
    return x


class LockedError(Exception):
    """An exception that cannot be pickled: it holds a lock."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.lock = threading.Lock()


def fail_oddly(x: int) -> int:
    raise LockedError(f"task {x} broke")


# --- in-process -----------------------------------------------------------------------------------


def test_in_process_runs_in_order_with_progress():
    seen = []
    with InProcessExecutor() as executor:
        result = executor.map(square_slowly, [3, 1, 2], progress=lambda d, t: seen.append((d, t)))
        assert executor.describe() == "in-process"
    assert result == [9, 1, 4]
    assert seen == [(1, 3), (2, 3), (3, 3)]


# --- the process pool -----------------------------------------------------------------------------


def test_process_pool_returns_results_in_task_order():
    seen = []
    with ProcessExecutor(2) as executor:
        assert executor.describe() == "process pool (2 jobs)"
        result = executor.map(square_slowly, range(6), progress=lambda d, t: seen.append((d, t)))
        assert result == [0, 1, 4, 9, 16, 25]
        assert executor.map(square_slowly, []) == []
        assert executor.map(square_slowly, [5]) == [25]  # the pool is reused
    assert [d for d, _ in seen] == list(range(1, 7)) and {t for _, t in seen} == {6}
    executor.close()  # closing twice is harmless


def test_process_pool_raises_a_task_error():
    with ProcessExecutor(2) as executor:
        with pytest.raises(ValueError, match="task 3 failed"):
            executor.map(fail_on_three, range(6))
        assert executor.map(fail_on_three, [1, 2]) == [1, 2]


def test_start_method_forks_on_linux(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    assert executors._start_method() == "fork"
    monkeypatch.setattr(sys, "platform", "darwin")
    assert executors._start_method() == "forkserver"
    monkeypatch.setattr(executors.multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    assert executors._start_method() == "spawn"


def test_process_pool_under_forkserver(monkeypatch):
    monkeypatch.setattr(executors, "_start_method", lambda: "forkserver")
    with ProcessExecutor(1) as executor:
        assert executor.map(square_slowly, [2, 3]) == [4, 9]


# --- choosing an executor -------------------------------------------------------------------------


def test_make_executor_defaults():
    assert isinstance(make_executor(runs=1), InProcessExecutor)
    assert isinstance(make_executor(jobs=1, runs=10), InProcessExecutor)
    pool = make_executor(runs=10)
    assert isinstance(pool, ProcessExecutor) and pool.jobs == min(default_jobs(), 10)
    small = make_executor("process", jobs=8, runs=3)
    assert small.jobs == 3  # never more processes than runs
    assert isinstance(make_executor("inprocess", jobs=4, runs=10), InProcessExecutor)
    assert default_jobs() >= 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "cluster"}, "unknown executor 'cluster' (use one of: inprocess, process, dask)"),
        ({"jobs": 0}, "--jobs must be an integer >= 1, got 0"),
        ({"jobs": True}, "--jobs must be an integer >= 1, got True"),
        ({"kind": "process", "scheduler": "tcp://h:8786"}, "--scheduler needs --executor dask"),
        ({"scheduler": "localhost:8786"}, "--scheduler must be an address such as tcp://HOST"),
    ],
)
def test_make_executor_rejects(kwargs, message):
    with pytest.raises(ExecutorError) as err:
        make_executor(**kwargs)
    assert message in str(err.value)


def test_dask_missing_gives_a_clear_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ExecutorError, match=r"pip install -e '\.\[cluster\]'"):
        make_executor("dask", scheduler="tcp://127.0.0.1:8786")


# --- Dask -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=False,
        protocol="tcp",
        host="127.0.0.1",
        dashboard_address=":0",
    ) as local:
        yield local


def test_dask_gives_the_same_numbers_as_the_process_pool(cluster):
    variants = grid_variants(
        SMOKE, [("stations.app.servers", ["1", "3"])], ["horizon=40s", "warmup=auto"]
    )
    seen = []
    address = cluster.scheduler_address
    assert address.startswith("tcp://127.0.0.1:")
    with make_executor("dask", scheduler=address) as executor:
        assert executor.describe() == f"Dask scheduler {address}"
        on_dask = compare(variants, 3, executor=executor, progress=lambda d, t: seen.append(d))
    with ProcessExecutor(2) as executor:
        in_pool = compare(variants, 3, executor=executor)
    assert on_dask.table().equals(in_pool.table())
    assert on_dask.warmups() == in_pool.warmups()
    assert on_dask.executor == f"Dask scheduler {address}"
    assert sorted(seen) == list(range(1, 7))


def test_dask_with_a_given_client(cluster):
    distributed = pytest.importorskip("distributed")
    with distributed.Client(cluster.scheduler_address) as client:
        executor = DaskExecutor(client=client)
        assert executor.describe() == "Dask cluster"
        assert executor.map(square_slowly, [1, 2, 3]) == [1, 4, 9]
        assert executor.map(square_slowly, []) == []
        with pytest.raises(ValueError, match="task 3 failed"):
            executor.map(fail_on_three, range(5))
        executor.close()  # leaves the caller's client open
        assert client.status == "running"


def test_dask_local_cluster_without_a_scheduler():
    pytest.importorskip("distributed")
    with DaskExecutor(jobs=1) as executor:
        assert executor.describe() == "Dask local cluster (1 workers)"
        assert executor.map(square_slowly, [4, 2]) == [16, 4]


def test_dask_local_cluster_that_cannot_start(monkeypatch):
    distributed = pytest.importorskip("distributed")

    def refuse(**kwargs):
        raise RuntimeError("Nanny failed to start.")

    monkeypatch.setattr(distributed, "LocalCluster", refuse)
    with pytest.raises(ExecutorError, match="cannot start a local Dask cluster: Nanny failed"):
        DaskExecutor(jobs=1)


def test_dask_unreachable_scheduler():
    pytest.importorskip("distributed")
    with pytest.raises(
        ExecutorError, match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:9"
    ):
        DaskExecutor("tcp://127.0.0.1:9", timeout=0.5)


def test_the_base_executor_is_abstract():
    with executors.Executor() as executor:
        assert executor.describe() == "executor" and executor.jobs == 1
        with pytest.raises(NotImplementedError):
            executor.map(square_slowly, [1])


def test_the_pool_and_dask_share_one_submit_and_collect_loop():
    assert ProcessExecutor.map is DaskExecutor.map is executors._FutureExecutor.map
    bare = executors._FutureExecutor()
    assert bare.map(square_slowly, []) == []
    with pytest.raises(NotImplementedError):
        bare.map(square_slowly, [1])
    for hook in (bare._as_completed, bare._gather, bare._cancel):
        with pytest.raises(NotImplementedError):
            hook([])


def test_a_failing_task_is_raised_after_the_rest_are_cancelled():
    cancelled = []
    seen = []

    class Recording(ProcessExecutor):
        def _cancel(self, pending):
            cancelled.append(len(pending))
            super()._cancel(pending)

    with Recording(1) as executor:
        with pytest.raises(ValueError, match="task 3 failed"):
            executor.map(fail_on_three, range(6), progress=lambda d, t: seen.append(d))
        assert cancelled == [6]
        assert seen == [1, 2, 3]  # raised when task 3 failed, not after the others ran
        assert executor.map(fail_on_three, [1, 2]) == [1, 2]  # a fresh pool for the next map


def test_an_interrupt_stops_the_tasks_under_way():
    """Ctrl-C while tasks run: the workers are ended, not waited for (a minute here)."""

    workers: list = []

    with ProcessExecutor(2) as executor:

        def interrupt(done: int, total: int) -> None:
            assert executor._pool is not None
            workers.extend(executor._pool._processes.values())  # the pool's, while it runs
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            executor.map(first_fast_then_long, range(3), progress=interrupt)
        assert executor._pool is None
    assert len(workers) == 2
    deadline = time.monotonic() + 10.0  # the pool's own thread may be the one to reap them
    for worker in workers:  # ended by a signal, not by finishing their minute of work
        while worker.exitcode is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert worker.exitcode == -signal.SIGTERM


def test_an_exception_that_cannot_be_unpickled_comes_back_with_its_message():
    with ProcessExecutor(1) as executor:
        with pytest.raises(executors.TaskFailed, match=r"LockedError: task 0 broke"):
            executor.map(fail_oddly, [0])
        assert executor.map(fail_on_three, [1]) == [1]  # the pool still works
