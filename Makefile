# unistate: `make demo` and `make test` work on a fresh machine (Python 3.11+, Debian).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | md5sum | cut -c1-12)
# torch is pinned to the CPU build that lies on these machines' disk; an unpinned torch pulls
# a multi-GB CUDA build. Override for a GPU training box: make TORCH_SPEC='torch==2.13.0' ...
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= cpu,train,parquet,embedded,faust,plot,dev

.PHONY: help venv demo test test-faults test-unit test-integration lint lint-imports evaluate bench-peers clean redis-server

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

test-faults: $(STAMP) redis-server  ## the long fault suite: kill -9, zombies, Redis and broker outages, hostile input (~20 min)
	$(PY) -m pytest -q -m faults tests/faults

test-unit: $(STAMP)  ## unit tests only (no servers)
	$(PY) -m pytest -q tests/unit

test-integration: $(STAMP) redis-server  ## integration tests only
	$(PY) -m pytest -q tests/integration

lint: lint-imports  ## ruff (pycodestyle, pyflakes, isort, bugbear) and the import contracts
	$(VENV)/bin/ruff check .

lint-imports: $(STAMP)  ## enforce the package import contracts
	$(VENV)/bin/lint-imports

EVAL_OUT ?= .artifacts/evaluate
#: dataset:single-scenario targets (single-scenario models where a multi-scenario claim is checked)
EVAL_RUNS ?= synthetic: amazon-food-kitchen:feed,search tianchi-ecomm:ads movielens:

evaluate: $(STAMP)  ## the default recipe vs baselines on every dataset, and the Tianchi quota study (~55 min on 2 cores)
	@mkdir -p $(EVAL_OUT)
	set -o pipefail; for run in $(EVAL_RUNS); do d=$${run%%:*}; single=$${run#*:}; \
	  $(VENV)/bin/unistate evaluate --dataset $$d --single-scenario $${single//,/ } --no-progress \
	    --json $(EVAL_OUT)/$$d.json 2>&1 | tee $(EVAL_OUT)/$$d.log | grep -v '^ts=' || exit 1; done
	set -o pipefail; $(VENV)/bin/unistate evaluate --dataset tianchi-ecomm --quota-study ads --no-progress \
	  --json $(EVAL_OUT)/tianchi-quota-study.json 2>&1 | tee $(EVAL_OUT)/tianchi-quota-study.log | grep -v '^ts='

PEERS_VENV ?= .artifacts/quix-venv
bench-peers: $(STAMP) redis-server  ## unistate vs faust-streaming and Quix Streams on one merge job (Quix in its own venv: its pins differ)
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install -q quixstreams msgpack msgspec numpy 'redis[hiredis]' psutil xxhash
	$(PY) benchmarks/bench_peers.py --quix-python $(PEERS_VENV)/bin/python

clean:  ## remove the virtualenv and build outputs
	rm -rf $(VENV) build *.egg-info .artifacts .pytest_cache
