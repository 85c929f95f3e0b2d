# The project's verbs: `make help` lists them. Run from the repository root.
# Local names, ports and endpoints come from infra/local/settings.py (via `stack env`).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
UV_VERSION ?= 0.13.9
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed
PYTEST_ARGS ?=
DATA ?=
COUNTRIES ?= Peru
PORT ?= 8000
# The local AWS endpoint: moto, or localstack (installed on first use; Python 3.12+ needed).
AWS ?= moto
export AWS_EMULATOR := $(AWS)

# Spark's workers must run the venv's interpreter, like its driver.
export PYSPARK_PYTHON := $(CURDIR)/$(PY)
export PYSPARK_DRIVER_PYTHON := $(CURDIR)/$(PY)

LOCAL_ENV = eval "$$($(PY) -m infra.local.stack env)" &&
PIPELINE = $(PY) -m infra.local.pipeline --countries "$(COUNTRIES)"
API_URL = http://127.0.0.1:$(PORT)
SAMPLE_REQUEST = {"customer_id": 123, "country_code": "Peru", "last_order_ts": "2018-05-03 00:00:00", \
	"first_order_ts": "2017-05-03 00:00:00", "total_orders": 15, "segment_name": "recency_segment"}
SERVE = $(LOCAL_ENV) printf '%s\n' "API on $(API_URL) (Ctrl-C stops it)" \
	"  pages: $(API_URL)/search_voucher  $(API_URL)/selection  $(API_URL)/runs/page" && \
	printf "  try: curl -s %s/voucher -H 'Content-Type: application/json' -d '%s'\n" \
	"$(API_URL)" '$(SAMPLE_REQUEST)' && \
	exec $(PY) -m infra.local.serve --no-autoreload --host 127.0.0.1 --port $(PORT) --stage local
STAGE ?= dev
PACKAGE_ZIP = dist/$(STAGE)/app/deployment.zip
# The IaC security scanner, offline; its exceptions are justified in each template's Metadata.
# The app stack's template (packaged) is scanned by tests/unit/infra/test_lint.py.
CHECKOV = $(VENV)/bin/checkov --framework cloudformation --compact --quiet --skip-download
# Stack commands that must not build a venv just to stop things (e.g. from CI's exit trap).
IF_VENV = if [ ! -x $(PY) ]; then echo "no $(VENV): nothing to do"; exit 0; fi;

.PHONY: help venv lock unit java lint test up down status clean pipeline run serve reconcile faults package \
	deploy bench-api bench-pipeline bench-guarantees bench-reconciler bench chalice-project

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z-]*:.*## / {printf "  make %-15s %s\n", $$1, $$2}' \
		$(MAKEFILE_LIST)

# The venv is installed from requirements-dev.lock: every package of the development environment
# at the version CI tested, each checked against its hashes. uv installs it several times faster
# than pip; it comes from PyPI into the venv itself, and pip does the work when it cannot be had.
$(STAMP): requirements.txt requirements-dev.txt requirements-dev.lock
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11" \
		"(Debian: apt-get install python3.11 python3.11-venv)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	@if $(PY) -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION); then \
		echo "installing requirements-dev.lock with uv"; \
		$(VENV)/bin/uv pip install --quiet --python $(PY) --require-hashes -r requirements-dev.lock; \
	else \
		echo "uv not available: installing requirements-dev.lock with pip"; \
		$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes \
			-r requirements-dev.lock; \
	fi
	@touch $@

venv: $(STAMP) ## create .venv from requirements-dev.lock (again whenever a requirements file changes)

lock: venv ## re-resolve requirements-dev.txt into requirements-dev.lock (hashes included)
	$(VENV)/bin/uv pip compile requirements-dev.txt --generate-hashes --no-annotate \
		--python-version 3.11 --custom-compile-command "make lock" -o requirements-dev.lock

unit: venv ## tests/unit: the tests that start no service, Spark or browser, in seconds
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

java: ## check for Java (Spark needs it; Glue 5.0 runs Java 17)
	@command -v java >/dev/null || { echo "java not found: Spark needs Java 17" \
		"(Debian: apt-get install openjdk-17-jre-headless)" >&2; exit 1; }
	@java -version 2>&1 | grep -q 'version "17' || echo "warning: Glue 5.0 runs Java 17," \
		"this is: $$(java -version 2>&1 | head -n 1)" >&2

lint: venv ## ruff check, ruff format --check, mypy --strict (product code, infra), checkov (the templates)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(CHECKOV) -d infra/cloudformation --skip-path chalice-overlay.yaml

test: venv java lint up ## lint, stack up, every test (PYTEST_ARGS="-k name -x" to narrow); services stay up
	$(PY) -m pytest $(PYTEST_ARGS)

up: venv ## start (or reuse) the AWS endpoint (AWS=moto|localstack) and PostgreSQL, provision
	$(PY) -m infra.local.stack up

down: ## stop the services this checkout started; their data stays in .state/
	@$(IF_VENV) $(PY) -m infra.local.stack down

status: ## say whether the AWS endpoint and PostgreSQL answer
	@$(IF_VENV) $(PY) -m infra.local.stack status

clean: ## down, then delete .state/ (databases, sample data, logs)
	@$(IF_VENV) $(PY) -m infra.local.stack clean

pipeline: venv java up ## one run: make pipeline DATA=path [COUNTRIES=Peru|all|Peru,Latvia]
	@test -n "$(DATA)" || { echo "usage: make pipeline DATA=path.parquet" \
		"[COUNTRIES=Peru|all|Peru,Latvia]" >&2; exit 2; }
	$(PIPELINE) --data "$(DATA)"

run: venv java up ## the main job: stack up, sample data (or DATA=path) uploaded, the run it triggers, then serve
	COUNTRIES="$(COUNTRIES)" $(PY) -m infra.local.events start
	$(PY) -m infra.local.pipeline --trigger $(if $(DATA),--data "$(DATA)")
	@$(SERVE)

serve: venv up ## the API on 127.0.0.1 (PORT=8000 by default), serving what is published
	@$(SERVE)

faults: venv java up ## the long fault-injection run: FAULTS_ROUNDS (20) seeded rounds, figures into reports/faults/
	rm -rf reports/faults && mkdir -p reports/faults
	FAULTS_ROUNDS=$${FAULTS_ROUNDS:-20} FAULTS_REPORT_DIR=reports/faults $(PY) -m pytest \
		tests/stack/reliability/test_convergence_property.py -p no:randomly $(PYTEST_ARGS)

reconcile: venv up ## one reconciler tick now: every upload under incoming/ gets its run (the pump: every minute)
	$(LOCAL_ENV) $(PY) -m infra.local.events reconcile

# Further verbs (bench, eda, package) go below, each with a `## help` text.

package: venv ## build dist/ for STAGE (dev): chalice package + app template, the Glue files; sizes
	$(PY) -m infra.deploy.package --stage $(STAGE)

deploy: venv ## deploy STAGE to AWS: VPC_ID=vpc-.. PRIVATE_SUBNET_IDS=subnet-a,subnet-b (docs/deploy.md)
	$(PY) -m infra.deploy.deploy --stage $(STAGE)

chalice-project: venv ## save STAGE's values from its deployed data stacks: then `chalice deploy --stage STAGE`
	$(PY) -m infra.deploy.chalice_project --stage $(STAGE)

bench-api: package up ## API benchmark (warm p50/p99, cold start, zip size) into docs/benchmarks.md
	$(LOCAL_ENV) $(PY) -m benchmarks.bench_api --zip $(PACKAGE_ZIP) --write docs/benchmarks.md

bench-pipeline: venv java up ## job vs the floor, a Spark copy, pandas, pyarrow per size (BENCH_SIZES, BENCH_RUNS) into reports/, docs
	$(PY) -m benchmarks.bench_pipeline --write docs/benchmarks.md

bench-guarantees: venv java up ## the job against builds of it with each guarantee switched off, into reports/guarantees/
	$(PY) -m benchmarks.bench_pipeline --sizes $${BENCH_SIZES-1000000,10000000} --out reports/guarantees \
		--engines spark,floor,copy,one_pass,lean,without_strict_text,without_unicode_key \
		--command "make bench-guarantees"

bench-reconciler: venv up ## a reconciler tick's time and S3 requests at 1,000 and 10,000 objects, into docs
	$(LOCAL_ENV) $(PY) -m benchmarks.bench_reconciler --write docs/benchmarks.md

bench: bench-pipeline bench-api bench-reconciler ## every benchmark

.PHONY: eda
eda: venv java $(if $(filter s3://%,$(DATA)),up) ## profile DATA (default: the real history, else a sample) into reports/
	$(if $(filter s3://%,$(DATA)),$(LOCAL_ENV)) $(PY) -m explore $(if $(DATA),--data "$(DATA)")

.PHONY: schema
schema: venv up ## rewrite schema.sql: the schema as the migrations leave it (a fresh database's dump)
	$(PY) -m infra.local.schema
