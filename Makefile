# The two commands a newcomer needs:  make demo  (the main job)  and  make test  (the whole suite).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.pgkd-installed

.PHONY: setup demo test unit integration lint bench clean

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	touch $(STAMP)

setup: $(STAMP)

# Distil the embedded local LLM teacher into the student on BBC News, all on this machine.
demo: $(STAMP)
	$(VENV)/bin/pgkd distill --dataset bbc --teacher local

test: $(STAMP)
	$(PY) -m pytest tests

unit: $(STAMP)
	$(PY) -m pytest tests/unit

integration: $(STAMP)
	$(PY) -m pytest tests/integration

lint: $(STAMP)
	$(VENV)/bin/ruff check pgkd tests benchmarks
	$(VENV)/bin/ruff format --check pgkd tests benchmarks
	$(VENV)/bin/mypy pgkd

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
