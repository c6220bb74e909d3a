# kubelite: `make run` and `make test` do all set-up themselves, idempotently.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
APT_STAMP := $(VENV)/.apt
DATA_DIR ?= /var/lib/kubelite
APT_PACKAGES := python3-venv python3-dev gcc iproute2 openssl runc containerd containernetworking-plugins catatonit busybox-static iptables docker-registry skopeo apache2-utils
PYTEST_ARGS ?=
IMAGES_DIR := build/images
IMAGES_STAMP := $(IMAGES_DIR)/.built

.PHONY: setup run test test-unit test-e2e lint typecheck bench clean

setup: $(STAMP) $(IMAGES_STAMP)

# offline container images (pause, busybox, kuard) as OCI image-layout tars, built locally
$(IMAGES_STAMP): $(STAMP) $(wildcard examples/kuard/*.c kubelite/images/*.py)
	$(BIN)/python -m kubelite.images.build $(IMAGES_DIR)
	touch $@

$(APT_STAMP): scripts/setup-apt.sh Makefile
	./scripts/setup-apt.sh $(APT_PACKAGES)
	@mkdir -p $(VENV) && touch $@

$(STAMP): pyproject.toml $(APT_STAMP)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

run: setup
	$(BIN)/kubelite server --data-dir $(DATA_DIR)

test: setup
	$(BIN)/ruff check kubelite tests bench
	$(BIN)/mypy kubelite
	$(BIN)/pytest -q $(PYTEST_ARGS) tests

test-unit: setup
	$(BIN)/pytest -q $(PYTEST_ARGS) tests/unit

test-e2e: setup
	$(BIN)/pytest -q $(PYTEST_ARGS) tests/e2e

lint: setup
	$(BIN)/ruff check kubelite tests bench

typecheck: setup
	$(BIN)/mypy kubelite

bench: setup
	$(BIN)/python bench/api.py

clean:
	rm -rf $(VENV) build *.egg-info
