# syntax=docker/dockerfile:1
# The agent-smith image: one crew member per container (`agent-smith run`, AGENT_NAME
# names it), and the same image runs the firewall (`agent-smith firewall`).
#
#   docker build -t agent-smith .
#
# Stages: the pinned claude CLI from npm, the agent-smith wheel with its pinned
# dependencies, and a slim runtime with tmux, git and gh as a non-root user.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG NODE_IMAGE=node:22-bookworm-slim

# ---- the claude CLI, at the version and integrity package-lock.json pins ----------------
FROM ${NODE_IMAGE} AS claude
WORKDIR /build
COPY package.json package-lock.json ./
# The lock also pins test-only parts (GitHub's API descriptions, ~400 MB): keep only the
# CLI in package.json, so npm installs it (and its platform binary) from the lock alone.
RUN node -e "const fs=require('fs');const p=require('./package.json');const n='@anthropic-ai/claude-code';p.dependencies={[n]:p.dependencies[n]};fs.writeFileSync('package.json',JSON.stringify(p))" \
 && npm install --omit=dev --no-audit --no-fund --loglevel=error \
 && mkdir -p /out \
 && cp -L node_modules/.bin/claude /out/claude \
 && /out/claude --version

# ---- agent-smith and its runtime dependencies, at requirements.lock's versions -----------
FROM ${PYTHON_IMAGE} AS wheel
# The runtime can write no bytecode (PYTHONDONTWRITEBYTECODE, and /opt is root's): compiled
# here, each hook, MCP server and `run` starts ~3x sooner than from source.
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 UV_NO_CACHE=1 UV_COMPILE_BYTECODE=1
WORKDIR /build
RUN pip install "uv==0.13.9"
COPY pyproject.toml requirements.lock README.md ./
COPY src ./src
# requirements.lock holds the dev tools too; resolve the runtime set under its pins.
RUN uv pip compile pyproject.toml -c requirements.lock --generate-hashes --python-version 3.11 -q -o runtime.lock \
 && uv venv /opt/agent-smith --python /usr/local/bin/python3.11 \
 && uv pip sync --python /opt/agent-smith/bin/python runtime.lock \
 && uv build --wheel --out-dir /dist . \
 && uv pip install --python /opt/agent-smith/bin/python --no-deps /dist/*.whl \
 && /opt/agent-smith/bin/agent-smith --version

# ---- the runtime ----------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
# Debian's own builds, from the release the base image pins; tini reaps tmux's children.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends tmux git gh ca-certificates tini openssh-client \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 agent \
 && useradd --uid 10001 --gid 10001 --home-dir /var/lib/agent-smith --no-create-home --shell /bin/bash agent \
 && install -d -o 10001 -g 10001 -m 750 /var/lib/agent-smith /etc/agent-smith
COPY --from=claude /out/claude /usr/local/bin/claude
COPY --from=wheel /opt/agent-smith /opt/agent-smith
ENV PATH=/opt/agent-smith/bin:$PATH \
    HOME=/var/lib/agent-smith \
    AGENT_SMITH_CREW=/etc/agent-smith/crew \
    AGENT_SMITH_RUNTIME__STATE_DIR=/var/lib/agent-smith \
    AGENT_SMITH_LOG_FORMAT=json \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /var/lib/agent-smith
ENTRYPOINT ["/usr/bin/tini", "--", "agent-smith"]
CMD ["run"]
