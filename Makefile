# Poseidon Hub — the two commands a new machine needs: `make run` and `make test`.
# Everything else here is what those two are made of.
SHELL := /bin/bash
.DEFAULT_GOAL := help

ROOT := $(CURDIR)
VENV := $(ROOT)/.venv
PY := $(VENV)/bin/python
STACK := infra/local/stack.sh
KAFKA_VERSION := $(shell sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' infra/local/pom.xml)
KAFKA_LIB := .stack/kafka/lib-$(KAFKA_VERSION)
S3PROXY_VERSION := $(shell sed -n 's:.*<s3proxy.version>\(.*\)</s3proxy.version>.*:\1:p' infra/local/s3proxy-pom.xml)
S3PROXY_LIB := .stack/s3proxy/lib-$(S3PROXY_VERSION)
PROTOS := $(wildcard schemas/protos/*.proto)
PROTO_OUT := $(PROTOS:.proto=_pb2.py)
PYTEST_ARGS ?=
# The chart's validation (tests/unit/test_helm_chart.py): helm and kubeconform built from the Go module
# proxy, and kubeconform's Kubernetes schemas made offline from the OpenAPI document of the k8s.io/kubernetes module.
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
HELM_VERSION := v4.3.2
KUBECONFORM_VERSION := v0.8.0
K8S_VERSION := 1.37.2
NODE_CLIENTS := tests/standins/node/node_modules/.installed
CHART_TOOLS := .stack/bin/.helm-$(HELM_VERSION) .stack/bin/.kubeconform-$(KUBECONFORM_VERSION) .stack/k8s-schemas/v$(K8S_VERSION)/.complete
# Jaeger (the tracing test's trace store and `make jaeger`): built from the Go module proxy, its version pinned by
# the tool module infra/jaeger/go.mod (a `tool` directive), so go.sum checks every module it is built from.
JAEGER := .stack/bin/jaeger
JAEGER_UI_PORT ?= 16686
JAEGER_OTLP_PORT ?= 4317

.PHONY: help setup protos up down logs run stop prometheus test test-unit test-integration test-attacks test-chaos bench bench-smoke lint format clean status docs jaeger

help:
	@echo "make run     start Kafka + PostgreSQL + the platform, print where everything listens"
	@echo "make test    set up from nothing, start the stack, run every test"
	@echo "make stop    stop the platform processes   | make down  also stop Kafka + PostgreSQL"
	@echo "make bench   benchmarks against raw Kafka/PostgreSQL (results in bench/results/)"
	@echo "make bench-smoke  every benchmark stage with tiny sizes (CI: fails when a benchmark is broken; ~2 min)"
	@echo "make test-attacks  fuzzers, forged tokens, cross-tenant probes, ingress abuse (summary in bench/results/attacks.md)"
	@echo "make test-chaos  kill processes, restart Kafka/PostgreSQL (a private stack), fail the outside systems;"
	@echo "                 check nothing is lost or doubled (report in bench/results/chaos.md; ~12 min)"
	@echo "make prometheus  Prometheus on :9090 scraping the running platform, with the alert rules"
	@echo "make jaeger  Jaeger on 127.0.0.1 (OTLP :4317, query API :16686) for POSEIDON_OTLP_ENDPOINT (README, Tracing)"
	@echo "make logs    tail the stack and platform logs | make lint | make format"

## setup: virtualenv + project, Kafka jars from Maven Central, PostgreSQL from Debian, generated gRPC code
setup: $(VENV)/.installed $(KAFKA_LIB)/.complete $(S3PROXY_LIB)/.complete .stack/.postgres-installed .stack/.chromium-installed .stack/.prometheus-installed $(PROTO_OUT) $(CHART_TOOLS) $(JAEGER) $(NODE_CLIENTS)

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

$(KAFKA_LIB)/.complete: infra/local/pom.xml
	@command -v java >/dev/null || { echo "Java 17+ is required to run Kafka"; exit 1; }
	@command -v mvn >/dev/null || { echo "Maven is required to fetch Kafka from Maven Central"; exit 1; }
	mkdir -p $(KAFKA_LIB)
	mvn -q -B -f infra/local/pom.xml dependency:copy-dependencies -DoutputDirectory=$(ROOT)/$(KAFKA_LIB) -DincludeScope=runtime
	touch $@

$(S3PROXY_LIB)/.complete: infra/local/s3proxy-pom.xml
	infra/local/s3.sh setup

.stack/.postgres-installed:
	@mkdir -p .stack
	@if ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then echo "PostgreSQL server found"; \
	else echo "installing PostgreSQL from Debian packages"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; \
	  else sudo apt-get update -q && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; fi; fi
	touch $@

# Debian's Chromium for the dashboard's browser test (Playwright drives it; it never downloads a browser).
.stack/.chromium-installed:
	@mkdir -p .stack
	@if [ -x /usr/bin/chromium ]; then echo "Chromium found"; \
	else echo "installing Chromium from Debian packages"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	  else sudo apt-get update -q && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; fi; fi
	touch $@

# Debian's Prometheus: promtool tests the alert rules in `make test`; `make prometheus` scrapes the running platform.
.stack/.prometheus-installed:
	@mkdir -p .stack
	@if command -v promtool >/dev/null && [ -x /usr/bin/prometheus ]; then echo "Prometheus found"; \
	else echo "installing Prometheus from Debian packages"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus; \
	  else sudo apt-get update -q && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus; fi; fi
	touch $@

# Go's build cache (~/.cache/go-build) makes a rebuild after `make clean` take seconds.
.stack/bin/.helm-$(HELM_VERSION):
	@mkdir -p .stack/bin
	GOBIN=$(ROOT)/.stack/bin $(GO) install helm.sh/helm/v4/cmd/helm@$(HELM_VERSION)
	touch $@

.stack/bin/.kubeconform-$(KUBECONFORM_VERSION):
	@mkdir -p .stack/bin
	GOBIN=$(ROOT)/.stack/bin $(GO) install github.com/yannh/kubeconform/cmd/kubeconform@$(KUBECONFORM_VERSION)
	touch $@

$(JAEGER): infra/jaeger/go.mod infra/jaeger/go.sum
	@mkdir -p .stack/bin
	cd infra/jaeger && $(GO) build -o $(ROOT)/$(JAEGER) github.com/jaegertracing/jaeger/cmd/jaeger
	touch $@

## Jaeger in the foreground (in-memory; OTLP/gRPC on :$(JAEGER_OTLP_PORT), its HTTP query API on :$(JAEGER_UI_PORT)):
## run the platform with POSEIDON_OTLP_ENDPOINT=http://127.0.0.1:$(JAEGER_OTLP_PORT), then read /api/traces/<trace id>
## (the Go module carries no built UI: README, Tracing)
jaeger: $(JAEGER)
	JAEGER_OTLP_PORT=$(JAEGER_OTLP_PORT) JAEGER_QUERY_PORT=$(JAEGER_UI_PORT) $(JAEGER) --config infra/jaeger/config.yaml

.stack/k8s-schemas/v$(K8S_VERSION)/.complete: infra/helm/k8s_schemas.py
	@mkdir -p $(@D)
	dir=$$($(GO) mod download -json k8s.io/kubernetes@v$(K8S_VERSION) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$$/\1/p') \
	  && python3 infra/helm/k8s_schemas.py "$$dir/api/openapi-spec/swagger.json" $(@D)
	touch $@

# Vendors' own client libraries run against the stand-ins (@botpress/chat: tests/integration/test_botpress_chat_library.py),
# pinned by package-lock.json; needs Node.js 20+ and npm.
$(NODE_CLIENTS): tests/standins/node/package.json tests/standins/node/package-lock.json
	@command -v npm >/dev/null || { echo "Node.js 20+ and npm are required for the stand-in client tests"; exit 1; }
	npm ci --prefix tests/standins/node --no-audit --no-fund --loglevel=error
	touch $@

schemas/protos/%_pb2.py: schemas/protos/%.proto $(VENV)/.installed
	$(PY) -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. $<

protos: $(PROTO_OUT)

## the local stack (Kafka KRaft + PostgreSQL), idempotent
up: setup
	$(STACK) up
	infra/local/s3.sh up

down: stop
	infra/local/s3.sh down
	$(STACK) down

status:
	@$(STACK) status
	@infra/local/s3.sh status

logs:
	@$(STACK) logs
	@infra/local/s3.sh logs

## the platform
run: up
	infra/local/platform.sh start
	@echo "platform running; 'make logs' to follow, 'make stop' to stop it, 'make down' to stop everything"

stop:
	@infra/local/platform.sh stop

## tests: unit (no broker) and integration (real Kafka + PostgreSQL started above)
test: up
	$(PY) -m pytest tests -q -p no:cacheprovider --ignore=tests/chaos $(PYTEST_ARGS)

test-unit: setup
	$(PY) -m pytest tests/unit -q -p no:cacheprovider $(PYTEST_ARGS)

test-integration: up
	$(PY) -m pytest tests/integration -q -p no:cacheprovider $(PYTEST_ARGS)

# Attacks (also part of `make test`): this target writes the summary to bench/results/attacks.md and .json.
test-attacks: up
	POSEIDON_ATTACK_REPORT=1 $(PY) -m pytest tests/attacks -q -p no:cacheprovider $(PYTEST_ARGS)

# Chaos: SIGKILLs, broker and database restarts (on a private stack of its own), failing outside systems.
# Seeded (POSEIDON_CHAOS_SEED repeats a run); not part of `make test`.
test-chaos: up
	POSEIDON_CHAOS_REPORT=1 $(PY) -m pytest tests/chaos -q -s -p no:cacheprovider $(PYTEST_ARGS)

bench: up
	$(PY) -m bench.run $(BENCH_ARGS)

# Every stage with tiny sizes: proves the benchmark still runs (figures not judged or recorded).
bench-smoke: up
	$(PY) -m bench.run --smoke

## Prometheus on 127.0.0.1:9090 scraping every role of the running platform (`make run`), with the alert rules; Ctrl-C stops it
prometheus: setup
	@mkdir -p .stack/prometheus
	$(PY) -m poseidon.cli prometheus-config --rules $(ROOT)/infra/prometheus/rules.yml > .stack/prometheus/prometheus.yml
	promtool check config .stack/prometheus/prometheus.yml
	prometheus --config.file=.stack/prometheus/prometheus.yml --storage.tsdb.path=.stack/prometheus/data \
	  --web.listen-address=127.0.0.1:9090

docs: setup
	$(PY) -m poseidon.docs
	$(PY) -m poseidon.deploy

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean: down
	rm -rf .stack .run .state $(VENV)
