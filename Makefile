# One entry point per task; each target installs what it needs from the lock file first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-fast dev bench bench-automl bench-quarantine lint lock clean

$(STAMP): requirements.lock requirements-bootstrap.txt build-constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements-bootstrap.txt
	$(BIN)/uv pip sync --quiet --python $(BIN)/python --require-hashes --build-constraints build-constraints.txt requirements.lock
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python run.py -mode demo

# Everything, the slow tests (real dagster-daemon, gunicorn, end-to-end loops) included; CI runs this.
test: $(STAMP)
	sh scripts/system-packages.sh
	$(BIN)/ruff check .
	$(BIN)/python -m pytest --durations=40

# The fast lane: every test not marked `slow` (docs/testing.md).
test-fast: $(STAMP)
	sh scripts/system-packages.sh
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -m "not slow"

dev: $(STAMP)
	$(BIN)/python run.py -mode dev

bench: $(STAMP)
	$(BIN)/python bench/ingest_history.py
	$(BIN)/python bench/training.py
	$(BIN)/python bench/drift.py
	$(BIN)/python bench/router.py
	$(BIN)/python bench/compiled_scorer.py
	$(BIN)/python bench/serving_peers.py
	$(BIN)/python bench/ab_analysis.py
	$(BIN)/python bench/object_store.py

# The registered AutoML model against a tuned LightGBM / TF-IDF + linear baseline on every zoo
# dataset (default search, about half an hour on 2 cores; docs/performance.md).
bench-automl: $(STAMP)
	$(BIN)/python bench/automl_vs_baseline.py --all

# How fast read_batch_file quarantines a hostile CSV (50 MB on one line, 1 GB) against a normal
# monthly batch and a plain read of the same bytes (docs/architecture.md "Bounded reading").
bench-quarantine: $(STAMP)
	$(BIN)/python bench/quarantine.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Re-resolve the lock after editing requirements.in (the only step that may pick new versions).
lock: $(STAMP)
	$(BIN)/uv pip compile requirements.in --python-version 3.11 --python-platform x86_64-manylinux_2_28 --generate-hashes -o requirements.lock

clean:
	rm -rf $(VENV) data .pytest_cache
