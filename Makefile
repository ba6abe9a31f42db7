# atocore-identity — every target creates .venv from pyproject.toml if needed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TOOL := $(BIN)/atocore-identity
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo
# Extra project-keyed columns the demo migrates (its `conflicts` table); each word -> --column.
DEMO_COLUMNS ?= conflicts.project
# The runbook targets' variables (docs/runbook.md); each word of COLUMNS -> --column WORD,
# CONFIG -> --config FILE, YES=1 -> apply --yes.
DB ?=
REGISTRY ?=
REPORT_DIR ?=
PLAN ?=
RESOLUTIONS ?=
KEEP ?=
COLUMNS ?=
CONFIG ?=
YES ?=
APPLY_REPORT ?=
BACKUP ?=
FORMAT ?=
# Many shells export COLUMNS as the terminal width: COLUMNS, CONFIG and YES count only when
# given on make's command line, never from the environment (use ATOCORE_IDENTITY_CONFIG for
# a config in the environment), and COLUMNS is not handed on to the tool as a width.
$(foreach v,COLUMNS CONFIG YES,$(if $(filter environment%,$(origin $(v))),$(eval override $(v) :=)))
unexport COLUMNS

.DEFAULT_GOAL := help
.PHONY: help setup test lint format demo completions docs bench soak clean \
        identity-inspect identity-plan identity-resolve identity-apply identity-verify \
        identity-history identity-revert

help: ## List every target with one line each
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
	  awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP) ## Create .venv and install the tool with its dev tools

lint: $(STAMP) ## ruff (lint + format check) and mypy --strict on src/ and tools/
	$(BIN)/ruff check src tests bench tools
	$(BIN)/ruff format --check src tests bench tools
	$(BIN)/mypy --strict src tools

format: $(STAMP) ## Apply ruff's formatting and safe fixes
	$(BIN)/ruff check --fix src tests bench tools
	$(BIN)/ruff format src tests bench tools

test: $(STAMP) lint ## Lint, then run every test
	$(BIN)/pytest -q

DEMO_ARGS = --db $(DEMO_DIR)/atocore.db --registry $(DEMO_DIR)/registry.json \
            --report-dir $(DEMO_DIR)/reports $(foreach c,$(DEMO_COLUMNS),--column "$(c)")

demo: $(STAMP) ## Run the whole runbook on a fresh demo database (DEMO_COLUMNS= extra columns)
	rm -rf $(DEMO_DIR)
	$(TOOL) demo $(DEMO_DIR)
	$(TOOL) inspect $(DEMO_ARGS)
	$(TOOL) plan $(DEMO_ARGS) --out $(DEMO_DIR)/reports/plan-before-resolve.json
	$(TOOL) resolve $(DEMO_ARGS) --keep canonical --out $(DEMO_DIR)/reports/resolutions.json
	$(TOOL) plan $(DEMO_ARGS) --resolutions $(DEMO_DIR)/reports/resolutions.json --out $(DEMO_DIR)/reports/plan.json
	$(TOOL) apply $(DEMO_ARGS) --plan $(DEMO_DIR)/reports/plan.json --resolutions $(DEMO_DIR)/reports/resolutions.json --yes
	$(TOOL) verify $(DEMO_ARGS) --report "$$(ls -1 $(DEMO_DIR)/reports/apply-*.json | tail -n 1)" --backup "$$(ls -1 $(DEMO_DIR)/reports/backup-*.db | tail -n 1)"
	@echo "demo runbook finished: every check passed"

bench: $(STAMP) ## Benchmark inspect/plan/apply against the hand-written SQL floor
	$(BIN)/python bench/run.py $(BENCH_ARGS)

soak: $(STAMP) ## The property tests with many more examples
	HYPOTHESIS_PROFILE=soak $(BIN)/pytest -q -m property

completions: $(STAMP) ## Regenerate completions/ from the Click definitions
	$(BIN)/python tools/gen_completions.py

docs: $(STAMP) ## Regenerate docs/cli.md from the Click definitions
	$(BIN)/python tools/gen_cli_docs.py

# -- the deploy runbook (docs/runbook.md; `## Runbook N` is its step N) -----------------------
# make identity-plan DB=... REGISTRY=... REPORT_DIR=... [COLUMNS="conflicts.project"] [CONFIG=FILE]
EXAMPLE_DB := /srv/atocore/data/db/atocore.db
EXAMPLE_REGISTRY := /srv/atocore/registry.json
EXAMPLE_REPORT_DIR := /srv/atocore/data/migrations
EXAMPLE_PLAN := $(EXAMPLE_REPORT_DIR)/plan.json
EXAMPLE_APPLY_REPORT := $(EXAMPLE_REPORT_DIR)/apply-<time>.json
# $(call need,VAR ...): stop unless every VAR is set; the example names every one of them.
need = $(foreach v,$(1),$(if $($(v)),,$(error $(v)= is required, e.g. make $@ $(foreach w,$(1),$(w)=$(EXAMPLE_$(w))))))
RUNBOOK_ARGS = --db "$(DB)" --registry "$(REGISTRY)" --report-dir "$(REPORT_DIR)" \
               $(foreach c,$(COLUMNS),--column "$(c)") $(if $(CONFIG),--config "$(CONFIG)")
yes_flag = $(if $(YES),$(if $(filter 1,$(YES)),--yes,$(error YES=$(YES): write YES=1 to pass --yes)))

identity-inspect: $(STAMP) ## Runbook 1: the blast radius (read-only)
	$(call need,DB REGISTRY REPORT_DIR)
	$(TOOL) inspect $(RUNBOOK_ARGS)

identity-plan: $(STAMP) ## Runbook 2: the plan (read-only), --detailed-exitcode: 0 nothing to do, 4 go, 3 blocked
	$(call need,DB REGISTRY REPORT_DIR)
	$(TOOL) plan $(RUNBOOK_ARGS) --detailed-exitcode $(if $(RESOLUTIONS),--resolutions "$(RESOLUTIONS)") $(if $(PLAN),--out "$(PLAN)")

identity-resolve: $(STAMP) ## Runbook 3: decide collisions; KEEP=shadow|canonical|newest or prompts
	$(call need,DB REGISTRY REPORT_DIR)
	$(TOOL) resolve $(RUNBOOK_ARGS) $(if $(KEEP),--keep $(KEEP)) $(if $(RESOLUTIONS),--out "$(RESOLUTIONS)")

identity-apply: $(STAMP) ## Runbook 5: migrate; PLAN= required, RESOLUTIONS= if any, YES=1 off a terminal
	$(call need,DB REGISTRY REPORT_DIR PLAN)
	$(TOOL) apply $(RUNBOOK_ARGS) --plan "$(PLAN)" $(if $(RESOLUTIONS),--resolutions "$(RESOLUTIONS)") $(yes_flag)

identity-verify: $(STAMP) ## Runbook 6: check the postconditions; APPLY_REPORT= and BACKUP= optional
	$(call need,DB REGISTRY REPORT_DIR)
	$(TOOL) verify $(RUNBOOK_ARGS) $(if $(APPLY_REPORT),--report "$(APPLY_REPORT)") $(if $(BACKUP),--backup "$(BACKUP)")

identity-history: $(STAMP) ## History: every run in REPORT_DIR and what needs attention; FORMAT=json|markdown
	$(call need,REPORT_DIR)
	$(TOOL) history --report-dir "$(REPORT_DIR)" $(if $(FORMAT),--format "$(FORMAT)")

identity-revert: $(STAMP) ## Undo: revert APPLY_REPORT= (keeps writes since); PROJECT="id ..." DRY_RUN=1 SKIP_CHANGED=1 YES=1
	$(call need,DB REGISTRY REPORT_DIR APPLY_REPORT)
	$(TOOL) revert $(RUNBOOK_ARGS) --report "$(APPLY_REPORT)" $(foreach p,$(PROJECT),--project "$(p)") \
	  $(if $(DRY_RUN),--dry-run) $(if $(SKIP_CHANGED),--skip-changed) $(yes_flag)

clean: ## Remove the venv, caches and demo output
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache .hypothesis bench/out
