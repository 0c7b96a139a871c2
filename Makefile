# The two set-up commands (see README.md): `make dev` and `make test`.
# Tools and the cargo target dir are cached under ~/.cache/lasso; nothing relies on the cache.

SHELL := /bin/bash
export LASSO_CACHE_DIR ?= $(HOME)/.cache/lasso
export CARGO_TARGET_DIR ?= $(LASSO_CACHE_DIR)/target

.PHONY: dev test bench services-stop

## Run Lasso locally: Postgres, migrations, api on 127.0.0.1:3003 and the background loops.
dev:
	scripts/dev

## Run the whole test suite against real Postgres, moto and Elasticsearch, plus lint and format.
test:
	scripts/test

## Run the benchmarks and write BENCHMARKS.md (not part of `make test`: timings need a quiet machine).
bench:
	scripts/bench

## Stop the services `make dev` / `make test` started (they stop on exit too).
services-stop:
	scripts/services --profile dev stop
	scripts/services --profile test stop
