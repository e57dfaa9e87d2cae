# The one task runner: CI (.ci/run) and people call the same targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
IOTCTL := $(BIN)/iotctl
# When make began: `make run` reports the time to the first queryable reading from here.
MAKE_STARTED := $(shell date +%s.%N)
PYTEST_ARGS ?=

.PHONY: help bootstrap test-packages test-tools venv bench-venv up down status run test lint typecheck schemas-check unit bench soak faults faults-bridge jepsen clean screenshots

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

bootstrap: ## install missing system packages (Debian; as root)
	@scripts/bootstrap.sh

$(BIN)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing Python dependencies into $(VENV) ..." >&2
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

venv: $(BIN)/.installed ## create .venv with the project installed (editable)

# The stream processors bench.peers compares with pin their own client libraries (quixstreams:
# confluent-kafka < 2.13), so they get a venv of their own: .venv keeps the project's.
BENCH_VENV := .venv-bench
$(BENCH_VENV)/bin/.installed: pyproject.toml
	@test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	@echo "installing the benchmarks' extra (.[bench]: quixstreams, bytewax) into $(BENCH_VENV) ..." >&2
	@$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	@$(BENCH_VENV)/bin/python -m pip install --quiet -e '.[bench]'
	@touch $@

bench-venv: $(BENCH_VENV)/bin/.installed ## .venv-bench: the project plus the stream processors bench.peers compares with

up: bootstrap venv ## start Kafka, PostgreSQL, the gateway (devices' MQTT server) and a worker (idempotent)
	@$(IOTCTL) dev up

down: ## stop everything `make up` started
	@if [ -x $(IOTCTL) ]; then $(IOTCTL) dev down; else echo "nothing to stop (no .venv)"; fi

status: venv ## each service's endpoint and whether it answers
	@$(IOTCTL) dev status

run: bootstrap venv ## bring everything up with simulated devices and show where to look
	@IOT_SIMULATE=true $(IOTCTL) dev up && RUN_STARTED=$(MAKE_STARTED) scripts/run.sh

lint: venv ## ruff (lint and format check) and the layout's import contracts (lint-imports)
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .
	@$(BIN)/lint-imports --no-cache

typecheck: venv ## mypy --strict on every package
	@$(BIN)/mypy

unit: venv ## fast tests that need no services
	@$(BIN)/pytest tests/unit $(PYTEST_ARGS)

schemas-check: venv ## every schema parses; each subject's history is compatible under its mode
	@$(IOTCTL) schemas check

test-packages:
	@scripts/bootstrap.sh --tests

# The fault suite's delayed links need NetfilterQueue, which pip compiles against the
# libnetfilter_queue that `bootstrap.sh --tests` installs: so into .venv after it.
$(BIN)/.test-tools: $(BIN)/.installed | test-packages
	@echo "installing the fault suite's extra (.[faults]: NetfilterQueue) into $(VENV) ..." >&2
	@$(BIN)/python -m pip install --quiet -e '.[faults]'
	@touch $@

test-tools: test-packages $(BIN)/.test-tools ## install what only the tests need (Chromium for the operator pages' tests, iptables and NetfilterQueue for the fault suite's delayed links)

screenshots: test-tools venv ## PNGs of the operator pages from the running stack (`make run` first) into docs/images/
	@$(BIN)/python -m tests.screenshots

# The tests also cover bridge mode, so their stack runs Mosquitto beside the gateway.
test bench: export IOT_MOSQUITTO := true
test: test-tools up lint typecheck schemas-check ## bring everything up, lint, type-check, run every test
	@$(BIN)/pytest tests $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; exit $$rc

bench: up bench-venv ## run every benchmark (several minutes); JSON, charts and REPORT.md in bench/results/
	@$(BIN)/python -m bench.avro_codec
	@$(BIN)/python -m bench.stream_store
	@$(BIN)/python -m bench.stream_store --queries
	@$(BIN)/python -m bench.stream_worker
	@$(BIN)/python -m bench.gateway_ingest
	@$(BIN)/python -m bench.query_api
	@$(BIN)/python -m bench.peers
	@$(BIN)/python -m bench.report

SOAK_ARGS ?=
soak: bootstrap venv ## soak (~32 min, not in CI): 2k msg/s for 30 min on an isolated stack, are store size and RSS flat after the warm-up? bench/results/soak.*
	@$(BIN)/python -m bench.soak $(SOAK_ARGS)

FAULTS_SEED ?=
FAULTS_ARGS ?=
faults: test-tools venv ## fault suite (~10 min): each server and process on a host of its own; kill/pause/cut off gateways, step their clocks, PostgreSQL workers (a third joins), PostgreSQL, the Kafka cluster's leader and controller, fill the leader's and PostgreSQL's disks, under load on an isolated stack (direct mode), then check the guarantees and what each fault cost
	@$(BIN)/python -m tests.faults.run --store postgres --hosts $(if $(FAULTS_SEED),--seed $(FAULTS_SEED)) $(FAULTS_ARGS)

faults-bridge: bootstrap venv ## the fault suite in bridge mode, one SQLite worker (devices on Mosquitto, whose crashes lose data: reported as such)
	@$(BIN)/python -m tests.faults.run --mode bridge $(if $(FAULTS_SEED),--seed $(FAULTS_SEED)) $(FAULTS_ARGS)

SEED ?=
DURATION ?= 600
jepsen: test-tools venv ## a longer fault run (DURATION=600 s, SEED=...): more faults of every kind on the cluster, same checks
	@$(BIN)/python -m tests.faults.run --store postgres --hosts --duration $(DURATION) $(if $(SEED),--seed $(SEED)) $(FAULTS_ARGS)

clean: down ## stop services and delete .local/ (all local data)
	rm -rf .local
