# Two commands set up everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The strategy package installs with its rl extra (torch, stable-baselines3) for training.
PACKAGES := libs/events libs/runtime libs/quant $(patsubst services/strategy,services/strategy[rl],$(sort $(wildcard services/*)))
STAMP := $(VENV)/.installed
# The backtest benchmark's peer frameworks (backtrader, NautilusTrader) live in their own venv.
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed

.PHONY: install run test lint schemas schemas-check bench clean infra-up infra-down chaos images

install: $(STAMP)

$(STAMP): constraints.txt requirements-dev.txt $(wildcard libs/*/pyproject.toml services/*/pyproject.toml)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24" wheel
	$(BIN)/python -m pip install --quiet -c constraints.txt -r requirements-dev.txt $(addprefix -e ,$(PACKAGES))
	touch $@

run: install
	$(BIN)/ata up

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check libs services tests bench
	$(BIN)/mypy --strict libs/events/ata libs/runtime/ata libs/quant/ata

schemas: install
	$(BIN)/ata schemas write

schemas-check: install
	$(BIN)/ata schemas check

bench: install $(BENCH_STAMP)
	$(BIN)/python -m bench

$(BENCH_STAMP): bench/peers/requirements.txt
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet -r bench/peers/requirements.txt
	touch $@

infra-up: install
	$(BIN)/ata infra up

infra-down: install
	$(BIN)/ata infra down

# `make chaos SCENARIO=stop-redis`: one scenario of chaos/scenarios on the embedded infrastructure.
SCENARIO ?= kill-execution
chaos: install
	$(BIN)/ata chaos run chaos/scenarios/$(SCENARIO).yaml

# One image per service (needs a Docker engine); `docker compose up` builds the same ones.
IMAGES := runtime marketdata regime sentiment strategy oversight risk execution journal
images:
	for s in $(IMAGES); do docker build -f deploy/Dockerfile --build-arg SERVICE=$$s -t ata-$$s:dev . || exit 1; done

clean:
	rm -rf $(VENV) $(BENCH_VENV) .ata .pytest_cache .mypy_cache .ruff_cache
