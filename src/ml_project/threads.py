"""The thread budget: how many threads this process's native pools may use, and which GPU.

OpenMP (scikit-learn's histogram boosting), BLAS and torch each start one thread per core
by default, and OpenMP threads busy-wait. Two queue workers on two cores then run four
spinning threads, and a fit that takes 0.2 s alone takes 1-2 s. So every stage process
sizes its pools to its share of the cores it may run on (`os.sched_getaffinity`):

1. `OMP_NUM_THREADS` set by the user wins, always;
2. else `ML_PROJECT_THREADS` (the sweep command sets it to cores // -j for its workers);
3. else, inside a DVC queue workspace, cores // the queue workers alive (`dvc queue start -j`);
4. else, under torchrun, cores // the processes on this node;
5. else every core.

Idle OpenMP threads also sleep instead of busy-waiting (`OMP_WAIT_POLICY=PASSIVE`, unless set).
`apply()` runs in `stages/_bootstrap.py`, before numpy, scikit-learn or torch is imported,
so the pools start at the right size; torch, imported later, reads `torch_threads()`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path

ENV = "ML_PROJECT_THREADS"
# Read by the native pools when they start, so they must be set before the libraries load.
POOL_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
# Where DVC's queue keeps one `{"pid": ...}` file per worker (`dvc-exp-worker-<n>.json`).
# DVC's private layout (dvc 3.x); if it changes, queued stages fall back to every core.
QUEUE_WORKERS_DIR = Path(".dvc/tmp/exps/celery")
QUEUE_WORKSPACES_DIR = Path(".dvc/tmp/exps")


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers set)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def per_worker(jobs: int, cores: int | None = None) -> int:
    """The threads each of `jobs` parallel workers gets: cores // jobs, at least 1."""
    cores = available_cores() if cores is None else cores
    return max(1, cores // max(1, jobs))


def _positive_int(value: str | None) -> int | None:
    try:
        number = int(str(value).strip())
    except ValueError:
        return None
    return number if number > 0 else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (OSError, TypeError):
        return False
    return True


def queue_workers(environ: Mapping[str, str], cwd: Path | None = None) -> dict[int, int]:
    """`{worker number: pid}` of the live DVC queue workers, if this process runs inside one
    of the queue's temporary workspaces; {} otherwise."""
    root = environ.get("DVC_ROOT")
    if not root:
        return {}
    cwd = Path.cwd() if cwd is None else cwd
    try:
        if not cwd.resolve().is_relative_to((Path(root) / QUEUE_WORKSPACES_DIR).resolve()):
            return {}
    except OSError:
        return {}
    return live_workers(Path(root))


def live_workers(root: Path) -> dict[int, int]:
    """`{worker number: pid}` of the live queue workers of the DVC project at `root`, from
    their pid files `dvc-exp-worker-<number>.json` (celery's own view can lag by seconds)."""
    workers = {}
    for info in (root / QUEUE_WORKERS_DIR).glob("dvc-exp-worker-*.json"):
        try:
            number = int(info.stem.rsplit("-", 1)[1])
            proc = json.loads(info.read_text())
            pid = int(proc["pid"])
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            continue
        if proc.get("returncode") is None and _alive(pid):
            workers[number] = pid
    return workers


def budget(environ: Mapping[str, str] | None = None, cores: int | None = None) -> tuple[int, str]:
    """(threads, why): the number of threads this process's pools may use."""
    environ = os.environ if environ is None else environ
    cores = available_cores() if cores is None else cores
    user = _positive_int(environ.get("OMP_NUM_THREADS"))
    if user is not None:
        return user, "OMP_NUM_THREADS"
    given = _positive_int(environ.get(ENV))
    if given is not None:
        return given, ENV
    workers = len(queue_workers(environ))
    if workers:
        return per_worker(workers, cores), f"{workers} DVC queue worker(s)"
    local = _positive_int(environ.get("LOCAL_WORLD_SIZE"))
    if local is not None:
        return per_worker(local, cores), f"torchrun, {local} process(es) per node"
    return cores, "all cores"


def apply(environ: MutableMapping[str, str] | None = None, loaded: bool = False) -> int:
    """Set the pools' variables to the budget (those the user set are kept); call before
    numpy, scikit-learn or torch is imported. Returns the budget.

    `loaded`: the pools have started already (a fork server's child), so they are also
    resized now, through threadpoolctl; torch is sized where it is used (`torch_threads`).
    """
    environ = os.environ if environ is None else environ
    threads, _ = budget(environ)
    if loaded:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads)
    for var in POOL_VARS:
        environ.setdefault(var, str(threads))
    # Idle OpenMP threads sleep instead of spinning: a fit shares the cores with W&B's service
    # process, MLflow's writer thread and other workers (measured on 2 busy cores: a
    # 2-thread hgb fit took 10 s spinning, 1.5 s passive, 1.3 s with 1 thread).
    environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    environ.setdefault(ENV, str(threads))  # what torch_threads() and child processes read
    return threads


def torch_threads(environ: Mapping[str, str] | None = None) -> int:
    """torch's intra-op threads: the budget (torch reads no variable but OMP_NUM_THREADS)."""
    return budget(os.environ if environ is None else environ)[0]


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def worker_index(environ: Mapping[str, str] | None = None) -> int:
    """This process's slot among parallel workers: torchrun's LOCAL_RANK, else the number of
    the DVC queue worker it descends from (0-based), else 0."""
    environ = os.environ if environ is None else environ
    rank = environ.get("LOCAL_RANK")
    if rank is not None and rank.strip().isdigit():
        return int(rank)
    workers = {pid: number for number, pid in queue_workers(environ).items()}
    # A fork server's child descends from the server; the stage process DVC started is the
    # one that handed it over.
    pid: int | None = _positive_int(environ.get("ML_PROJECT_STAGE_PID")) or os.getpid()
    for _ in range(32):  # stage <- dvc exec-run <- task process <- worker
        if pid is None or pid <= 1:
            break
        if pid in workers:
            return workers[pid] - 1
        pid = _parent(pid)
    return 0


def pick_gpu(count: int, index: int) -> int:
    """Round robin: worker `index` of several uses GPU `index % count`."""
    if count < 1:
        raise ValueError("no GPU to pick from")
    return index % count
