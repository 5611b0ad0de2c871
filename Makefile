# Developer entry points. `make run` starts the whole stack locally; `make test` / `make lint`
# are what CI runs (.ci/run). Everything runs from .venv, created on first use.

# python3.11 is what production runs; python3 keeps a machine without it usable.
PYTHON ?= $(if $(shell command -v python3.11 2>/dev/null),python3.11,python3)
VENV := .venv
BIN := $(VENV)/bin
# Reinstall only when the dependency pins change, not on every `make test`.
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
OPENAPI_OUT ?= docs/openapi.json

.PHONY: install run test lint format openapi bench soak clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -c requirements.lock -e '.[dev]'
	touch $(STAMP)

# make execs the recipe without a shell (keep it free of shell syntax), so `dev` shares make's
# process group; what each signal does to the stack: docs/architecture.md (the dev runner).
run: install
	$(BIN)/hosted-sessions dev

# ensure-browser installs Chromium for the browser tests when it can; only in CI does it fail
# without one (a skipped browser test there would hide a broken page).
test: install
	bash scripts/ensure-browser
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The performance suite (bench/run.py; README "Performance"): real API, worker, echo, webhook
# receiver and stream consumer processes on the machine's Redis (database 9, own key prefixes,
# deleted afterwards), about 15 minutes on 2 cores (a million sessions are seeded and the peak
# Redis memory is a few GB). BENCH_ARGS=--smoke for a seconds-long run, or e.g.
# BENCH_ARGS=--phases=growth for one phase; figures in bench/out/results.json, plot in
# bench/out/latency-vs-load.png (drawn without plotting libraries: nothing extra to install).
BENCH_ARGS ?=
bench: install
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# The soak (soak/run.py; README "Reliability"): ~10 min of mixed traffic against a real API
# and two real workers on the machine's Redis (database 9, own key prefix, deleted after) while
# the workers are killed at random and the webhook receiver fails and stalls; then drain, the
# invariants checker, a log scan and the fuzz suite (HS_FUZZ_EXAMPLES=SOAK_FUZZ_EXAMPLES).
# At most 20 minutes; SOAK_SECONDS=120 shortens the traffic, SOAK_ARGS=--smoke is ~60 s.
# Figures in soak/out/summary.json; exits non-zero on any violation.
SOAK_ARGS ?=
# Examples per operation and mode: 60 is about 3,000 cases in all (~150 s here).
SOAK_FUZZ_EXAMPLES ?= 60
soak: install
	$(BIN)/python -m soak.run --fuzz-examples $(SOAK_FUZZ_EXAMPLES) $(SOAK_ARGS)

# Through a temp file, so a failed run never leaves a truncated schema behind.
openapi: install
	$(BIN)/hosted-sessions openapi > $(OPENAPI_OUT).tmp
	mv $(OPENAPI_OUT).tmp $(OPENAPI_OUT)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
