#!/usr/bin/env bash
# Print, as Markdown, the metrics and params of this commit's pipeline against BASE_REV's.
# Usage: bash .github/metrics-diff.sh BASE_REV   (in a clean checkout, with dvc on PATH)
#
# A base commit's metrics live in the DVC cache, which CI does not have, so the base pipeline
# runs here first, as an experiment: its metrics land in the local cache under an exp ref, even
# where the base's committed dvc.lock is stale. Unchanged stages come back from the run-cache.
set -euo pipefail
base=$(git rev-parse "${1:?usage: metrics-diff.sh BASE_REV}")
head=$(git rev-parse HEAD)
git checkout -q --detach "$base"
dvc exp run --quiet --name "base-${base:0:7}"
git checkout -q --force "$head"
dvc repro --quiet
diff=$(dvc exp diff "base-${base:0:7}" --md)
echo "## Metrics and params: this change against ${base:0:7}"
echo
echo "${diff:-No metric or param changed.}"
