# mesoskube: the front door. `make demo` runs the main job, `make test` the tests.
# Both install what they need: a venv with the Python packages, the Go-built control plane
# binaries (cached per user under $(MESOSKUBE_CACHE), shared by every clone), Debian packages.

SHELL := /bin/bash
# Go lives here on these machines; a non-login shell (CI) may not have it on PATH.
export PATH := $(PATH):/usr/local/go/bin
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export MESOSKUBE_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/mesoskube
BIN := $(MESOSKUBE_CACHE)/bin
PYTEST_ARGS ?=

.PHONY: help venv binaries deps crds check-crds test test-unit test-cluster test-existing-cluster \
        test-e2e-installed lint demo demo-down bench compare-modes chaos clean

help:
	@echo "make demo    local control plane + master + Spark frameworks, live"
	@echo "make test    everything the CI runs (unit + cluster tests on a real API server)"
	@echo "make lint    ruff, actionlint, helm lint"
	@echo "make crds    regenerate crds/ (and the chart's copy) from the pydantic models"
	@echo "make bench   mesoskube vs kube-scheduler on kwok nodes (writes bench/results/)"
	@echo "make chaos   leader kills, apiserver/etcd restarts, node loss under load (bench/results/chaos.md)"

# Debian packages the scripts call (openssl for the apiserver's service-account keys).
deps:
	@command -v openssl >/dev/null || { apt-get update -qq && apt-get install -y -qq openssl; }
	@command -v go >/dev/null || { echo "Go 1.24+ is needed to build the control plane (it ships on these machines at /usr/local/go)"; exit 1; }

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip setuptools
	$(VENV)/bin/pip install -q -e '.[test,bench]'
	touch $@

venv: $(VENV)/.installed

# Rebuilt only when a pinned version in operator/mesoskube/cluster/versions.env changes.
binaries: deps
	hack/build-binaries.sh

crds: venv
	$(PY) -m mesoskube.api.crdgen --out crds
	mkdir -p charts/mesoskube/crds && cp crds/*.yaml charts/mesoskube/crds/

check-crds: venv
	$(PY) -m mesoskube.api.crdgen --check crds charts/mesoskube/crds

test: venv binaries
	$(PY) -m pytest tests $(PYTEST_ARGS)

test-unit: venv
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-cluster: venv binaries
	$(PY) -m pytest tests -m cluster $(PYTEST_ARGS)

# The same suite against an existing cluster (kind in CI): KUBECONFIG names it; kwok runs locally.
test-existing-cluster: venv binaries
	$(PY) -m pytest tests --existing-cluster $(PYTEST_ARGS)

# Against a master installed by the Helm chart (no in-process master).
test-e2e-installed: venv binaries
	$(PY) -m pytest tests/cluster --existing-cluster --installed-master $(PYTEST_ARGS)

lint: venv binaries
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(BIN)/actionlint-$$(. operator/mesoskube/cluster/versions.env && echo $$ACTIONLINT_VERSION) .github/workflows/*.yaml
	$(BIN)/helm-$$(. operator/mesoskube/cluster/versions.env && echo $$HELM_VERSION) lint --strict charts/mesoskube

demo: venv binaries
	$(PY) -m mesoskube.demo

demo-down: venv
	$(VENV)/bin/mesoskube cluster --name demo down

bench: venv binaries
	$(PY) -m bench.run

compare-modes: venv binaries
	$(PY) -m bench.compare_modes

# Leader SIGKILLs, kube-apiserver/etcd restarts, node deletions under a 1,000-task workload, 20 runs
# (CHAOS_ARGS="--runs 3 --tasks 300" for a shorter one); writes bench/results/chaos.{json,md}.
CHAOS_ARGS ?=
chaos: venv binaries
	$(PY) -m bench.chaos $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
