"""The committed dvc.lock describes the committed code and params.

A stale lock makes a fresh clone's `dvc status` report code that no longer exists, and every
generated project inherits it. Outputs missing from the cache are expected in a clone.
"""

from __future__ import annotations

import json

import pytest
import yaml

from tests.helpers.project import ROOT, make_project, sh


def pipeline_outputs() -> set[str]:
    lock = yaml.safe_load((ROOT / "dvc.lock").read_text())
    return {out["path"] for stage in lock["stages"].values() for out in stage.get("outs", [])}


def drift(status: dict) -> dict[str, dict]:
    """Per stage, the deps and params `dvc status` reports as changed. Outputs aside: a clone
    lacks them, so a stage's output is also a `deleted` dependency of the next stage."""
    outputs = pipeline_outputs()
    found: dict[str, dict] = {}
    for stage, entries in status.items():
        for entry in entries:
            if not isinstance(entry, dict):  # "changed command", "always changed"
                found.setdefault(stage, {})[str(entry)] = "changed"
                continue
            for path, state in entry.get("changed deps", {}).items():
                if not (state == "deleted" and path in outputs):
                    found.setdefault(stage, {})[path] = state
    return found


def test_a_fresh_clone_has_no_modified_or_new_deps_or_params(tmp_path):
    if not (ROOT / "dvc.lock").is_file():
        pytest.skip("no dvc.lock: created with answers that change code or params; first run")
    repo = make_project(tmp_path / "repo")
    status = json.loads(sh("dvc status --json", repo).stdout or "{}")
    assert drift(status) == {}, (
        "dvc.lock does not match the committed code and params; run `dvc repro` and commit "
        f"dvc.lock: {json.dumps(drift(status))}"
    )
    outs = {
        state
        for entries in status.values()
        for entry in entries
        if isinstance(entry, dict)
        for state in entry.get("changed outs", {}).values()
    }
    assert outs <= {"not in cache", "deleted"}, status
