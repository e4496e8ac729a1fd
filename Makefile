# The two commands a newcomer needs:  make demo  (the main job)  and  make test  (the whole suite).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.pgkd-installed

.PHONY: setup demo distill test test-fast unit integration lint bench clean

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	touch $(STAMP)

setup: $(STAMP)

# The live system end to end on WordNet (`--dataset` for others): broker, Redis, LLM teacher and the services, all local.
demo: $(STAMP)
	$(VENV)/bin/pgkd demo

# The offline loop (the paper's Algorithm 1): distil the local LLM teacher into the student.
distill: $(STAMP)
	$(VENV)/bin/pgkd distill --dataset bbc --teacher local

test: $(STAMP)
	$(PY) -m pytest tests --durations=20  # the slowest 20, so a CI that grows slower says where

# Everything but the slow live-system tests (minutes, not half an hour); CI still runs `make test`.
test-fast: $(STAMP)
	$(PY) -m pytest tests -m "not slow"

unit: $(STAMP)
	$(PY) -m pytest tests/unit

integration: $(STAMP)
	$(PY) -m pytest tests/integration

lint: $(STAMP)
	$(VENV)/bin/ruff check pgkd streams consumers producers cli tests benchmarks
	$(VENV)/bin/ruff format --check pgkd streams consumers producers cli tests benchmarks
	$(VENV)/bin/mypy pgkd streams consumers producers cli
	$(VENV)/bin/lint-imports

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
