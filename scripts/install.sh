#!/usr/bin/env bash
# Installs everything agent-smith needs on a fresh Debian machine, pinned:
# Debian packages, the Python environment (.venv, from requirements.lock) and
# the Node parts (node_modules, from package-lock.json). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

# Bold only for a person's terminal: a log or a pipe gets no escape codes, nor does NO_COLOR.
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
  step() { printf '\033[1m==> %s\033[0m\n' "$*"; }
else
  step() { printf '==> %s\n' "$*"; }
fi

APT_PACKAGES=(tmux git gh curl ca-certificates)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  step "Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

UV_VERSION=0.13.9
if ! command -v uv >/dev/null 2>&1 || [ "$(uv --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  step "uv $UV_VERSION"
  python3 -m pip install -q "uv==$UV_VERSION"
fi

step "Python environment (.venv from requirements.lock)"
[ -x .venv/bin/python ] || uv venv -q --python python3.11 .venv
# Bytecode is compiled here, not left to each process: where PYTHONDONTWRITEBYTECODE is set,
# every hook, MCP server and CLI start would otherwise compile its modules from source again.
uv pip sync -q --compile-bytecode --python .venv/bin/python requirements.lock
uv pip install -q --python .venv/bin/python --no-deps -e .
.venv/bin/python -m compileall -q src

step "Node parts (node_modules from package-lock.json)"
lock_sum=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat node_modules/.agent-smith-lock 2>/dev/null)" != "$lock_sum" ]; then
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_sum" > node_modules/.agent-smith-lock
fi

step "Ready: $(.venv/bin/agent-smith --version)"
