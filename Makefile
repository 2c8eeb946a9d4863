# unistate: `make demo` and `make test` work on a fresh machine (Python 3.11+, Debian).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | md5sum | cut -c1-12)
# torch is pinned to the CPU build that lies on these machines' disk; an unpinned torch pulls
# a multi-GB CUDA build. Override for a GPU training box: make TORCH_SPEC='torch==2.13.0' ...
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= cpu,train,embedded,faust,dev

.PHONY: help venv demo test test-unit test-integration lint lint-imports evaluate bench clean redis-server

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q '$(TORCH_SPEC)'
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

venv: $(STAMP)  ## create the virtualenv and install unistate with its extras

redis-server:  ## install Debian's redis-server when it is missing (needs root or sudo)
	@command -v redis-server >/dev/null || { \
	  echo "redis-server missing: installing Debian's package"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server >/dev/null; }

demo: $(STAMP) redis-server  ## embedded broker + redis, train + export a model, stream events, show Redis
	$(VENV)/bin/unistate demo

test: $(STAMP) redis-server lint  ## ruff, import contracts, then unit + integration (real broker and redis)
	$(PY) -m pytest -q

test-unit: $(STAMP)  ## unit tests only (no servers)
	$(PY) -m pytest -q tests/unit

test-integration: $(STAMP) redis-server  ## integration tests only
	$(PY) -m pytest -q tests/integration

lint: lint-imports  ## ruff (pycodestyle, pyflakes, isort, bugbear) and the import contracts
	$(VENV)/bin/ruff check .

lint-imports: $(STAMP)  ## enforce the package import contracts
	$(VENV)/bin/lint-imports

evaluate: $(STAMP)  ## the model evaluation on ../shared/data/amazon-food-kitchen (minutes)
	$(VENV)/bin/unistate evaluate

clean:  ## remove the virtualenv and build outputs
	rm -rf $(VENV) build *.egg-info .artifacts .pytest_cache
