"""Readable data versions: `v1`, `v2`, ... for the content hashes (`data_version`) of ETL outputs.

A label lives in git, as two refs created together in one atomic ref transaction:

    refs/data-versions/labels/v3          -> a commit whose message describes the version (JSON)
    refs/data-versions/hashes/<hash>      -> the same commit

A commit, not a bare blob: `dvc exp pull` (libgit2/dulwich) refuses to fetch into a repository
that has a ref naming anything but a commit ("object is not a committish"). The commit has the
empty tree and no parent, so it carries nothing but its message.

`git update-ref --stdin` with `create` fails unless *both* refs are new, so two processes that
race for `v3` cannot both get it, and a hash never gets two labels in one repository. With a
git remote (`origin`, or the only remote), labels are fetched before a new one is chosen and
pushed right after, with a lease that requires the remote refs not to exist yet: a clone that
lost the race drops its local copy and takes the next number. Refs are never moved or deleted
once published, so a label shown as `v3` stays `v3`.

The etl stage labels its output; the train stage labels the data it trains on too (etl may have
been restored from DVC's run-cache), and reports the label next to the hash.

    python -m ml_project.versions            # the table (also: python -m ml_project.data versions)
    python -m ml_project.versions push       # publish local labels to the git remote
    python -m ml_project.versions show v3    # one version (label, hash prefix or experiment)
    python -m ml_project.versions exp-push t5   # dvc exp push, refused if the name is taken
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from ml_project.errors import UserError, exits_on_user_error

if TYPE_CHECKING:
    import pandas as pd

    from ml_project.data import Manifest

REFS = "refs/data-versions/"
LABELS = REFS + "labels/"
HASHES = REFS + "hashes/"
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # git's well-known empty tree
# Label commits are made by the project, whatever git identity the user has (or lacks).
LABEL_AUTHOR = {
    "GIT_AUTHOR_NAME": "ml_project data versions",
    "GIT_AUTHOR_EMAIL": "data-versions@localhost",
    "GIT_COMMITTER_NAME": "ml_project data versions",
    "GIT_COMMITTER_EMAIL": "data-versions@localhost",
}
LABEL = re.compile(r"v(\d+)")
MIRROR = "refs/data-versions-remote/"  # the remote's labels as last fetched, per remote
# Modules whose code (with etl.steps) makes a version: recorded with each label.
ETL_CODE = ("data.py", "features.py")
GIT_TIMEOUT = 30


class VersionError(UserError):
    """An unknown label or experiment, or a version whose data cannot be read."""


# --------------------------------------------------------------------------- git plumbing


def repo_root(start: Path | str = ".") -> Path:
    """The repository that holds the labels: DVC's root under a (queued) stage, else git's."""
    env = os.environ.get("DVC_ROOT")
    if env and Path(env, ".git").exists():
        return Path(env)
    proc = git(Path(start), "rev-parse", "--show-toplevel", check=False)
    if proc.returncode != 0:
        raise VersionError(f"{Path(start).resolve()}: not inside a git repository")
    return Path(proc.stdout.strip())


def git(
    root: Path,
    *args: str,
    input: str | None = None,
    check: bool = True,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", **(env or {})}
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes -o ConnectTimeout=10")
    proc = subprocess.run(
        ["git", *args],
        cwd=root,
        input=input,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        first = (proc.stderr.strip().splitlines() or [""])[0]
        raise VersionError(f"git {args[0]}: {first}")
    return proc


def remote_name(root: Path) -> str | None:
    """`origin`, else the only remote, else None (labels stay in this clone)."""
    names = git(root, "remote", check=False).stdout.split()
    if "origin" in names:
        return "origin"
    return names[0] if len(names) == 1 else None


def fetch(root: Path, remote: str | None = None) -> bool:
    """Bring the remote's labels in; False when there is no remote or it cannot be reached."""
    remote = remote or remote_name(root)
    if remote is None:
        return False
    mirror = f"{MIRROR}{remote}/"
    spec = f"+{REFS}*:{mirror}*"
    try:
        proc = git(root, "fetch", "--quiet", remote, spec, check=False, timeout=GIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        return False
    if proc.returncode != 0:
        return False
    # git fetch would overwrite any ref outside refs/heads and refs/tags, so the remote's labels
    # land in a mirror first and are only *added* here: a label this clone made while offline
    # is never replaced (it fails to publish instead, see `publish`).
    theirs = _refs(root, mirror + "labels/")
    ours = _refs(root, LABELS)
    new = [n for n, oid in theirs.items() if LABEL.fullmatch(n) and ours.get(n) != oid]
    for name, record in zip(new, _records(root, [theirs[n] for n in new]), strict=True):
        commands = (
            f"create {LABELS}{name} {theirs[name]}\n"
            f"create {HASHES}{record['data_version']} {theirs[name]}\n"
        )
        git(root, "update-ref", "--stdin", input=commands, check=False)
    return True


def _refs(root: Path, prefix: str) -> dict[str, str]:
    out = git(root, "for-each-ref", "--format=%(refname) %(objectname)", prefix).stdout
    return {ref[len(prefix) :]: oid for ref, oid in (line.split() for line in out.splitlines())}


def _record(content: str) -> dict[str, Any]:
    """The JSON record of a label object: a commit's message (or a blob, as first written)."""
    if not content.lstrip().startswith("{"):
        content = content.split("\n\n", 1)[1]
    return json.loads(content)


def _records(root: Path, oids: Sequence[str]) -> list[dict[str, Any]]:
    if not oids:
        return []
    out = git(root, "cat-file", "--batch", input="\n".join(oids) + "\n").stdout
    records, rest = [], out
    while rest:
        header, _, rest = rest.partition("\n")
        size = int(header.split()[2])
        body, rest = rest[:size], rest[size + 1 :]
        records.append(_record(body))
    return records


def labels(root: Path) -> dict[str, dict[str, Any]]:
    """`{label: record}` in label order."""
    refs = _refs(root, LABELS)
    names = sorted((n for n in refs if LABEL.fullmatch(n)), key=lambda n: int(n[1:]))
    return dict(zip(names, _records(root, [refs[n] for n in names]), strict=True))


def label_of(root: Path, data_version: str) -> str | None:
    proc = git(root, "cat-file", "-p", f"{HASHES}{data_version}", check=False)
    return _record(proc.stdout)["label"] if proc.returncode == 0 else None


# --------------------------------------------------------------------------- labelling


def _code_hashes() -> dict[str, str]:
    """sha256 prefixes of the ETL modules that ran (this checkout's, under a stage)."""
    package = Path(__file__).parent
    return {
        name: hashlib.sha256((package / name).read_bytes()).hexdigest()[:12]
        for name in ETL_CODE
        if (package / name).is_file()
    }


def describe(manifest: Manifest, data: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What the label records about a version: its shape and what made it."""
    return {
        "data_version": manifest.data_version,
        "source": manifest.source,
        "target": manifest.target,
        "task": manifest.task,
        "rows": manifest.rows,
        "features": len(manifest.features),
        "steps": manifest.steps,
        "data": dict(data or {}),
        "code": _code_hashes(),
        "experiment": os.environ.get("DVC_EXP_NAME", ""),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _create(root: Path, label: str, data_version: str, record: dict[str, Any]) -> str | None:
    """Both refs of `label` in one transaction; the commit id, or None if either exists."""
    body = json.dumps({"label": label, **record}, indent=1, sort_keys=True, default=str)
    commit = git(
        root, "commit-tree", EMPTY_TREE, "-F", "-", input=body + "\n", env=LABEL_AUTHOR
    ).stdout.strip()
    commands = f"create {LABELS}{label} {commit}\ncreate {HASHES}{data_version} {commit}\n"
    ok = git(root, "update-ref", "--stdin", input=commands, check=False).returncode == 0
    return commit if ok else None


def _push(root: Path, remote: str, refs: Sequence[str]) -> str:
    """'ok', 'taken' (the remote has one of them already) or 'unreachable'."""
    leases = [f"--force-with-lease={ref}:" for ref in refs]
    try:
        proc = git(
            root,
            "push",
            "--atomic",
            "--porcelain",
            *leases,
            remote,
            *[f"{ref}:{ref}" for ref in refs],
            check=False,
            timeout=GIT_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        return "unreachable"
    if proc.returncode == 0:
        return "ok"
    text = proc.stdout + proc.stderr
    return "taken" if ("rejected" in text or "stale info" in text) else "unreachable"


def ensure_label(
    manifest: Manifest,
    data: Mapping[str, Any] | None = None,
    root: Path | None = None,
    publish: bool = True,
) -> str:
    """The label of `manifest.data_version`, creating the next `v<n>` if it has none."""
    root = root or repo_root()
    remote = remote_name(root) if publish else None
    online = fetch(root, remote) if remote else False
    record = describe(manifest, data)
    for _ in range(100):
        existing = label_of(root, manifest.data_version)
        if existing:
            return existing
        numbers = [int(n[1:]) for n in _refs(root, LABELS) if LABEL.fullmatch(n)]
        label = f"v{max(numbers, default=0) + 1}"
        commit = _create(root, label, manifest.data_version, record)
        if commit is None:
            continue  # another process took the number (or labelled this hash): look again
        if not online or remote is None:  # online means a remote
            return label
        refs = [f"{LABELS}{label}", f"{HASHES}{manifest.data_version}"]
        outcome = _push(root, remote, refs)
        if outcome != "taken":
            return label
        # Another clone published this number (or this hash) first: ours was never shown
        # outside this process, so drop it and take theirs or the next one.
        for ref in refs:
            git(root, "update-ref", "-d", ref, commit, check=False)
        fetch(root, remote)
    raise VersionError(f"{manifest.data_version}: could not take a label after 100 tries")


def label_for(manifest: Manifest, data: Mapping[str, Any] | None = None) -> str:
    """`ensure_label`, or "" outside a git repository (the hash alone then names the data)."""
    try:
        return ensure_label(manifest, data)
    except VersionError:
        return ""


def publish(root: Path | None = None) -> list[str]:
    """Push every local label the remote lacks; one line naming a label taken there."""
    root = root or repo_root()
    remote = remote_name(root)
    if remote is None:
        raise VersionError("no git remote: labels stay in this clone (git remote add origin ...)")
    fetch(root, remote)
    listed = git(root, "ls-remote", remote, f"{REFS}*", timeout=GIT_TIMEOUT).stdout.split("\n")
    there = {line.split()[1]: line.split()[0] for line in listed if line.strip()}
    pushed = []
    ours = _refs(root, REFS)
    for label, record in labels(root).items():
        refs = [f"{LABELS}{label}", f"{HASHES}{record['data_version']}"]
        if all(there.get(ref) == ours.get(ref[len(REFS) :]) for ref in refs):
            continue
        if _push(root, remote, refs) != "ok":
            raise VersionError(
                f"data version {label}: the remote '{remote}' has another {label} (labelled "
                "in another clone while this one was offline); this clone's cannot be published"
            )
        pushed.append(label)
    return pushed


# --------------------------------------------------------------------------- experiments


def experiment_refs(root: Path) -> dict[str, str]:
    """`{experiment name: commit}` from DVC's experiment refs."""
    refs = _refs(root, "refs/exps/")
    # <sha[:2]>/<sha[2:]>/<name>; celery/ and exec/ refs are DVC's own bookkeeping.
    return {
        ref.split("/", 2)[2]: oid
        for ref, oid in refs.items()
        if ref.count("/") >= 2 and len(ref.split("/")[0]) == 2
    }


def remote_experiment_names(root: Path) -> dict[str, set[str]]:
    """`{name: {commits}}` of the experiments on the git remote; {} when none is reachable."""
    remote = remote_name(root)
    if remote is None:
        return {}
    try:
        proc = git(root, "ls-remote", remote, "refs/exps/*", check=False, timeout=GIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        return {}
    found: dict[str, set[str]] = {}
    for line in proc.stdout.splitlines() if proc.returncode == 0 else []:
        oid, ref = line.split()
        parts = ref.split("/", 4)  # refs/exps/<sha[:2]>/<sha[2:]>/<name>
        if len(parts) == 5 and len(parts[2]) == 2:
            found.setdefault(parts[4], set()).add(oid)
    return found


def push_experiment(name: str, repo: Path | str = ".") -> str:
    """`dvc exp push <remote> <name>`, refused when the remote holds another experiment of that
    name (DVC would add a second one under another baseline), then this clone's labels."""
    root = repo_root(repo)
    exps = experiment_refs(root)
    if name not in exps:
        names = ", ".join(sorted(exps, key=natural_key)[:10]) or "none"
        raise VersionError(f"experiment '{name}': not found in this clone (experiments: {names})")
    remote = remote_name(root)
    if remote is None:
        raise VersionError("no git remote to push to (git remote add origin ...)")
    theirs = remote_experiment_names(root).get(name, set())
    if theirs - {exps[name]}:
        raise VersionError(
            f"experiment '{name}': the remote '{remote}' already has another '{name}' "
            f"({sorted(theirs)[0][:7]}; this clone's is {exps[name][:7]}); rename yours "
            f"(dvc exp rename {name} <new name>) and push that"
        )
    proc = subprocess.run(
        ["dvc", "exp", "push", remote, name], cwd=root, capture_output=True, text=True
    )
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        raise VersionError(f"dvc exp push {remote} {name}: {lines[-1] if lines else 'failed'}")
    publish(root)
    return remote


def _processed_dir(root: Path, rev: str) -> str | None:
    """The DVC hash of data/processed at `rev` (dvc.lock): what train used, else what etl made."""
    from ml_project.params import load_yaml

    proc = git(root, "show", f"{rev}:dvc.lock", check=False)
    if proc.returncode != 0:
        return None
    stages = (load_yaml(proc.stdout) or {}).get("stages", {})
    entries = [*(stages.get("train") or {}).get("deps", [])]
    entries += (stages.get("etl") or {}).get("outs", [])
    return next((e.get("md5") for e in entries if e.get("path") == "data/processed"), None)


class _Cache:
    """Reads processed data from the local DVC cache by the directory's hash."""

    def __init__(self, root: Path):
        from dvc.repo import Repo

        self.repo = Repo(str(root))
        self.odb = self.repo.cache.local

    def files(self, dir_md5: str) -> dict[str, Path] | None:
        path = Path(self.odb.oid_to_path(dir_md5))
        try:
            entries = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        files = {e["relpath"]: Path(self.odb.oid_to_path(e["md5"])) for e in entries}
        return files if all(p.is_file() for p in files.values()) else None

    def data_version(self, dir_md5: str) -> str | None:
        files = self.files(dir_md5)
        if files is None or "manifest.json" not in files:
            return None
        return json.loads(files["manifest.json"].read_text()).get("data_version")

    def find(self, data_version: str | None) -> dict[str, Path] | None:
        """Any processed-data directory in the cache whose manifest has `data_version` (the
        workspace's, say, or one restored by `dvc exp apply`, which no commit records)."""
        for dir_file in Path(self.odb.path).glob("*/*.dir"):
            oid = dir_file.parent.name + dir_file.name
            if data_version and self.data_version(oid) == data_version:
                return self.files(oid)
        return None

    def close(self) -> None:
        self.repo.close()


def experiments_by_version(root: Path, cache: _Cache) -> dict[str, list[str]]:
    """`{data_version: [experiment names]}` for the experiments whose data is in the cache."""
    found: dict[str, list[str]] = {}
    for name, rev in sorted(experiment_refs(root).items(), key=lambda kv: natural_key(kv[0])):
        dir_md5 = _processed_dir(root, rev)
        version = cache.data_version(dir_md5) if dir_md5 else None
        if version:
            found.setdefault(version, []).append(name)
    return found


def natural_key(name: str) -> tuple:
    """`t2` before `t10`."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


def table(repo: Path | str = ".", fetch_remote: bool = True) -> pd.DataFrame:
    """One row per label: hash, rows per split, feature count, source, task, the etl steps and
    code that made it, and the experiments that trained on it."""
    import pandas as pd

    root = repo_root(repo)
    if fetch_remote:
        fetch(root)
    cache = _Cache(root)
    try:
        trained = experiments_by_version(root, cache)
    finally:
        cache.close()
    rows = []
    for label, rec in labels(root).items():
        rows.append(
            {
                "label": label,
                "data_version": rec["data_version"],
                "rows": "/".join(str(rec["rows"].get(s, 0)) for s in ("train", "val", "test")),
                "features": rec["features"],
                "source": rec["source"],
                "task": rec["task"],
                "etl": _steps_text(rec.get("steps", [])),
                "params": _changed_params(rec.get("data", {}).get("data") or {}),
                "code": " ".join(f"{k}@{v[:7]}" for k, v in rec.get("code", {}).items()),
                "experiments": " ".join(trained.get(rec["data_version"], [])),
            }
        )
    columns = ["label", "data_version", "rows", "features", "source", "task", "etl", "params"]
    columns += ["code"]
    return pd.DataFrame(rows, columns=[*columns, "experiments"]).set_index("label")


def _changed_params(data: Mapping[str, Any]) -> str:
    """The `data:` params (besides the source) that differ from their defaults, or "-"."""
    from ml_project.params import DataParams

    defaults = DataParams().model_dump()
    changed = [
        f"{key}={value}"
        for key, value in data.items()
        if key != "source" and key in defaults and value != defaults[key]
    ]
    return " ".join(changed) or "-"


def _steps_text(steps: list) -> str:
    if not steps:
        return "-"
    return "; ".join(
        step if isinstance(step, str) else json.dumps(step, separators=(",", ":")) for step in steps
    )


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class EtlData:
    """One data version's splits (raw columns, as ETL wrote them) and manifest."""

    label: str | None
    data_version: str
    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    manifest: Manifest


def resolve(ref: str, repo: Path | str = ".") -> tuple[str | None, str | None, str | None]:
    """(label, data_version, experiment commit) for a label, hash prefix or experiment name."""
    root = repo_root(repo)
    known = labels(root)
    exps = experiment_refs(root)
    if ref not in known and ref not in exps:
        fetch(root)
        known = labels(root)
    if ref in known:
        return ref, known[ref]["data_version"], None
    if ref in exps:
        return None, None, exps[ref]
    if re.fullmatch(r"[0-9a-f]{4,16}", ref):
        matches = [(lb, r["data_version"]) for lb, r in known.items()]
        matches = [(lb, h) for lb, h in matches if h.startswith(ref)]
        if len(matches) == 1:
            return matches[0][0], matches[0][1], None
        if len(matches) > 1:
            shown = ", ".join(f"{lb} ({h})" for lb, h in matches)
            raise VersionError(f"data version '{ref}': ambiguous hash prefix ({shown})")
    valid = ", ".join(known) or "none yet"
    names = ", ".join(sorted(exps, key=natural_key)[:10]) or "none"
    raise VersionError(
        f"data version '{ref}': not a label ({valid}), a data_version hash prefix or an "
        f"experiment name ({names})"
    )


def load_etl(ref: str, repo: Path | str = ".") -> EtlData:
    """The train/val/test frames and manifest of a data version, from the DVC cache (or the
    remote, for an experiment's data), without touching the workspace.

    Args:
        ref: a label (`v3`), a prefix of its `data_version` hash, or an experiment name (`t5`).
        repo: any directory inside the project.
    """
    import pandas as pd

    from ml_project.data import Manifest

    root = repo_root(repo)
    label, version, rev = resolve(ref, root)
    cache = _Cache(root)
    try:
        files = None
        candidates = [rev] if rev else _revs_with(root, version, cache)
        for candidate in candidates:
            dir_md5 = _processed_dir(root, candidate)
            files = cache.files(dir_md5) if dir_md5 else None
            if files is None and dir_md5:
                files = _from_remote(cache, candidate)
            if files is not None:
                break
        if files is None and not rev:
            files = cache.find(version) or _label_from_remote(root, version, cache)
    finally:
        cache.close()
    if files is None:
        what = f"data version {label} ({version})" if label else f"the data of experiment '{ref}'"
        raise VersionError(
            f"{what} is in neither the DVC cache nor the DVC remote; run `dvc pull` (or "
            "`dvc exp pull <remote> <experiment>` for an experiment's data) and try again"
        )
    manifest = Manifest.from_dict(json.loads(Path(files["manifest.json"]).read_text()))
    frames = {s: pd.read_parquet(files[f"{s}.parquet"]) for s in ("train", "val", "test")}
    label = label or label_of(root, manifest.data_version)
    return EtlData(label, manifest.data_version, **frames, manifest=manifest)


def _revs_with(root: Path, version: str | None, cache: _Cache) -> list[str]:
    """Commits (HEAD, experiments) whose data is `version`: those the cache can tell first."""
    revs = ["HEAD", *experiment_refs(root).values()]
    found = []
    for rev in revs:
        dir_md5 = _processed_dir(root, rev)
        if dir_md5 and cache.data_version(dir_md5) == version:
            found.append(rev)
    return found


def _label_from_remote(root: Path, version: str | None, cache: _Cache) -> dict[str, Path] | None:
    """A labelled version whose data is not cached: fetch the processed data of the commits
    (HEAD, experiments) that the cache cannot tell, until one has `version`."""
    for rev in ["HEAD", *experiment_refs(root).values()]:
        dir_md5 = _processed_dir(root, rev)
        if not dir_md5 or cache.files(dir_md5) is not None:
            continue  # unknown, or cached (and then not this version: see _revs_with)
        files = _from_remote(cache, rev)
        if files is not None and cache.data_version(dir_md5) == version:
            return files
    return None


def _from_remote(cache: _Cache, rev: str) -> dict[str, Path] | None:
    """Fetch `data/processed` of `rev` from the DVC remote into the cache (not the workspace)."""
    import logging

    logging.disable(logging.WARNING)  # DVC's multi-line "missing cache files" warning
    try:
        cache.repo.fetch(targets=["data/processed"], revs=[rev])
    except Exception:  # no remote, unreachable, or the remote lacks it: all mean "not there"
        return None
    finally:
        logging.disable(logging.NOTSET)
    dir_md5 = _processed_dir(Path(cache.repo.root_dir), rev)
    return cache.files(dir_md5) if dir_md5 else None


# --------------------------------------------------------------------------- CLI


def print_table(frame: pd.DataFrame) -> None:
    import pandas as pd

    if frame.empty:
        print("no data versions yet: run the etl stage (dvc repro / dvc exp run)")
        return
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        print(frame.to_string())


@exits_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:  # one `error:` line, as for any input error
            raise VersionError(f"{self.prog}: {message}")

    parser = Parser(prog="python -m ml_project.versions")
    parser.add_argument(
        "command", nargs="?", default="list", choices=["list", "push", "show", "exp-push"]
    )
    parser.add_argument(
        "ref", nargs="?", help="show: a label, hash prefix or experiment; exp-push: an experiment"
    )
    parser.add_argument("--offline", action="store_true", help="do not fetch labels first")
    args = parser.parse_args(argv)
    if args.command == "show":
        if not args.ref:
            raise VersionError("show: name a label (v3), a hash prefix or an experiment (t5)")
        data = load_etl(args.ref)
        m = data.manifest
        rows = " / ".join(f"{k} {v}" for k, v in m.rows.items())
        print(
            f"{data.label or '-'} ({data.data_version}): {m.source}, task {m.task}, {rows} rows, "
            f"{len(m.features)} features, target '{m.target}'"
        )
        return 0
    if args.command == "exp-push":
        if not args.ref:
            raise VersionError("exp-push: name the experiment to push (t5)")
        remote = push_experiment(args.ref)
        print(f"pushed experiment {args.ref} and its data to '{remote}', and the data labels")
        return 0
    if args.command == "push":
        pushed = publish()
        print(f"published: {' '.join(pushed) or 'nothing new'}")
        return 0
    print_table(table(fetch_remote=not args.offline))
    return 0


if __name__ == "__main__":
    sys.exit(main())
