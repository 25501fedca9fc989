# Everyday commands. Everything runs inside .venv, created on first use.
#   make demo      install, validate and render the catalog, run a short reproduction (first thing to run)
#   make test      run the whole test suite, as CI does
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test validate render check-render site bench device-check clean-venv

# Install once; the stamp is refreshed only when pyproject.toml changes, so `make test` twice does not reinstall.
setup: $(STAMP)

$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) and installing torch 2.13.0 (CPU), numpy and the project with its test extras"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0 numpy
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

demo: setup
	@echo "==> validating the catalog"
	$(BIN)/mlatlas validate
	@echo "==> rendering README.md tables and the paper JSON Schema"
	$(BIN)/mlatlas render
	@echo "==> exporting catalog.json and catalog.bib to build/export/"
	$(BIN)/mlatlas export
	@echo "==> a short offline reproduction: MAML on sinusoid regression (smoke config; writes no record)"
	$(BIN)/mlatlas repro run maml --config smoke

test: setup
	@echo "==> running the test suite"
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m pytest

validate: setup
	$(BIN)/mlatlas validate

render: setup
	$(BIN)/mlatlas render

check-render: setup
	$(BIN)/mlatlas render --check

site: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: setup
	$(BIN)/python benchmarks/catalog_scale.py

# On an accelerator machine without our dependencies or network: the smoke suite on every device, and a report
# (tests/device_check.py says how to prepare the wheels it installs from).
device-check:
	$(PYTHON) tests/device_check.py

clean-venv:
	rm -rf $(VENV)
