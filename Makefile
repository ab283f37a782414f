# Two set-up commands: `make run` and `make test`. Everything else is optional.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
ADAPTER := adapters/dbt-nev-spark
# the clickhouse_local target's adapter plugin: dbt-clickhouse on chdb
ADAPTER_CHDB := adapters/dbt-nev-chdb
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock $$(find $(ADAPTER) $(ADAPTER_CHDB) -type f -not -path '*/__pycache__/*' -not -path '*.egg-info*' -not -path '*/build/*' | sort) | cksum | cut -d' ' -f1)
export DBT_SEND_ANONYMOUS_USAGE_STATS := false

# the BI virtualenv (Apache Superset, its drivers, Playwright): a virtualenv of its own, so that
# the main one stays lean; created by `nev-battery bi venv` (or on the first `bi up`)
BI_VENV := .venv-bi
BI_STAMP := $(BI_VENV)/.installed-$(shell sha256sum requirements-bi.lock | cut -c1-16)

.PHONY: run test bench lint clean bi-venv

# pinned: every package at the version in requirements.lock; the dbt adapter plugins of the
# spark and clickhouse_local targets are packages of their own (regular installs: they add to
# dbt's namespace). Quiet: one line says what happens, pip prints only errors.
$(STAMP): pyproject.toml requirements.lock
	@echo "installing the pinned dependencies into $(VENV) (once per change of the lock; about 2 minutes)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	@$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev,scheduler]' ./$(ADAPTER) ./$(ADAPTER_CHDB)
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

$(BI_STAMP): requirements-bi.lock | $(STAMP)
	@$(BIN)/nev-battery bi venv

bi-venv: $(BI_STAMP)

# simulate the demo fleet (the 45 days up to yesterday), build the warehouse on DuckDB, print a
# summary and the next steps
run: $(STAMP)
	@rm -rf data/landing data/truth warehouse/nev_battery.duckdb
	@$(BIN)/nev-battery demo --vehicles 50 --seed 7

# the whole test suite (what CI runs), the BI tests included: they need the BI virtualenv
# (created here on a fresh clone, about 3 minutes) and Debian's chromium (apt-get install chromium)
test: $(STAMP) $(BI_STAMP)
	$(BIN)/ruff check src tests python_models adapters
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m nev_battery.bench

# sqlfluff's dbt templater opens the target's database and renders is_incremental() from what
# it holds: lint on a scratch DuckDB file and chdb directory, as the lint tests do, so that the
# result does not depend on the local warehouse (nor fail while another process holds it). The
# serving models are ClickHouse SQL, enabled on a ClickHouse target only: a run of their own on
# clickhouse_local (their dialect: models/serving/.sqlfluff).
lint: $(STAMP)
	$(BIN)/ruff check src tests python_models adapters
	scratch=$$(mktemp -d) && export DBT_PROFILES_DIR=$(CURDIR) NEV_DUCKDB_PATH=$$scratch/lint.duckdb \
		NEV_CHDB_PATH=$$scratch/chdb DBT_TARGET_PATH=$$scratch/target && \
		$(BIN)/sqlfluff lint models tests/dbt macros && \
		$(BIN)/sqlfluff lint models/serving --config .sqlfluff-clickhouse; \
		rc=$$?; rm -rf $$scratch; exit $$rc

clean:
	rm -rf data warehouse target logs .pytest_cache $(ADAPTER)/build $(ADAPTER)/*.egg-info \
		$(ADAPTER_CHDB)/build $(ADAPTER_CHDB)/*.egg-info
