# Every target installs what it needs first, so a fresh Debian machine needs nothing else.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT    := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends

.PHONY: setup system system-demo demo test lint bench bench-logs screenshots image clean

BASE   := $(VENV)/.installed-base

# What the demo needs: Prometheus (promtool backfills it) and a virtualenv with obsgap alone.
system-demo:
	@if ! command -v promtool >/dev/null || ! python3 -c "import ensurepip" >/dev/null 2>&1; then \
		$(SUDO) apt-get update -qq && $(APT) prometheus python3-venv >/dev/null; fi

# What the tests need besides: VictoriaMetrics, a Pushgateway, Chromium.
system: system-demo
	@if ! command -v chromium >/dev/null || ! command -v victoria-metrics >/dev/null || ! command -v prometheus-pushgateway >/dev/null; then \
		$(SUDO) apt-get update -qq && $(APT) victoria-metrics prometheus-pushgateway chromium fonts-dejavu-core >/dev/null; fi

$(BASE): pyproject.toml | system-demo
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	@touch $(BASE)

$(STAMP): pyproject.toml $(BASE) | system
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

setup: system $(STAMP)

demo: system-demo $(BASE)
	$(VENV)/bin/obsgap demo --out reports/demo

test: setup
	$(PY) -m pytest -q -p no:cacheprovider

lint: setup
	$(VENV)/bin/ruff check obsgap tests
	$(VENV)/bin/mypy

bench: setup
	$(PY) tests/bench.py --scale

bench-logs: setup
	$(PY) tests/bench.py
	$(PY) tests/bench.py --layout istio-json
	$(PY) tests/bench.py --layout large --lines 2850000 --files 4

# The README's pictures: the demo report's first screen at 1440x900 and 390x844 (Playwright + Debian's Chromium)
screenshots: setup demo
	$(PY) tests/screenshots.py reports/demo/report.html reports/example

VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE ?= ghcr.io/obsgap/obsgap:$(VERSION)

# The CronJob's image (needs a Docker daemon and the python:3.11-slim base image); push it where the cluster pulls.
image:
	docker build -t $(IMAGE) .

clean:
	rm -rf $(VENV) reports/demo build *.egg-info
