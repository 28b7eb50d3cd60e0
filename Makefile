# scalekeeper: every workflow is a target here; CI (.ci/run) and the GitHub workflow call the same ones.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
CRD := crds/scalingpolicies.scalekeeper.dev.yaml
CHART_CRD := manifests/chart/scalekeeper/crds/scalingpolicies.scalekeeper.dev.yaml

.PHONY: rules-check bench-shards loadtest bench-reaction bench-protection bench-keda prometheus-adapter bench-quality bench-quality-real bench-soak bench-scale bench-seen-memory demo help venv lint typecheck crd crd-check unit test cluster-up cluster-down cluster-status cluster-logs image lock

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml exporter/pyproject.toml
	@command -v python3 >/dev/null || { echo "python3 (>= 3.11) is required"; exit 1; }
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -e '.[dev]' -e ./exporter
	touch $@

venv: $(VENV)/.installed ## Python environment with the package and its test tools

lint: venv rules-check ## ruff (lint + format check), hadolint on the Dockerfiles, the alert rules
	$(VENV)/bin/ruff check operator tests bench hack exporter
	$(VENV)/bin/ruff format --check operator tests bench hack exporter
	hack/lint-dockerfile.sh

RULES := manifests/chart/scalekeeper/rules/scalekeeper-rules.yaml
rules-check: ## promtool check and unit tests (tests/rules/) of the alert rules; promtool built once, cached
	hack/promtool.sh check rules $(RULES)
	cd tests/rules && ../../hack/promtool.sh test rules *.yaml

typecheck: venv ## mypy --strict on the package, the benchmarks, the demo's watcher and the Celery exporter
	$(VENV)/bin/mypy operator/scalekeeper bench hack/demo_watch exporter/scalekeeper_celery_exporter

crd: venv ## regenerate the CRD from the pydantic model
	$(PY) -m scalekeeper.crdgen --write $(CRD)
	cp $(CRD) $(CHART_CRD)

crd-check: venv ## fail when crds/ drifted from the model
	$(PY) -m scalekeeper.crdgen --check $(CRD)

unit: venv ## unit and property tests (no cluster)
	$(VENV)/bin/pytest -q tests/unit

cluster-up: ## bring up the kind cluster (builds what it cannot pull), registry, Prometheus, Redis, metrics-server
	hack/cluster.sh up

cluster-down: ## delete the cluster, the registry container, and the dockerd we started (caches stay)
	hack/cluster.sh down

cluster-status: ## what is running
	hack/cluster.sh status

cluster-logs: ## collect kind, dockerd and registry logs into logs/
	hack/cluster.sh logs

demo: ## kind cluster + chart + demo app + its ScalingPolicy, load (locust on web), the tiers scaling live (out/demo.png)
	hack/demo.sh

bench-reaction: venv cluster-up image ## reaction time: metric queryable -> scale write visible (20 steps)
	$(PY) -m bench.reaction --steps 20 --interval 1

# The signals bench-keda steps: a Prometheus gauge, a Celery queue's Redis list, the gauge as a web tier's
# request rate. Each is a run of its own (own namespace, own operator process and lease, ~17 min); they run
# side by side, so the whole target stays near 20 min. Each run's output goes to
# out/reaction-peer-<signal>.log, printed at the end.
KEDA_SIGNALS ?= prometheus redis-list web

bench-keda: venv cluster-up image ## reaction time beside KEDA (built from its Go module, hack/keda.sh) per KEDA_SIGNALS, out/reaction-peer*.png
	hack/demo-image.sh >/dev/null && hack/exporter-image.sh >/dev/null
	hack/keda.sh build install
	mkdir -p out; pids=""; for signal in $(KEDA_SIGNALS); do \
	  PYTHONPATH=$(CURDIR)/operator $(PY) -m bench.reaction_peer --signal $$signal --steps 20 \
	    > out/reaction-peer-$$signal.log 2>&1 & pids="$$pids $$!"; \
	done; rc=0; for pid in $$pids; do wait $$pid || rc=$$?; done; \
	for signal in $(KEDA_SIGNALS); do echo "===== $$signal (out/reaction-peer-$$signal.log)"; \
	  cat out/reaction-peer-$$signal.log; done; \
	hack/keda.sh uninstall; exit $$rc

prometheus-adapter: venv cluster-up ## custom-metrics API for a plain HPA on queue depth (hack/prometheus-adapter.sh, built from its Go module): install, check end to end, leave installed
	hack/prometheus-adapter.sh build install check

bench-shards: venv cluster-up ## sharded replicas: a SIGKILLed one's policies taken over, a join's moves, a SIGTERM's handover (out/bench-shards.png)
	PYTHONPATH=$(CURDIR)/operator $(PY) -m bench.shards

bench-soak: venv cluster-up image ## soak: 500 policies, changing load, 30 min; RSS slope, CPU, decision gaps, errors
	$(PY) -m bench.soak --policies 500 --minutes 30

bench-quality: venv ## scaling quality on a real trace (fpp3 bank_calls), in the simulator, no cluster: 4 rules, aims, out/bench-quality.png
	$(PY) -m bench.quality

# bench-quality-real installs KEDA and the prometheus-adapter for its run and uninstalls them after; it needs the
# cluster up (make cluster-up) and builds the demo's and the exporter's images (SCALEKEEPER_DEMO_IMAGE picks a tag).
# BENCH_QUALITY_REAL_ARGS: more options, e.g. --objective-only (scalekeeper sized by targetWaitSeconds alone).
PROMETHEUS_ADAPTER_SH ?= hack/prometheus-adapter.sh
BENCH_QUALITY_REAL_ARGS ?=
bench-quality-real: venv ## a 10-min trace slice for real, 3 namespaces at once: scalekeeper, KEDA, plain HPA vs the simulator
	DEMO_IMAGE=$$(hack/demo-image.sh | tail -n 1) && hack/exporter-image.sh >/dev/null || exit 1; \
	hack/keda.sh build install && $(PROMETHEUS_ADAPTER_SH) build install && \
	  PYTHONPATH=$(CURDIR)/operator $(PY) -m bench.quality_real --demo-image "$$DEMO_IMAGE" $(BENCH_QUALITY_REAL_ARGS); rc=$$?; \
	$(PROMETHEUS_ADAPTER_SH) uninstall; hack/keda.sh uninstall; exit $$rc

# bench-protection builds the operator's, the demo's and the exporter's images (hack/lib.sh app_images) and
# installs them by the chart into a namespace of its own, deleted at the end; it needs the cluster up.
BENCH_PROTECTION_ARGS ?=
bench-protection: venv ## busy-worker protection on and off, for real (2 rounds): 60 s tasks on 3 of 6 workers scaled to 3, out/bench-protection.png
	PYTHONPATH=$(CURDIR)/operator $(PY) -m bench.protection $(BENCH_PROTECTION_ARGS)

# Policy counts for bench-scale (issue sizes: SIZES=100,1000,3000). Needs the cluster up and `make image`.
SIZES ?= 100,300
BENCH_SCALE_ARGS ?=
bench-scale: venv ## cost at scale: one operator, SIZES policies (100,300): CPU, RSS, API reads/writes, profile
	@test -x $(VENV)/bin/py-spy || echo "no py-spy: no profile (pip install -e '.[bench]')"
	PYTHONPATH=$(CURDIR)/operator $(PY) -m bench.scale --sizes $(SIZES) $(BENCH_SCALE_ARGS)

bench-seen-memory: venv ## what a policy only seen costs a replica's watch, in-process, no cluster: out/bench-seen-memory.png
	PYTHONPATH=$(CURDIR)/operator $(PY) -m bench.seen_memory

# loadtest builds the demo's and the load generator's images (hack/demo-image.sh, hack/loadtest-image.sh) and
# runs each leg in a namespace of its own, deleted after; it needs the cluster up. LOADTEST_ARGS=--short: a
# rehearsal (ramp 20 s, hold 40 s); --capacity 2:20:2: one web pod's capacity, a staircase of 30 s steps.
LOADTEST_ARGS ?=
loadtest: venv ## locust on kind, 1x -> 10x in 60 s held 3 min: web fixed, plain HPA, ScalingPolicy; out/loadtest.png
	set -o pipefail; DEMO_IMAGE=$$(hack/demo-image.sh | tail -n 1) && LOCUST_IMAGE=$$(hack/loadtest-image.sh | tail -n 1) \
	  || exit 1; \
	PYTHONPATH=$(CURDIR)/operator $(PY) -m bench.loadtest --demo-image "$$DEMO_IMAGE" \
	  --locust-image "$$LOCUST_IMAGE" $(LOADTEST_ARGS)

image: ## build the operator image and push it to the local registry
	hack/project-image.sh

# requirements.lock and exporter/requirements.lock: each image's runtime dependencies and the setuptools that
# builds its package, each with its hashes (the Dockerfile installs with --require-hashes). pip-compile keeps the current pins of whatever
# still fits pyproject.toml; LOCK_ARGS=--upgrade moves every pin to the newest release. It resolves for the
# venv's Python: keep that the image's (3.11).
LOCK_ARGS ?=
lock: venv ## re-pin the images' dependencies, with hashes (pip-compile; LOCK_ARGS=--upgrade for the newest)
	CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe \
	  --strip-extras --no-emit-index-url --no-emit-find-links --build-deps-for=wheel $(LOCK_ARGS) \
	  --output-file requirements.lock pyproject.toml
	cd exporter && CUSTOM_COMPILE_COMMAND="make lock" ../$(VENV)/bin/pip-compile --quiet --generate-hashes \
	  --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links --build-deps-for=wheel $(LOCK_ARGS) \
	  --extra image --output-file requirements.lock pyproject.toml

# The whole suite. The cluster comes up (a first run builds it for about 12 minutes) while the venv, lint, types
# and CRD drift are checked beside it. Leaves the cluster running for the next run; `make cluster-down` removes it.
test: ## everything: lint, types, CRD drift, unit, and cluster tests
	@hack/cluster.sh up & cluster=$$!; \
	$(MAKE) --no-print-directory venv lint typecheck crd-check; checks=$$?; \
	wait $$cluster; up=$$?; \
	if [ $$up -ne 0 ]; then echo "make test: hack/cluster.sh up failed (above)"; exit 1; fi; \
	if [ $$checks -ne 0 ]; then echo "make test: lint, types or CRD drift failed (above)"; exit 1; fi; \
	hack/test.sh
