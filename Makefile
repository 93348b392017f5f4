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

.PHONY: help venv binaries deps images install crds check-crds test test-unit test-cluster \
        test-existing-cluster test-e2e-installed lint demo demo-down bench compare-modes \
        bench-mesos-http bench-scale bench-steady chaos clean fuzz

help:
	@echo "make demo    local control plane + master + Spark frameworks, live"
	@echo "make test    everything the CI runs (unit + cluster tests on a real API server)"
	@echo "make lint    ruff, actionlint, helm lint"
	@echo "make crds    regenerate crds/ (and the chart's copy) from the pydantic models"
	@echo "make bench   mesoskube vs kube-scheduler on kwok nodes (writes bench/results/)"
	@echo "make bench-scale  issue 14: QPS 50 and unthrottled at 1,000/5,000 nodes, steady load, 50k-agent cycle (bench/results/SCALE.md)"
	@echo "make bench-steady  issue 14: the steady-load latency at 1,000 nodes, 3 samples beside kube-scheduler's"
	@echo "make bench-mesos-http  the same tasks through the CR path and the Mesos HTTP API (pymesos)"
	@echo "make chaos   leader kills, apiserver/etcd restarts, node loss under load (bench/results/chaos.md)"

# Debian packages the scripts call: openssl (the cluster's keys and certificates); containerd, runc,
# the CNI plugins, iptables and conntrack (real nodes); mmdebstrap, buildah, gcc and libc6-dev
# (images built offline: Debian base file systems, the Dockerfiles, the static pause program);
# chromium and its driver (the web UI's test in headless Chromium).
DEB_PACKAGES := openssl containerd runc containernetworking-plugins iptables conntrack mmdebstrap \
                buildah gcc libc6-dev chromium chromium-driver
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@command -v go >/dev/null || { echo "Go 1.24+ is needed to build the control plane (it ships on these machines at /usr/local/go)"; exit 1; }

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip setuptools
	$(VENV)/bin/pip install -q -e '.[test,bench,spark]'
	touch $@

venv: $(VENV)/.installed

# Rebuilt only when a pinned version in operator/mesoskube/cluster/versions.env changes.
binaries: deps
	hack/build-binaries.sh

# Images for real nodes, built offline into $(MESOSKUBE_CACHE)/images (rebuilt when inputs change):
# pause, task-base (busybox), mesoskube (the Dockerfile), spark (JRE 17 + pyspark).
images: venv deps
	$(PY) -m mesoskube.cluster.images

# The master installed by Helm, as a pod on a real node of the local cluster CLUSTER (default).
CLUSTER ?= default
install: venv binaries images
	$(VENV)/bin/mesoskube cluster --name $(CLUSTER) up --real-nodes 1
	$(VENV)/bin/mesoskube cluster --name $(CLUSTER) install-master

crds: venv
	$(PY) -m mesoskube.api.crdgen --out crds --policy charts/mesoskube/templates/unknown-fields.yaml
	mkdir -p charts/mesoskube/crds && cp crds/*.yaml charts/mesoskube/crds/

check-crds: venv
	$(PY) -m mesoskube.api.crdgen --check crds charts/mesoskube/crds --policy charts/mesoskube/templates/unknown-fields.yaml

test: venv binaries images
	$(PY) -m pytest tests $(PYTEST_ARGS)

test-unit: venv
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-cluster: venv binaries images
	$(PY) -m pytest tests -m cluster $(PYTEST_ARGS)

# The same suite against an existing cluster (kind in CI): KUBECONFIG names it; kwok runs locally.
test-existing-cluster: venv binaries
	$(PY) -m pytest tests --existing-cluster $(PYTEST_ARGS)

# The contract fuzzer, long: FUZZ_EXAMPLES cases per kind (Frameworks, answers, forged Tasks,
# MesosRoles) with a random seed, against a real API server and master; writes the tally per kind
# to bench/results/fuzz.json and fuzz.md.
FUZZ_EXAMPLES ?= 400
fuzz: venv binaries
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FUZZ_SEED=$${FUZZ_SEED:-random} FUZZ_OUT=$${FUZZ_OUT:-bench/results/fuzz.json} $(PY) -m pytest tests/cluster/test_fuzz.py -s -q -p no:cacheprovider --timeout=0 $(PYTEST_ARGS)

# The master's cluster tests against the master installed by the Helm chart as a pod on a real node
# of the local cluster (no in-process master); with KUBECONFIG=... --existing-cluster, any cluster.
test-e2e-installed: venv binaries images
	$(PY) -m pytest tests/cluster --installed-master $(PYTEST_ARGS)

lint: venv binaries
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q -p no:cacheprovider tests/unit/test_import_contract.py
	$(BIN)/actionlint-$$(. operator/mesoskube/cluster/versions.env && echo $$ACTIONLINT_VERSION) .github/workflows/*.yaml
	$(BIN)/helm-$$(. operator/mesoskube/cluster/versions.env && echo $$HELM_VERSION) lint --strict charts/mesoskube

demo: venv binaries images
	$(PY) -m mesoskube.demo

demo-down: venv
	$(VENV)/bin/mesoskube cluster --name demo down

# mesoskube vs kube-scheduler, then the same framework workload through the CR path and through
# the Mesos HTTP API (bench-mesos-http) at 1,000 kwok nodes.
bench: venv binaries
	$(PY) -m bench.run
	$(PY) -m bench.mesos_http

# The EMULATED workload on kwok nodes (coarse vs fine), then real Spark 4 on 2 real nodes (coarse vs
# the fine-grained equivalent; COMPARE_REAL=0 skips it, COMPARE_REAL_ARGS="--cluster NAME" picks the
# cluster). Results in bench/results/compare-modes{,-real}.{json,png}.
COMPARE_REAL ?= 1
COMPARE_REAL_ARGS ?=
compare-modes: venv binaries
	$(PY) -m bench.compare_modes
	if [ "$(COMPARE_REAL)" = 1 ]; then $(PY) -m bench.compare_modes_real $(COMPARE_REAL_ARGS); fi

# BENCH_SCALE_SIZES=1000,5000 BENCH_SCALE_MAX=10000 (larger clusters tried after); about 40 min
# unloaded. BENCH_BEFORE_CODE=<an operator/ tree> also runs that master at 1,000 nodes (before/after).
# Fake nodes get a 300 s heartbeat grace: on 2 shared cores kwok renews thousands of Leases late.
bench-scale: venv binaries
	MESOSKUBE_NODE_GRACE_SECONDS=$${MESOSKUBE_NODE_GRACE_SECONDS:-300} $(PY) -m bench.scale

bench-steady: venv binaries
	BENCH_ACCEPT=$${BENCH_ACCEPT:-by-name} MESOSKUBE_NODE_GRACE_SECONDS=$${MESOSKUBE_NODE_GRACE_SECONDS:-300} \
		$(PY) -m bench.steady_repeats

bench-mesos-http: venv binaries
	$(PY) -m bench.mesos_http

# Leader SIGKILLs, kube-apiserver/etcd restarts, node deletions under a 1,000-task workload, 20 runs
# (CHAOS_ARGS="--runs 3 --tasks 300" for a shorter one); writes bench/results/chaos.{json,md}.
CHAOS_ARGS ?=
chaos: venv binaries
	$(PY) -m bench.chaos $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
