# Entry points. `make test` is every check; `make demo` is the story on the local emulator.
# tests/moto/with-moto.sh runs a command against a private moto server; scripts/ holds the
# tooling the targets share (venvs for SAM and zig, cargo-lambda, builds).
TEST_CMD ?= cargo test --workspace --all-targets

.PHONY: test check test-cargo test-lambda lint-template glibc-check lambda-build demo bench venv clean-venv

# Everything: formatting and clippy first, the template checks (fast), then unit and end-to-end
# tests on moto, then the real binaries under cargo-lambda (watch + invoke on moto; the release
# build's glibc).
test: check lint-template test-cargo test-lambda glibc-check

# The habits the workspace lints state ([workspace.lints] in Cargo.toml), enforced.
check:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

test-cargo:
	tests/moto/with-moto.sh $(TEST_CMD)

# cfn-lint and sam validate --lint on template.yaml, offline, from .venv-sam.
lint-template:
	scripts/lint-template.sh

# The digest-validator binary under `cargo lambda watch`, every sample event through
# `cargo lambda invoke`, against moto; then `trailkeeper onboard --function` invoking the real
# policy-updater under `cargo lambda watch`, against the base policy as deployed.
test-lambda:
	tests/moto/with-moto.sh tests/lambda/watch-invoke.sh
	tests/moto/with-moto.sh tests/lambda/operator-path.sh

# `cargo lambda build --release --target x86_64-unknown-linux-gnu.2.34`, then GLIBC <= 2.34.
glibc-check:
	tests/lambda/glibc.sh

lambda-build:
	scripts/build-lambdas.sh

# The README's first command.
demo:
	demo/run.sh

# Every benchmark (issue 8) on the local emulator, written to bench/RESULTS.md; never part of
# `make test`. About an hour: BENCH_REPS=1 BENCH_HOURS=200 make bench is a quick look.
bench:
	tests/moto/with-moto.sh python3 bench/run.py

venv:
	tests/moto/with-moto.sh --venv-only

clean-venv:
	rm -rf .venv .venv-sam .venv-zig

# Fuzzing (issue 7): each cargo-fuzz target in fuzz/ for FUZZ_SECONDS, one at a time; installs
# cargo-fuzz when absent. Not part of `make test`: its findings become tests in shared/tests/.
FUZZ_SECONDS ?= 600
.PHONY: fuzz
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/run.sh
