# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck bench docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev,server,metrics]"
	touch $(STAMP)

## Serve the sample app on SQLite (migrated first) at http://127.0.0.1:8000 (OpenAPI at /schema).
run: $(STAMP)
	$(BIN)/litestar --app sample_project.app:app database upgrade --no-prompt
	$(BIN)/litestar --app sample_project.app:app run --host 127.0.0.1 --port 8000

## The whole test suite (needs PostgreSQL on 127.0.0.1:5432; see README).
test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy --strict litestar_db

## Benchmarks against advanced-alchemy, a hand-written session and raw asyncpg (~6 min; see benchmarks/README.md).
## Uses wrk when installed (as root it tries `apt-get install wrk`), else the Python load client.
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e ".[dev,server,metrics,bench]"
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	@command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
		&& apt-get install -y -q wrk >/dev/null 2>&1; } \
		|| echo "wrk is not installed: falling back to the Python load client (python -m benchmarks.load)"
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

## The documentation (English + Chinese, API reference) into docs/_build/html; every warning is an error.
DOCS_STAMP := $(VENV)/.docs-installed
$(DOCS_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e ".[dev,server,metrics,docs]"
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
