# One-command setup on a fresh Debian/Ubuntu machine (Python 3.11, root or sudo for apt).
#
#   make replicate   set up, then run the whole replication: snakemake --cores all
#   make test        set up, then run the test suite (fast and slow tests)
#   make robustness  the replication and its robustness run (two more seeds, twice the steps; ~4x the
#                    training): results/robustness.json, and the report labels each verdict robust/fragile
#   make release     after `make replicate` at a clean commit: copy report/build/'s archive into
#                    report/release/ (the committed, cited one), rewrite CITATION.cff and the README's
#                    release block, and print what to commit (a build never touches report/release/)
#
# Other targets: setup (virtual environment + system packages), quick (the tiny config), bench
# (trainer benchmark), lint, clean.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: replicate robustness test release setup venv system quick bench lint clean

replicate: setup
	snakemake --cores all

robustness: setup
	snakemake --cores all --configfile workflow/config/default.yaml workflow/config/robustness.yaml

test: setup
	pytest -q

release: venv
	tms release report/build/tms-findings-default.tar.gz

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
