# One-command setup on a fresh Debian/Ubuntu machine (Python 3.11, root or sudo for apt).
#
#   make replicate   set up, then run the whole replication: snakemake --cores all
#   make test        set up, then run the test suite (fast and slow tests)
#
# Other targets: setup (virtual environment + system packages), quick (the tiny config), bench
# (trainer benchmark), lint, clean.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: replicate test setup venv system quick bench lint clean

replicate: setup
	snakemake --cores all

test: setup
	pytest -q

setup: venv system

# torch is pinned and installed first, on its own: the CPU wheel is local here, and an unpinned
# torch (pulled in by another package) would download several GB of CUDA libraries.
venv: $(BIN)/tms
$(BIN)/tms: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	touch $@

system:
	scripts/setup-system.sh

quick: setup
	snakemake --cores all --configfile workflow/config/quick.yaml

bench: venv
	tms bench --out benchmarks/bench.json

lint: venv
	snakemake --lint

clean:
	rm -rf results figures logs benchmarks report/build .snakemake
