"""The fork server, for real: stages handed to it run this workspace's code, with the stage's
stdio, exit status, signals and thread budget, and nothing outlives the process DVC started."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROBE = """\
import gc, json, os, sys, time
import _bootstrap  # noqa: F401
import ml_project, ml_project.probe_value
from threadpoolctl import threadpool_info

mode = sys.argv[1] if len(sys.argv) > 1 else "report"
if mode == "report":
    print(json.dumps({
        "pid": os.getpid(),
        "child": os.environ.get("ML_PROJECT_FORKSERVER_CHILD"),
        "stage_pid": os.environ.get("ML_PROJECT_STAGE_PID"),
        "package": ml_project.__file__,
        "value": ml_project.probe_value.VALUE,
        "cwd": os.getcwd(),
        "argv": sys.argv,
        "pools": sorted({p["num_threads"] for p in threadpool_info()}),
        "stdin": sys.stdin.read(),
        "frozen": gc.get_freeze_count(),
    }))
    print("to stderr", file=sys.stderr)
elif mode == "fail":
    sys.exit("error: params.yaml: model: unknown model 'x' (valid: a, b)")
elif mode == "code":
    sys.exit(int(sys.argv[2]))
elif mode == "raise":
    raise RuntimeError("boom")
elif mode == "sleep":
    open("child.pid", "w").write(str(os.getpid()))
    time.sleep(60)
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A tiny project: the real bootstrap and the fork server, a probe stage, its own server
    (a private runtime directory, and only numpy and threadpoolctl preloaded, to start fast)."""
    root = tmp_path / "project"
    (root / "stages").mkdir(parents=True)
    (root / "src" / "ml_project").mkdir(parents=True)
    shutil.copy(ROOT / "stages" / "_bootstrap.py", root / "stages")
    for name in ("__init__.py", "forkserver.py", "threads.py"):
        shutil.copy(ROOT / "src" / "ml_project" / name, root / "src" / "ml_project")
    (root / "src" / "ml_project" / "probe_value.py").write_text("VALUE = 1\n")
    (root / "stages" / "probe.py").write_text(PROBE)
    runtime = Path(tempfile.mkdtemp(prefix="fs-", dir="/tmp"))  # a socket path is <108 bytes
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("ML_PROJECT_FORKSERVER_PRELOAD", "numpy,threadpoolctl")
    monkeypatch.setenv("ML_PROJECT_FORKSERVER_IDLE", "60")
    monkeypatch.delenv("ML_PROJECT_FORKSERVER", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    yield root
    _stop(root)
    shutil.rmtree(runtime, ignore_errors=True)


def _probe(root: Path, *args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "stages/probe.py", *args],
        cwd=root,
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )


def _status(root: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-c", "from ml_project import forkserver; forkserver.main(['status'])"],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root / "src")},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def _stop(root: Path) -> None:
    subprocess.run(
        [sys.executable, "-c", "from ml_project import forkserver; forkserver.main(['stop'])"],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root / "src")},
        capture_output=True,
        check=False,
    )


def _served(root: Path) -> None:
    """Run a stage without a server (which starts one), then wait for it to listen."""
    first = _probe(root)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout.splitlines()[0])["child"] is None  # ran in its own process
    deadline = time.monotonic() + 60
    while "pid " not in _status(root):
        assert time.monotonic() < deadline, "the fork server did not start"
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_a_served_stage_runs_this_workspaces_code_with_the_stages_stdio(project):
    _served(project)
    (project / "src" / "ml_project" / "probe_value.py").write_text("VALUE = 2\n")  # code changed
    result = _probe(project, "report", stdin="rows on stdin")
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.splitlines()[0])
    assert seen["child"] == "1"
    assert seen["value"] == 2  # never a stale module from the server
    assert seen["package"] == str(project / "src" / "ml_project" / "__init__.py")
    assert seen["cwd"] == str(project)
    assert seen["argv"] == ["stages/probe.py", "report"]
    assert seen["stdin"] == "rows on stdin"
    assert seen["pid"] != int(seen["stage_pid"])  # a forked child did the work
    assert result.stderr.strip() == "to stderr"
    # The preloaded modules' objects are out of the collector's sight: a child's full
    # collection does not walk (and un-share) the server's heap.
    assert seen["frozen"] > 10_000


def test_the_thread_budget_resizes_the_pools_the_server_loaded(project):
    _served(project)
    seen = json.loads(_probe(project, ML_PROJECT_THREADS="1").stdout.splitlines()[0])
    assert seen["child"] == "1"
    assert seen["pools"] == [1]


def test_exit_status_and_error_lines_come_back_unchanged(project):
    _served(project)
    failed = _probe(project, "fail")
    assert failed.returncode == 1
    assert failed.stderr.strip() == "error: params.yaml: model: unknown model 'x' (valid: a, b)"
    assert _probe(project, "code", "2").returncode == 2
    crashed = _probe(project, "raise")
    assert crashed.returncode == 1
    assert crashed.stderr.strip().endswith("RuntimeError: boom")


def _sleeping(project: Path) -> tuple[subprocess.Popen, int]:
    stage = subprocess.Popen([sys.executable, "stages/probe.py", "sleep"], cwd=project)
    pid_file = project / "child.pid"
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child = int(pid_file.read_text())
    assert child != stage.pid  # it is the server's child that sleeps
    return stage, child


def test_killing_the_stage_process_kills_its_child(project):
    _served(project)
    stage, child = _sleeping(project)
    stage.kill()  # SIGKILL: the stage cannot forward anything
    stage.wait()
    deadline = time.monotonic() + 10
    while _alive(child):
        assert time.monotonic() < deadline, "the child outlived the stage process"
        time.sleep(0.05)


def test_signals_are_forwarded_and_the_stage_dies_the_same_way(project):
    _served(project)
    stage, child = _sleeping(project)
    stage.send_signal(signal.SIGTERM)
    assert stage.wait(timeout=10) == -signal.SIGTERM
    assert not _alive(child)


def test_off_when_asked_or_when_the_runtime_directory_is_not_private(project, tmp_path):
    _served(project)
    assert json.loads(_probe(project, ML_PROJECT_FORKSERVER="0").stdout)["child"] is None
    shared = tmp_path / "shared"
    (shared / f"ml-project-forkserver-{os.getuid()}").mkdir(parents=True, mode=0o777)
    (shared / f"ml-project-forkserver-{os.getuid()}").chmod(0o777)
    seen = _probe(project, XDG_RUNTIME_DIR=str(shared))
    assert json.loads(seen.stdout.splitlines()[0])["child"] is None
    assert not list((shared / f"ml-project-forkserver-{os.getuid()}").iterdir())


def test_an_idle_server_exits_and_removes_its_socket(project, monkeypatch):
    monkeypatch.setenv("ML_PROJECT_FORKSERVER_IDLE", "1")
    _served(project)
    runtime = Path(os.environ["XDG_RUNTIME_DIR"]) / f"ml-project-forkserver-{os.getuid()}"
    deadline = time.monotonic() + 30
    while list(runtime.glob("*.sock")) or "pid " in _status(project):
        assert time.monotonic() < deadline, "the idle server is still there"
        time.sleep(0.2)
    assert json.loads(_probe(project).stdout.splitlines()[0])["child"] is None


def _resolves(name: str) -> bool:
    """Whether module `name` exists in this environment, found on disk without importing it or
    its packages (what a preload entry needs in order to be loaded)."""
    from importlib.machinery import PathFinder, all_suffixes

    top, *parts = name.split(".")
    spec = PathFinder.find_spec(top)
    if spec is None:
        return False
    places = [Path(d) for d in spec.submodule_search_locations or []]
    for depth, part in enumerate(parts, 1):  # a package (a folder, __init__.py or not) or a file
        files = [d / f"{part}{suffix}" for d in places for suffix in all_suffixes()]
        if any(f.is_file() for f in files):
            return depth == len(parts)
        places = [d / part for d in places if (d / part).is_dir()]
    return bool(places) or not parts


def test_every_preloaded_module_exists_under_the_pinned_versions():
    """The server skips a preload entry that does not import (a project without torch), so a
    renamed module after an upgrade would silently cost every stage its import again."""
    from ml_project.forkserver import PRELOAD, WARM_UP

    assert [name for name in PRELOAD if not _resolves(name)] == []
    assert [name for name in WARM_UP if not _resolves(name.rsplit(".", 1)[0])] == []
    assert not _resolves("narwhals._pandas_like.no_such_module")  # the check can fail
