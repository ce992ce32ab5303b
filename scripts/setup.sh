#!/usr/bin/env bash
# Creates .venv/ at the repository root from uv.lock (exact pinned versions).
# Needs only python3 (>= 3.11) with venv and pip; uv is bootstrapped into
# .tools/ so that no global install is needed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
UV_VERSION=$(awk '/^name = "uv"$/{getline; gsub(/version = |"/, ""); print; exit}' uv.lock)

if [ ! -x .tools/bin/uv ] || [ "$(.tools/bin/uv --version | awk '{print $2}')" != "$UV_VERSION" ]; then
    "$PYTHON" -m venv .tools
    .tools/bin/python -m pip install --quiet --disable-pip-version-check "uv==${UV_VERSION}"
fi

export UV_PYTHON="${UV_PYTHON:-$("$PYTHON" -c 'import sys; print(sys.executable)')}"
.tools/bin/uv sync --frozen --quiet
echo "setup: .venv ready ($(.venv/bin/python --version), mailbot at .venv/bin/mailbot)"
