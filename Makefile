# atocore-identity — every target creates .venv from pyproject.toml if needed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TOOL := $(BIN)/atocore-identity
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo
DB ?=
REGISTRY ?=
REPORT_DIR ?=
PLAN ?=
RESOLUTIONS ?=
KEEP ?=

.DEFAULT_GOAL := help
.PHONY: help setup test lint format demo completions docs bench soak clean \
        identity-inspect identity-plan identity-resolve identity-apply identity-verify

help: ## List every target with one line each
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
	  awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP) ## Create .venv and install the tool with its dev tools

lint: $(STAMP) ## ruff (lint + format check) and mypy --strict on src/
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy --strict src

format: $(STAMP) ## Apply ruff's formatting and safe fixes
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

test: $(STAMP) lint ## Lint, then run every test
	$(BIN)/pytest -q

demo: $(STAMP) ## Run the whole runbook on a fresh demo database
	rm -rf $(DEMO_DIR)
	$(TOOL) demo $(DEMO_DIR)
	$(TOOL) inspect --db $(DEMO_DIR)/atocore.db --registry $(DEMO_DIR)/registry.json --report-dir $(DEMO_DIR)/reports
	$(TOOL) plan --db $(DEMO_DIR)/atocore.db --registry $(DEMO_DIR)/registry.json --report-dir $(DEMO_DIR)/reports --out $(DEMO_DIR)/reports/plan-before-resolve.json
	$(TOOL) resolve --db $(DEMO_DIR)/atocore.db --registry $(DEMO_DIR)/registry.json --report-dir $(DEMO_DIR)/reports --keep canonical --out $(DEMO_DIR)/reports/resolutions.json
	$(TOOL) plan --db $(DEMO_DIR)/atocore.db --registry $(DEMO_DIR)/registry.json --report-dir $(DEMO_DIR)/reports --resolutions $(DEMO_DIR)/reports/resolutions.json --out $(DEMO_DIR)/reports/plan.json
	$(TOOL) apply --db $(DEMO_DIR)/atocore.db --registry $(DEMO_DIR)/registry.json --report-dir $(DEMO_DIR)/reports --plan $(DEMO_DIR)/reports/plan.json --resolutions $(DEMO_DIR)/reports/resolutions.json --yes
	$(TOOL) verify --db $(DEMO_DIR)/atocore.db --registry $(DEMO_DIR)/registry.json --report-dir $(DEMO_DIR)/reports --report "$$(ls -1 $(DEMO_DIR)/reports/apply-*.json | tail -n 1)" --backup "$$(ls -1 $(DEMO_DIR)/reports/backup-*.db | tail -n 1)"
	@echo "demo runbook finished: every check passed"

bench: $(STAMP) ## Benchmark inspect/plan/apply against the hand-written SQL floor
	$(BIN)/python bench/run.py $(BENCH_ARGS)

soak: $(STAMP) ## The property tests with many more examples
	HYPOTHESIS_PROFILE=soak $(BIN)/pytest -q -m property

completions: $(STAMP) ## Regenerate completions/ from the Click definitions
	$(BIN)/python tools/gen_completions.py

docs: $(STAMP) ## Regenerate docs/cli.md from the Click definitions
	$(BIN)/python tools/gen_cli_docs.py

# -- the deploy runbook: make identity-plan DB=... REGISTRY=... REPORT_DIR=... ----
need = $(if $($(1)),,$(error $(1)= is required, e.g. make $@ DB=/srv/atocore/db/atocore.db REGISTRY=/srv/atocore/registry.json REPORT_DIR=/srv/atocore/migrations))
RUNBOOK_ARGS = --db "$(DB)" --registry "$(REGISTRY)" --report-dir "$(REPORT_DIR)"

identity-inspect: $(STAMP) ## Runbook 1: the blast radius (read-only)
	$(call need,DB)$(call need,REGISTRY)$(call need,REPORT_DIR)
	$(TOOL) inspect $(RUNBOOK_ARGS)

identity-plan: $(STAMP) ## Runbook 2: the plan (read-only); RESOLUTIONS= optional
	$(call need,DB)$(call need,REGISTRY)$(call need,REPORT_DIR)
	$(TOOL) plan $(RUNBOOK_ARGS) $(if $(RESOLUTIONS),--resolutions "$(RESOLUTIONS)") $(if $(PLAN),--out "$(PLAN)")

identity-resolve: $(STAMP) ## Runbook 3: decide collisions; KEEP=shadow|canonical|newest or prompts
	$(call need,DB)$(call need,REGISTRY)$(call need,REPORT_DIR)
	$(TOOL) resolve $(RUNBOOK_ARGS) $(if $(KEEP),--keep $(KEEP)) $(if $(RESOLUTIONS),--out "$(RESOLUTIONS)")

identity-apply: $(STAMP) ## Runbook 4: migrate; PLAN= required, RESOLUTIONS= if any
	$(call need,DB)$(call need,REGISTRY)$(call need,REPORT_DIR)$(call need,PLAN)
	$(TOOL) apply $(RUNBOOK_ARGS) --plan "$(PLAN)" $(if $(RESOLUTIONS),--resolutions "$(RESOLUTIONS)")

identity-verify: $(STAMP) ## Runbook 5: check the postconditions; APPLY_REPORT= and BACKUP= optional
	$(call need,DB)$(call need,REGISTRY)$(call need,REPORT_DIR)
	$(TOOL) verify $(RUNBOOK_ARGS) $(if $(APPLY_REPORT),--report "$(APPLY_REPORT)") $(if $(BACKUP),--backup "$(BACKUP)")

clean: ## Remove the venv, caches and demo output
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache .hypothesis bench/out
