"""A preloading fork server for stage processes: pay the heavy imports once, not per stage.

Every stage is a fresh `python stages/<stage>.py` that DVC starts, and most of its wall time
on small data is importing scikit-learn, pandas, MLflow, W&B, skops, skl2onnx and torch
(measured in benchmarks/experiment.py). The server imports those third-party libraries once
and then forks one child per stage. The child imports *this workspace's* package code, from
the stage's own `src/`, so the code DVC hashed is the code that runs; the server itself never
imports `ml_project` (it runs as a script, and a child drops any `ml_project` module before it
starts).

How a stage uses it (`stages/_bootstrap.py` calls `delegate()` first):
1. connect to the server's Unix socket; if there is none, start one in the background and run
   this stage the ordinary way;
2. send argv, cwd, environment, umask and the stdin/stdout/stderr descriptors;
3. the server forks a session process, which forks the child that runs the stage script, then
   reports the child's pid and, at the end, its wait status; the stage process exits with it.
   Signals the stage gets (Ctrl-C, `dvc queue kill`) are forwarded to the child; if the stage
   process dies (SIGKILL), the session kills the child, so nothing outlives what DVC started.

The socket's name is a hash of the interpreter, this file, the installed packages (the
site-packages directory's modification time) and the variables libraries may read at import
(`KEY_VARS`: the home and cache directories), so a `pip install`, an edit here or another home
directory starts a fresh server instead of reusing stale state. It lives in a directory only
this user can open. The server exits after `ML_PROJECT_FORKSERVER_IDLE` seconds without a
stage (600).

`ML_PROJECT_FORKSERVER=0` turns it off; it is also off under torchrun (each rank must be the
process torchrun started), on platforms without fork and Unix sockets, and inside its own
children. Everything works the same without it, only slower.
"""

from __future__ import annotations

import array
import contextlib
import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import sysconfig
from pathlib import Path

ENV = "ML_PROJECT_FORKSERVER"
IDLE_ENV = "ML_PROJECT_FORKSERVER_IDLE"
PRELOAD_ENV = "ML_PROJECT_FORKSERVER_PRELOAD"  # comma-separated modules instead of PRELOAD
CHILD_ENV = "ML_PROJECT_FORKSERVER_CHILD"  # set in the children: never delegate twice
CLIENT_PID_ENV = "ML_PROJECT_STAGE_PID"  # the pid DVC started, for `threads.worker_index`
DEFAULT_IDLE_SECONDS = 600
# Third-party modules the stages import; what is missing in a project is skipped. Not
# onnxruntime: importing it writes a device id under ~/.cache, which only the export stage may
# do (and it is cheap to import: 0.3 s).
PRELOAD = (
    "numpy",
    "pandas",
    "pyarrow.parquet",
    # What the first `pd.read_parquet` and the first sklearn call on a frame import in every
    # stage (0.1-0.15 s a stage).
    "pyarrow.dataset",
    "narwhals._pandas_like.namespace",
    "yaml",
    "pydantic",
    "threadpoolctl",
    "sklearn.base",
    "sklearn.compose",
    "sklearn.ensemble",
    "sklearn.linear_model",
    "sklearn.metrics",
    "sklearn.model_selection",
    "sklearn.neighbors",
    "sklearn.neural_network",
    "sklearn.pipeline",
    "sklearn.preprocessing",
    "sklearn.svm",
    "skops.io",
    "onnx",
    "skl2onnx",
    "torch",
    # What a torch model's first optimizer imports (its methods are wrapped in
    # `torch._disable_dynamo`, which imports dynamo on first call): 2.4 s a torch train stage.
    "torch._dynamo",
    "dvclive",
    # What dvclive's `Live()` imports to find the DVC repository and experiment (0.3 s).
    "dvc.repo",
    "dvc.repo.experiments",
    "dvc.repo.metrics.show",
    "dvc.repo.params.show",
    "dvc.repo.plots",
    "dvc.stage",
    "dvc.output",
    "scmrepo.git",
    "dulwich.porcelain",
    "dvc_data.index",
    "mlflow",
    "mlflow.pyfunc",
    "mlflow.sklearn",
    "mlflow.models",
    "mlflow.tracking",
    "mlflow.store.tracking.sqlalchemy_store",
    "sqlalchemy.dialects.sqlite",
    "wandb",
    # What the first `wandb.init` and `log_artifact` of each process import (1.5 s): the job
    # inputs check of every run, the public API behind it, and the OTLP metrics exporter.
    "wandb.sdk.launch.inputs.internal",
    "wandb.apis.public",
    "wandb.sdk.artifacts.artifact",
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
    "opentelemetry.exporter.otlp.proto.http._log_exporter",
)
# Caches filled once in the server, so each child has them: MLflow's map of installed
# distributions, which `log_model` builds by reading every package's file list (1.4 s).
WARM_UP = ("mlflow.utils.requirements_utils._init_packages_to_modules_map",)
KEY_VARS = (
    "HOME",
    "XDG_CACHE_HOME",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "TMPDIR",
    "OMP_WAIT_POLICY",
    PRELOAD_ENV,
)
_HEADER = struct.Struct("!I")


def under_torchrun(environ=None) -> bool:
    """Whether this process is one of torchrun's ranks (it sets these for each)."""
    environ = os.environ if environ is None else environ
    return "LOCAL_RANK" in environ or "TORCHELASTIC_RUN_ID" in environ


def enabled(environ=None) -> bool:
    environ = os.environ if environ is None else environ
    if environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if is_child(environ) or under_torchrun(environ):
        return False
    return sys.platform.startswith("linux") and hasattr(os, "fork")


def is_child(environ=None) -> bool:
    """True in a stage child the server forked (its libraries are loaded already)."""
    return bool((os.environ if environ is None else environ).get(CHILD_ENV))


def runtime_dir() -> Path | None:
    """A directory only this user can open (or None): the socket accepts whatever connects."""
    base = os.environ.get("XDG_RUNTIME_DIR") or "/tmp"
    path = Path(base) / f"ml-project-forkserver-{os.getuid()}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        info = path.lstat()
    except OSError:
        return None
    if info.st_uid != os.getuid() or info.st_mode & 0o077 or not path.is_dir():
        return None  # someone else's, or opened up: do not trust it
    return path


def _key() -> str:
    digest = hashlib.sha256()
    digest.update(os.path.realpath(sys.executable).encode())
    digest.update(sys.version.encode())
    digest.update(Path(__file__).read_bytes())
    # What libraries may read once, at import: a server started under another home directory
    # (a test's) or another OpenMP wait policy would hand its children the wrong one.
    for var in KEY_VARS:
        digest.update(f"{var}={os.environ.get(var)}\0".encode())
    site = sysconfig.get_paths()["purelib"]
    with contextlib.suppress(OSError):
        digest.update(str(os.stat(site).st_mtime_ns).encode())
    return digest.hexdigest()[:20]


def socket_path(directory: Path) -> Path | None:
    """The server's socket, or None where the path is too long for a Unix socket (108 bytes)."""
    path = directory / f"{_key()}.sock"
    return path if len(os.fsencode(path)) < 100 else None


def _send(conn: socket.socket, payload: dict, fds: list[int] | None = None) -> None:
    data = json.dumps(payload).encode()
    message = _HEADER.pack(len(data)) + data
    if fds:
        conn.sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    else:
        conn.sendall(message)


def _recv_exact(conn: socket.socket, size: int) -> bytes:
    chunks = b""
    while len(chunks) < size:
        chunk = conn.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("closed")
        chunks += chunk
    return chunks


def _recv(conn: socket.socket, with_fds: int = 0) -> tuple[dict, list[int]]:
    fds: list[int] = []
    if with_fds:
        size = socket.CMSG_SPACE(with_fds * array.array("i").itemsize)
        head, ancillary, _, _ = conn.recvmsg(_HEADER.size, size)
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                received = array.array("i")
                received.frombytes(data[: len(data) - len(data) % received.itemsize])
                fds.extend(received)
        if len(head) < _HEADER.size:
            head += _recv_exact(conn, _HEADER.size - len(head))
    else:
        head = _recv_exact(conn, _HEADER.size)
    (size,) = _HEADER.unpack(head)
    return json.loads(_recv_exact(conn, size)), fds


# -- the stage's side -------------------------------------------------------------------------


def _start_server(directory: Path, path: Path) -> None:
    """Start the server in the background, unless one holds the lock (it is starting)."""
    import fcntl

    lock = directory / f"{path.stem}.lock"
    with open(lock, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return  # a server holds it: it is still importing
        fcntl.flock(handle, fcntl.LOCK_UN)
    log = open(directory / f"{path.stem}.log", "ab")  # noqa: SIM115 - handed to the child
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVC")}
    # -P: do not put this file's directory on sys.path (its modules are not to be preloaded).
    with log:
        subprocess.Popen(
            [sys.executable, "-P", __file__, "serve", str(path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
            env=env,
            cwd="/",
        )


def delegate(script: str | None) -> None:
    """Run `script` (this stage) in a child of the fork server and exit with its status.

    Returns only when there is no server to use, or no script (`python -c`); the caller then
    runs the stage itself.
    """
    if not script or not enabled():
        return
    directory = runtime_dir()
    if directory is None:
        return
    path = socket_path(directory)
    if path is None:
        return
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(path))
    except OSError:
        conn.close()
        with contextlib.suppress(OSError):
            _start_server(directory, path)
        return
    umask = os.umask(0)
    os.umask(umask)
    request = {
        "script": os.path.abspath(script),
        "argv": sys.argv,
        "cwd": os.getcwd(),
        "env": {**os.environ, CHILD_ENV: "1", CLIENT_PID_ENV: str(os.getpid())},
        "umask": umask,
    }
    try:
        _send(conn, request, [0, 1, 2])
        started, _ = _recv(conn)
    except (OSError, ConnectionError, ValueError):
        conn.close()
        return  # the server went away before it started anything: run here
    child = int(started["pid"])

    def forward(signum, _frame):
        with contextlib.suppress(OSError):
            os.kill(child, signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(signum, forward)
    try:
        done, _ = _recv(conn)
        status = int(done["status"])
    except (OSError, ConnectionError, ValueError):
        sys.stderr.write("error: the stage's fork server died; run it again\n")
        os._exit(1)
    if os.WIFSIGNALED(status):  # die the same way, so DVC reports the same thing
        killed_by = os.WTERMSIG(status)
        signal.signal(killed_by, signal.SIG_DFL)
        sys.stdout.flush()
        os.kill(os.getpid(), killed_by)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1)


# -- the server's side ------------------------------------------------------------------------


def _run_child(request: dict, fds: list[int]) -> None:
    """In the forked child: become the stage process DVC started, run the script, exit."""
    import builtins
    import types

    for target, fd in enumerate(fds[:3]):
        os.dup2(fd, target)
    for fd in fds:
        if fd > 2:
            os.close(fd)
    os.chdir(request["cwd"])
    os.umask(int(request["umask"]))
    os.environ.clear()
    os.environ.update(request["env"])
    for name in [m for m in sys.modules if m == "ml_project" or m.startswith("ml_project.")]:
        del sys.modules[name]
    # New text streams on the stage's descriptors: line-buffered where they are a terminal,
    # as the interpreter would have set them up for the stage process itself.
    sys.stdin, sys.stdout, sys.stderr = (
        open(fd, mode, buffering=1 if fd == 2 or os.isatty(fd) else -1, closefd=False)  # noqa: SIM115
        for fd, mode in ((0, "r"), (1, "w"), (2, "w"))
    )
    script = request["script"]
    sys.argv = list(request["argv"])
    sys.path[0:0] = [os.path.dirname(script)]
    code = 0
    # As the interpreter runs a script: a fresh `__main__`, argv exactly as DVC gave it.
    main = types.ModuleType("__main__")
    main.__file__ = script
    main.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = main
    try:
        with open(script, "rb") as source:
            compiled = compile(source.read(), script, "exec")
        exec(compiled, main.__dict__)  # noqa: S102 - the stage script, as `python script` would
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            sys.stderr.write(f"{exc.code}\n")
            code = 1
    except KeyboardInterrupt:
        code = 130
    except BaseException:  # noqa: BLE001 - what the interpreter would print and exit with
        import traceback

        traceback.print_exc()
        code = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _session(conn: socket.socket) -> None:
    """In a fork of the server: start the stage child, report its pid and its end."""
    import select

    try:
        request, fds = _recv(conn, with_fds=3)
    except (OSError, ConnectionError, ValueError):
        os._exit(1)
    child = os.fork()
    if child == 0:
        conn.close()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            _run_child(request, fds)
        finally:
            os._exit(1)  # never back into the server's loop
    for fd in fds:
        os.close(fd)
    with contextlib.suppress(OSError):
        _send(conn, {"pid": child})
    status = None
    while status is None:
        pid, wait_status = os.waitpid(child, os.WNOHANG)
        if pid:
            status = wait_status
            break
        readable, _, _ = select.select([conn], [], [], 0.05)
        if readable and not conn.recv(1, socket.MSG_PEEK):  # the stage process is gone
            with contextlib.suppress(OSError):
                os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
            os._exit(0)
    with contextlib.suppress(OSError):
        _send(conn, {"status": status})
    os._exit(0)


def _preload() -> list[str]:
    import importlib
    import warnings

    names = [n.strip() for n in os.environ.get(PRELOAD_ENV, "").split(",") if n.strip()]
    loaded = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in names or PRELOAD:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001, S112 - not installed, or broken: the stage will say
                continue
            loaded.append(name)
        for warm in WARM_UP:
            module, function = warm.rsplit(".", 1)
            if module.split(".")[0] not in {name.split(".")[0] for name in loaded}:
                continue
            with contextlib.suppress(Exception):
                getattr(importlib.import_module(module), function)()
    return loaded


def serve(path: Path) -> None:
    """Preload, then fork a session per connection until idle for the idle timeout."""
    import fcntl
    import gc
    import threading
    import time

    lock = open(path.with_suffix(".lock"), "a")  # noqa: SIM115 - held for the server's life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return  # another server is starting
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read once, when OpenMP loads
    os.environ.setdefault("WANDB_SILENT", "true")
    # Importing MLflow writes an installation id to ~/.config unless telemetry is off, as the
    # MLflow tracker turns it off (tracking/mlflow_tracker.py).
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    start = time.perf_counter()
    loaded = _preload()
    # Everything preloaded lives as long as the server: move it out of the collector's sight.
    # A child's full collection would otherwise walk these ~600k objects (0.5-0.7 s each time,
    # and it writes to every page it walks, un-sharing the memory the fork shared).
    gc.collect()
    gc.freeze()
    if threading.active_count() > 1:  # forking a threaded process is unsafe: do not serve
        print(f"fork server: threads after preload: {threading.enumerate()}", flush=True)
        return
    idle = float(os.environ.get(IDLE_ENV) or DEFAULT_IDLE_SECONDS)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(64)
    server.settimeout(1.0)
    path.with_suffix(".pid").write_text(f"{os.getpid()}\n")
    print(
        f"fork server {os.getpid()}: {len(loaded)} modules in "
        f"{time.perf_counter() - start:.1f} s, listening on {path}",
        flush=True,
    )
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # `stop`: clean up on the way out
    last = time.monotonic()
    try:
        while time.monotonic() - last < idle and path.exists():
            with contextlib.suppress(ChildProcessError):
                while os.waitpid(-1, os.WNOHANG)[0]:
                    pass
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            last = time.monotonic()
            conn.settimeout(None)
            if os.fork() == 0:
                server.close()
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                try:
                    _session(conn)
                finally:
                    os._exit(1)  # never back into the server's loop
            conn.close()
    finally:
        for leftover in (path, path.with_suffix(".pid")):
            with contextlib.suppress(OSError):
                leftover.unlink()
        server.close()


def server_pid() -> int | None:
    """The pid of this environment's running server, or None."""
    directory = runtime_dir()
    path = socket_path(directory) if directory else None
    if path is None:
        return None
    try:
        pid = int(path.with_suffix(".pid").read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def main(argv: list[str] | None = None) -> int:
    """`serve SOCKET` (started by the first stage), `status`, or `stop`."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 2 and argv[0] == "serve":
        serve(Path(argv[1]))
        return 0
    if argv in (["status"], ["stop"]):
        pid = server_pid()
        directory = runtime_dir()
        where = (socket_path(directory) if directory else None) or "no usable socket path"
        if argv == ["stop"] and pid is not None:
            os.kill(pid, signal.SIGTERM)
        state = "off" if not enabled() else f"pid {pid}" if pid else "not running"
        print(f"fork server: {state} ({where})")
        return 0
    print("usage: python -m ml_project.forkserver status|stop", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
