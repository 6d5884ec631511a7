#!/usr/bin/env bash
# The test command (README): every suite, none skipped. Installs what the browser test
# needs where it can (Debian's chromium, as root), then runs `cargo test` with
# AGENTSTORE_REQUIRE_CHROMIUM set, so that test fails instead of skipping; then the
# Python suites: a virtual environment in target/pyenv with the pinned test
# dependencies is made first, because `cargo test` runs the MCP client suite
# (tests/mcp, the official MCP SDK) with it, AGENTSTORE_REQUIRE_PYTHON set; then the
# package built from ./python and its pytest suite (real LangChain and LangGraph). A
# machine without Python 3.9+ fails here rather than skipping them.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing chromium (Debian package) for the report's browser test"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }
  else
    echo "chromium is not installed and cannot be installed here (not root, or no apt-get)" >&2
    exit 1
  fi
fi

# PgBouncer (Debian's package) for the test that runs the PostgreSQL engine through a
# transaction-mode pooler.
if ! command -v pgbouncer >/dev/null 2>&1 && [ ! -x /usr/sbin/pgbouncer ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing pgbouncer (Debian package) for the pooler test"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends pgbouncer >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends pgbouncer >/dev/null; }
  else
    echo "pgbouncer is not installed and cannot be installed here (not root, or no apt-get)" >&2
    exit 1
  fi
fi
export AGENTSTORE_REQUIRE_PGBOUNCER=1

echo "== the Python test environment (target/pyenv)"
PYTHON=${PYTHON:-python3}
command -v "$PYTHON" >/dev/null 2>&1 || { echo "$PYTHON is needed for the Python suites" >&2; exit 1; }
venv=target/pyenv
[ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r python/requirements-test.txt
export AGENTSTORE_TEST_PYTHON="$PWD/$venv/bin/python"
export AGENTSTORE_REQUIRE_PYTHON=1

export AGENTSTORE_REQUIRE_CHROMIUM=1
# The PostgreSQL tests start throwaway clusters with the machine's PostgreSQL 15
# binaries (pg_config --bindir), or use $AGENTSTORE_TEST_POSTGRES; here they must run.
export AGENTSTORE_REQUIRE_POSTGRES=1
cargo test "$@"

echo "== the Python package (python/): build, install, pytest"
"$venv/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps ./python
"$venv/bin/python" -m pytest -q -p no:cacheprovider python/tests
