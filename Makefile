# leadflow — developer entry points. `make run` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: venv broker broker-management postgres run up down test test-pg test-e2e test-unit test-faults lint format bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

broker:
	@devtools/ensure-rabbitmq.sh

postgres:
	@devtools/ensure-postgres.sh

## The broker plus its management UI where it can be enabled (never fails for the UI).
broker-management:
	@devtools/ensure-rabbitmq.sh --management

## Services up, a sample job through the sandbox, results shown, services stopped.
run: venv broker-management
	$(PY) -m devtools.demo

## Every service in the background (pids and logs under var/); `make down` stops them.
up: venv broker-management
	$(PY) -m devtools.stack up

down: venv
	$(PY) -m devtools.stack down

## The whole test suite: unit tests and end-to-end tests against the real broker.
test: venv broker
	$(PY) -m pytest

## The suite again with every service on PostgreSQL (each test stack in a schema of its
## own): the end-to-end and fault tests, the ones whose services use the store. The unit
## tests run once, in `make test` (those of the PostgreSQL store already use it there).
## Run once too, as they test something else than the store and would only repeat: the
## broker's nodes and restarts (cluster, broker faults), the dashboard in Chromium, the CLI
## and the OpenAPI contract (what they read goes through the API queries the other tests
## run on PostgreSQL). Together the two passes stay within CI's 30 minutes.
TEST_PG_URL ?= postgresql://postgres@127.0.0.1:5432/test
test-pg: venv broker postgres
	LEADFLOW_STORE_URL=$(TEST_PG_URL) $(PY) -m pytest tests/e2e tests/faults \
		--ignore=tests/faults/test_cluster.py --ignore=tests/faults/test_broker.py \
		--ignore=tests/e2e/test_dashboard.py --ignore=tests/e2e/test_dashboard_credits.py \
		--ignore=tests/e2e/test_dashboard_upload.py --ignore=tests/e2e/test_cli.py \
		--ignore=tests/e2e/test_openapi_contract.py

test-unit: venv
	$(PY) -m pytest tests/unit

test-e2e: venv broker
	$(PY) -m pytest tests/e2e

## Kills, broker restarts, poison messages, dead destinations (a broker node of their own).
test-faults: venv broker
	$(PY) -m pytest tests/faults

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

## Throughput, latency and memory against the broker's own ceiling and a Celery peer;
## results in var/bench/<timestamp>.json and var/bench/latest.json, profiles in var/bench/profiles.
## Options: make bench BENCH_ARGS="--only e2e,celery --leads 5000" (python -m bench --help).
bench: $(BENCH_STAMP) broker
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache .hypothesis
