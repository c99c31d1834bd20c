# Two commands: `make run` (set up + run the pipeline) and `make test`. `make help` lists all.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
PIP_INSTALL := --quiet --disable-pip-version-check --no-compile --no-deps

.DEFAULT_GOAL := help
.PHONY: help install run show promote test test-fast lint format bench bench-exp sweep lock clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version.split()[0]'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# The lock is complete (pip freeze --all), so nothing is resolved (--no-deps) and pip check
	@# proves it. pip is one busy core, most of it reading index pages: two pips, each half
	@# the pins, take 55 s instead of 150 s on 2 cores.
	awk '/^[A-Za-z0-9]/ && NR % 2 == 0' requirements.lock > $(VENV)/pins-1.txt
	awk '/^[A-Za-z0-9]/ && NR % 2 == 1' requirements.lock > $(VENV)/pins-2.txt
	$(BIN)/python -m pip install $(PIP_INSTALL) -r $(VENV)/pins-1.txt & one=$$!; \
		$(BIN)/python -m pip install $(PIP_INSTALL) -r $(VENV)/pins-2.txt; two=$$?; \
		wait $$one && test $$two = 0
	$(BIN)/python -m pip check
	@# Byte-compile on every core (pip compiles on one: 2 of the install's 4.5 min), less the
	@# packages' own test suites, which nothing imports (3,469 of 19,556 files). One torch test
	@# helper is Python 3.12 syntax, never imported (pip skips it too).
	$(BIN)/python -m compileall -q -j 0 -x '/tests/|torch/testing/_internal/py312_intrinsics' \
		"$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" >/dev/null
	$(BIN)/python -m pip install $(PIP_INSTALL) -e .
	@touch $@

install: $(VENV)/.installed ## Create .venv with the pinned versions

run: install ## Run the pipeline as a DVC experiment and print the metrics
	dvc exp run -n $$(python -m ml_project.sweeps next-name)
	dvc metrics show

show: install ## dvc exp show, narrowed: experiment, selection metric, varying params, best first
	python -m ml_project.show

promote: install ## Register an experiment's model: MLflow version + alias champion, git tag, releases/: make promote EXP=t5
	python -m ml_project.promote $(EXP)

test: install ## Lint, type-check and run the whole test suite (real DVC pipelines, sweeps, templates)
	ruff check .
	@# mypy (one core for ~75 s on a fresh clone) runs beside the suite; its report follows it.
	mypy > $(VENV)/mypy.out 2>&1 & types=$$!; \
		python -m pytest -n 2 --dist loadfile --no-loadscope-reorder; tests=$$?; \
		wait $$types; typed=$$?; echo "mypy:"; cat $(VENV)/mypy.out; \
		test $$tests = 0 && test $$typed = 0

test-fast: install ## The edit loop: unit and contract tests, no real pipelines (-m "not slow")
	python -m pytest -m "not slow" -q -n 2

lint: install ## ruff lint + format check, mypy over src/
	ruff check .
	ruff format --check .
	mypy

format: install ## Format and fix imports
	ruff check --fix .
	ruff format .

bench: install ## Benchmarks (see benchmarks/)
	python benchmarks/pipeline.py

bench-exp: install ## One experiment against DVC's own floor, and -j 2 against -j 1 (~5 min)
	python benchmarks/experiment.py

sweep: install ## Run a preset of sweeps.yaml on the DVC queue: make sweep PRESET=hgb-lr JOBS=2
	python -m ml_project.sweeps run $(PRESET) -j $(or $(JOBS),2)

optimize: install ## Optuna search of sweeps.yaml: make optimize PRESET=hgb-tpe TRIALS=40 JOBS=2
	python -m ml_project.search $(PRESET) -j $(or $(JOBS),2) $(if $(TRIALS),--trials $(TRIALS))

lock: ## Re-resolve the pinned versions from pyproject.toml into requirements.lock
	rm -rf /tmp/ml-project-lock && $(PYTHON) -m venv /tmp/ml-project-lock
	/tmp/ml-project-lock/bin/pip install --quiet -e ".[dev]"
	{ sed -n '1,2p' requirements.lock; /tmp/ml-project-lock/bin/pip freeze --all --exclude-editable | grep -v '^pip=='; } > requirements.lock.new
	mv requirements.lock.new requirements.lock

clean: ## Remove the virtualenv and pipeline outputs (not the DVC cache)
	rm -rf $(VENV) data/processed models evaluation export dvclive
