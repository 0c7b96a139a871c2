# The two set-up commands (see README.md): `make dev` and `make test`.
# Tools and the cargo target dir are cached under ~/.cache/lasso; nothing relies on the cache.

SHELL := /bin/bash
export LASSO_CACHE_DIR ?= $(HOME)/.cache/lasso
export CARGO_TARGET_DIR ?= $(LASSO_CACHE_DIR)/target

.PHONY: dev test bench faults services-stop build-lambda validate-infra

## Run Lasso locally: Postgres, migrations, api on 127.0.0.1:3003 and the background loops.
dev:
	scripts/dev

## Run the whole test suite against real Postgres, moto and Elasticsearch, plus lint and format.
test:
	scripts/test

## Run the benchmarks and write BENCHMARKS.md (not part of `make test`: timings need a quiet machine).
bench:
	scripts/bench

## Crash and freeze the services under load and check nothing is lost (RELIABILITY.md); not part
## of `make test`: it runs on private services of its own.
faults:
	scripts/faults

## Stop the services `make dev` / `make test` started (they stop on exit too).
services-stop:
	scripts/services --profile dev stop
	scripts/services --profile test stop

## Build the four Lambda functions for AWS (cargo lambda, zig from the venv) into
## target/lambda/<name>/bootstrap, where infra/template.yaml looks. ARCH=arm64 for Graviton
## (deploy with the stack parameter Architecture=arm64 then).
ARCH ?= x86_64
build-lambda:
	scripts/bootstrap --with-lambda
	PATH="$(LASSO_CACHE_DIR)/venv/bin:$$PATH" cargo lambda build --release --locked \
		$(if $(filter arm64,$(ARCH)),--arm64,--x86-64) --lambda-dir target/lambda \
		--bin api --bin scheduler --bin dispatcher --bin runner

## Check the SAM templates offline: sam validate --lint and cfn-lint 1.53.3 (part of `make test`).
validate-infra:
	scripts/bootstrap --with-sam
	infra/validate
