# Two commands on a fresh machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= 2
SNAKEMAKE_ARGS ?=
DATASET ?= synthetic

.PHONY: install demo test test-fast dry-run lint lock clean
install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[workflow,test]'
	@touch $(STAMP)

## make demo: the whole DAG on the embedded synthetic dataset, on the CPU, then the HTML report
demo: install
	$(BIN)/snakemake --cores $(CORES) $(SNAKEMAKE_ARGS)
	$(BIN)/snakemake --report reports/$(DATASET)/report.html $(SNAKEMAKE_ARGS)

## make test: the test suite (unit, reference and real Snakemake, DVC and SLURM runs)
test: install
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

## make test-fast: the edit loop; everything but the end-to-end runs (tests marked `workflow`)
test-fast: install
	$(BIN)/python -m pytest -q -m "not workflow" $(PYTEST_ARGS)

dry-run: install
	$(BIN)/snakemake -n --quiet rules

## make lint: ruff (pyflakes, pycodestyle, bugbear, isort, pyupgrade; config in pyproject.toml) and snakemake --lint
lint: install
	$(BIN)/ruff check src tests benchmarks workflow
	$(BIN)/snakemake --lint

## make lock: constraints.txt again from pyproject.toml and requirements/lock.in (every package pinned;
## pip-compile resolves through pip, so it sees the same indexes and wheels as `make install`)
lock:
	@test -x .venv-tools/bin/pip-compile || ($(PYTHON) -m venv .venv-tools && .venv-tools/bin/pip install --quiet pip-tools==7.7.0)
	.venv-tools/bin/pip-compile --quiet --allow-unsafe --extra workflow --extra test --strip-extras --no-emit-index-url \
	    --no-emit-find-links --constraint requirements/lock.in --output-file constraints.txt pyproject.toml

clean:
	rm -rf results resources .snakemake reports/*/
