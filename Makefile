# Two front doors: `make demo` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_DB := sqlite:///./tokenwise-demo.db
DEMO_PERSON := alex.rivera@example.com

.PHONY: demo test lint typecheck pytest audit bench clean

$(BIN)/tokenwise: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

demo: $(BIN)/tokenwise
	rm -f ./tokenwise-demo.db
	DATABASE_URL=$(DEMO_DB) $(BIN)/tokenwise db upgrade
	DATABASE_URL=$(DEMO_DB) $(BIN)/tokenwise seed --people 40 --teams 4 --weeks 9 --seed 7
	DATABASE_URL=$(DEMO_DB) $(BIN)/tokenwise report --person $(DEMO_PERSON)
	DATABASE_URL=$(DEMO_DB) $(BIN)/tokenwise report --team platform
	DATABASE_URL=$(DEMO_DB) $(BIN)/tokenwise console --as $(DEMO_PERSON)

lint: $(BIN)/tokenwise
	$(BIN)/ruff format --check bot handlers storage tests
	$(BIN)/ruff check bot handlers storage tests

typecheck: $(BIN)/tokenwise
	$(BIN)/mypy

pytest: $(BIN)/tokenwise
	$(BIN)/pytest

# Known vulnerabilities in the installed environment (PyPI's advisory data). An accepted finding is
# ignored with `--ignore-vuln ID` here, with the reason in docs/security.md.
audit: $(BIN)/tokenwise
	$(BIN)/pip-audit --skip-editable --progress-spinner off

test: lint typecheck audit pytest

# The benchmark suite behind docs/performance.md (minutes at full size; BENCH_SCALE=0.01 for a smoke run).
# BENCH_ARGS passes options, e.g. BENCH_ARGS="--db sqlite --only slash,ingest".
bench: $(BIN)/tokenwise
	$(BIN)/python -m tests.benchmarks.bench_suite $(BENCH_ARGS)

clean:
	rm -rf $(VENV) tokenwise-demo.db .pytest_cache .mypy_cache .ruff_cache
