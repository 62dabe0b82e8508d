# The README's two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SIZE ?= 64
PYTEST_ARGS ?=

.PHONY: demo test lint format bench clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,ray]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/chexnet/demo.py --size $(SIZE)

test: $(STAMP)
	$(BIN)/ruff check twofold tests benchmarks examples
	$(BIN)/ruff format --check twofold tests benchmarks examples
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check --fix twofold tests benchmarks examples
	$(BIN)/ruff format twofold tests benchmarks examples

bench: $(STAMP)
	$(BIN)/python benchmarks/ot.py --quick

clean:
	rm -rf $(VENV) build *.egg-info
