# Two front doors: `make demo` and `make test`. Everything installs into .venv, pinned by hash from the
# lock files (`make lock` writes them with uv from pyproject.toml): `make demo` installs what the product
# needs, `make test` adds the test tools.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
DEMO_DB := sqlite:///./tokenwise-demo.db
DEMO_PERSON := alex.rivera@example.com

.PHONY: demo test test-fast lint typecheck pytest audit bench lock clean

$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet uv==$(UV_VERSION)

# The product alone (the demo), then the product and its test tools (the suite); each pinned by hash, and
# compiled to bytecode as it installs, so that no command's first run pays for compiling its libraries.
$(VENV)/.installed-product: requirements.lock pyproject.toml $(BIN)/uv
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python --require-hashes -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $@

$(VENV)/.installed-dev: requirements-dev.lock $(VENV)/.installed-product
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python --require-hashes -r requirements-dev.lock
	@touch $@

demo: $(VENV)/.installed-product
	rm -f ./tokenwise-demo.db
	DATABASE_URL=$(DEMO_DB) $(BIN)/tokenwise db upgrade
	DATABASE_URL=$(DEMO_DB) $(BIN)/tokenwise seed --people 40 --teams 4 --weeks 9 --seed 7
	DATABASE_URL=$(DEMO_DB) $(BIN)/tokenwise report --person $(DEMO_PERSON)
	DATABASE_URL=$(DEMO_DB) $(BIN)/tokenwise report --team platform
	DATABASE_URL=$(DEMO_DB) $(BIN)/tokenwise console --as $(DEMO_PERSON)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff format --check bot handlers storage tests
	$(BIN)/ruff check bot handlers storage tests

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

pytest: $(VENV)/.installed-dev
	$(BIN)/pytest

# The edit loop: everything but the benchmarks at tiny scale, load, process and scale tests (marker `slow`).
test-fast: $(VENV)/.installed-dev
	$(BIN)/pytest -m "not slow"

# Known vulnerabilities in the installed environment, from PyPI's advisory data (AUDIT_ARGS='-s osv' asks
# OSV instead). Not part of `make test`: it needs an index that serves advisories, which some mirrors do
# not. Exit 0: audited, nothing found; 1: vulnerabilities found (listed); 2: some package could not be
# audited (one line says which and why). An accepted finding is ignored with `--ignore-vuln ID` here, with
# the reason in docs/security.md.
AUDIT_ARGS ?=
audit: $(VENV)/.installed-dev
	@out=$$($(BIN)/pip-audit --skip-editable --progress-spinner off $(AUDIT_ARGS) 2>&1); rc=$$?; \
	if echo "$$out" | grep -qE "Found [0-9]+ known vulnerabilit"; then echo "$$out"; exit 1; fi; \
	if [ $$rc -eq 0 ] && ! echo "$$out" | grep -q "could not be audited"; then echo "$$out"; exit 0; fi; \
	why=$$(echo "$$out" | grep -m1 -o "could not be audited: .*" || echo "$$out" | tail -n 1); \
	echo "make audit: failed, some package could not be audited ($$why): the advisory service is not answering here; run it where PyPI's advisories are reachable, or with AUDIT_ARGS='-s osv'"; exit 2

test: lint typecheck pytest

# Re-pin every dependency (after a change to pyproject.toml): hashed requirements for Python 3.11+.
lock: $(BIN)/uv
	$(BIN)/uv pip compile pyproject.toml --universal --generate-hashes --no-header -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --universal --extra dev --generate-hashes --no-header -o requirements-dev.lock

# The benchmark suite behind docs/performance.md (minutes at full size; BENCH_SCALE=0.01 for a smoke run).
# BENCH_ARGS passes options, e.g. BENCH_ARGS="--db sqlite --only slash,ingest".
# Bytecode first, as pip writes it when it installs a package: with PYTHONDONTWRITEBYTECODE set (as on this
# project's machines) every command would otherwise compile its libraries again at each start.
bench: $(VENV)/.installed-dev
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib bot handlers storage tests > /dev/null
	$(BIN)/python -m tests.benchmarks.bench_suite $(BENCH_ARGS)

clean:
	rm -rf $(VENV) tokenwise-demo.db .pytest_cache .mypy_cache .ruff_cache
