# kubelite: `make run` and `make test` do all set-up themselves, idempotently.
# `make run` installs only what running kubelite needs; `make test` adds the test tools.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA_DIR ?= /var/lib/kubelite
PYTEST_ARGS ?=
IMAGES_DIR := build/images
IMAGES_STAMP := $(IMAGES_DIR)/.built
DASHBOARD_DIR := build/dashboard
DASHBOARD_STAMP := $(DASHBOARD_DIR)/.built

# Debian packages. Running: the venv, gcc + libc6-dev (the offline images' static binaries),
# ip/iptables, runc, containerd, the CNI plugins, catatonit (pause) and busybox (images),
# NFS volumes: nfs-common (mount.nfs, for a kernel with an NFS client) and fuse3 (libfuse 3
# and fusermount3, for the userspace NFS client where the kernel has none).
# Tests only: a local OCI registry (docker-registry), skopeo to push to it, htpasswd
# (apache2-utils) for its basic auth, etcd, an NFS server (nfs-ganesha with its VFS backend).
# Browser tests of the dashboard: chromium (driven by Playwright through its executable_path).
# The dashboard's build needs node and npm: Debian's nodejs + npm, installed only when no npm
# is on the PATH (a NodeSource nodejs carries its own npm and conflicts with Debian's).
# No service of a package installed here is started.
RUN_APT_PACKAGES := python3-venv gcc libc6-dev iproute2 iptables runc containerd containernetworking-plugins catatonit busybox-static nfs-common fuse3
TEST_APT_PACKAGES := docker-registry skopeo apache2-utils etcd-server etcd-client nfs-ganesha nfs-ganesha-vfs chromium
NPM_APT_PACKAGES := nodejs npm

RUN_APT_STAMP := $(VENV)/.apt-run
TEST_APT_STAMP := $(VENV)/.apt-test
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test

.PHONY: setup setup-test run test test-unit test-e2e lint typecheck bench clean

setup: $(RUN_STAMP) $(IMAGES_STAMP) $(DASHBOARD_STAMP)

setup-test: setup $(TEST_STAMP)

$(RUN_APT_STAMP): scripts/setup-apt.sh Makefile
	@./scripts/setup-apt.sh "running kubelite" $(RUN_APT_PACKAGES)
	@mkdir -p $(VENV) && touch $@

$(TEST_APT_STAMP): scripts/setup-apt.sh Makefile
	@./scripts/setup-apt.sh "the tests" $(TEST_APT_PACKAGES)
	@mkdir -p $(VENV) && touch $@

$(BIN)/python: | $(RUN_APT_STAMP)
	@echo "kubelite: creating the virtualenv $(VENV) ($(PYTHON))"
	@$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): pyproject.toml $(RUN_APT_STAMP) | $(BIN)/python
	@echo "kubelite: installing kubelite and its Python dependencies into $(VENV)"
	@$(BIN)/pip install -q --upgrade pip
	@$(BIN)/pip install -q -e .
	@touch $@

$(TEST_STAMP): pyproject.toml $(RUN_STAMP) $(TEST_APT_STAMP)
	@echo "kubelite: installing the test tools (pytest, ruff, mypy, the kubernetes client) into $(VENV)"
	@$(BIN)/pip install -q -e '.[test]'
	@touch $@

# offline container images (pause, busybox, kuard) as OCI image-layout tars, built locally
$(IMAGES_STAMP): $(wildcard examples/kuard/*.c kubelite/images/*.py) | $(RUN_STAMP)
	@echo "kubelite: building the offline images (pause, busybox, kuard) into $(IMAGES_DIR)"
	@$(BIN)/python -m kubelite.images.build $(IMAGES_DIR)
	@touch $@

# the dashboard's front end (web/dashboard), bundled from the npm packages its package-lock pins
$(DASHBOARD_STAMP): scripts/build-dashboard.sh $(wildcard web/dashboard/src/* web/dashboard/package*.json) | $(RUN_APT_STAMP)
	@command -v npm >/dev/null || ./scripts/setup-apt.sh "the dashboard's build" $(NPM_APT_PACKAGES)
	@echo "kubelite: bundling the dashboard's front end into $(DASHBOARD_DIR)"
	@./scripts/build-dashboard.sh $(DASHBOARD_DIR)
	@touch $@

run: setup
	@echo "kubelite: starting kubelite server (data dir $(DATA_DIR))"
	$(BIN)/kubelite server --data-dir $(DATA_DIR)

test: setup-test
	$(BIN)/ruff check kubelite tests bench
	$(BIN)/mypy kubelite
	$(BIN)/pytest -q $(PYTEST_ARGS) tests

test-unit: setup-test
	$(BIN)/pytest -q $(PYTEST_ARGS) tests/unit

test-e2e: setup-test
	$(BIN)/pytest -q $(PYTEST_ARGS) tests/e2e

lint: setup-test
	$(BIN)/ruff check kubelite tests bench

typecheck: setup-test
	$(BIN)/mypy kubelite

bench: setup
	$(BIN)/python bench/api.py

clean:
	rm -rf $(VENV) build *.egg-info
