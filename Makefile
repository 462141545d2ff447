# Every routine task. `make test` and `make demo` set everything up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
CDK := node_modules/.bin/cdk

.PHONY: setup browser test unit component infra-test e2e lint format synth deploy cfn-lint demo up bench-coldstart bench-local bench-fuzz bench-sync clean

$(VENV_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[infra,local,dev]'
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup: $(VENV_STAMP) $(NODE_STAMP) browser

# Headless Chromium for the console's browser test: Debian's package, installed once (as root).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

## Lint, type-check, then every test layer (unit, component, infra, end-to-end).
test: setup lint
	$(PY) -m pytest

unit: setup
	$(PY) -m pytest tests/unit
component: setup
	$(PY) -m pytest tests/component
infra-test: setup
	$(PY) -m pytest tests/infra
e2e: setup
	$(PY) -m pytest tests/e2e

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## Synthesize the CloudFormation template offline (stage from cdk.json, or STAGE=prod).
synth: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(CDK) synth --quiet $(if $(STAGE),-c stage=$(STAGE))
	$(MAKE) --no-print-directory cfn-lint

## Deploy to your AWS account (credentials from the standard chain): make deploy STAGE=prod
deploy: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(CDK) deploy $(if $(STAGE),-c stage=$(STAGE))

cfn-lint: setup
	$(VENV)/bin/cfn-lint cdk.out/*.template.json

## The whole system on this machine: runs the demo scenario and checks every expectation.
demo: setup
	$(PY) -m junction_local.demo

## The whole system on this machine, kept running for your own webhooks (Ctrl-C stops it).
up: setup
	$(PY) -m junction_local.up

## Cold start as deployed; exits 1 if a function is over its budget. More options: make bench-coldstart ARGS="--runs 11"
bench-coldstart: setup
	$(PY) benchmarks/coldstart.py --check $(ARGS)

bench-local: setup
	$(PY) benchmarks/local_throughput.py $(ARGS)

## The ingress fuzz properties at volume (make test runs a small budget): make bench-fuzz ARGS="--examples 100000"
bench-fuzz: setup
	$(PY) benchmarks/fuzz_ingress.py $(ARGS)

## Stock sync at scale: 100,000 SKUs resynced to Shopify and Allegro, then 1,000 ERP changes a minute for 5 min (~20 min).
bench-sync: setup
	$(PY) benchmarks/sync_bench.py $(ARGS)

clean:
	rm -rf cdk.out .build .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov
