# Developer entry points; README's Quickstart uses `make demo` and `make test`.
.PHONY: setup demo test lint format

setup:
	./scripts/setup.sh

demo: setup
	# The shipped config needs replies.authserv_id outside demo mode (an admin sets it).
	MAILBOT_SERVICE__DEMO_MODE=true .venv/bin/mailbot config check --no-secrets
	.venv/bin/mailbot demo

test: setup
	./scripts/test.sh

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/hadolint Dockerfile

format: setup
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .
