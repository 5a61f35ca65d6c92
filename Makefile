# Test entry points. tests/moto/with-moto.sh runs a command against a private moto server.
TEST_CMD ?= cargo test --workspace --all-targets

.PHONY: test venv clean-venv

test:
	tests/moto/with-moto.sh $(TEST_CMD)

venv:
	tests/moto/with-moto.sh --venv-only

clean-venv:
	rm -rf .venv
