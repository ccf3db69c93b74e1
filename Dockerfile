# opencode-env in HTTP mode: `docker build -t opencode-env . && docker run -p 8000:8000 opencode-env`, then
# http://localhost:8000/web (the web UI), /health, /ws and /mcp (OpenEnv and MCP clients).
#
# Where sandboxes run decides what the container needs:
# - With E2B_API_KEY set, every sandbox is an E2B VM: none of the below matters, run it as is.
# - Otherwise sandboxes are local processes, isolated with bubblewrap when it can create namespaces here.
#   Docker's default seccomp and AppArmor profiles and its masked /proc stop it, so run with
#     --security-opt seccomp=unconfined --security-opt apparmor=unconfined --security-opt systempaths=unconfined
#   (bubblewrap in unprivileged user namespaces, as the non-root user below; the host must allow those), or with
#     --privileged --user root
#   (everything of the local backend: a uid per sandbox and for the verifier, cgroup limits, a RAM-capped /tmp).
#   Where neither is allowed (e.g. a Hugging Face Space), OPENCODE_ENV_ISOLATION=auto, the default, falls back to
#   plain processes: still with prlimit limits, a clean environment and a process group each, but sharing the
#   container's filesystem as the server's user. The server logs at start which protections are active.
# The web UI is on by default; ENABLE_WEB_INTERFACE=false turns it off. OPENCODE_ENV_TOKEN=<secret> makes every route
# but /health require `Authorization: Bearer <secret>`: set it whenever the port is reachable by others.

# ---- build: the same commands CI runs (.ci/run), then only the runtime dependencies are kept.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json ./
COPY scripts ./scripts
COPY src ./src
# npm ci runs the package's `prepare` script, which is `npm run build` (type check, then bundle to dist/).
RUN npm ci --no-audit --no-fund \
 && npm prune --omit=dev --no-audit --no-fund

# ---- runtime
FROM node:20-bookworm-slim
# python3 runs execute_python; bubblewrap isolates local sandboxes; util-linux (setpriv, prlimit) is in the base
# image; tini reaps the orphans that sandbox processes leave to PID 1 and forwards signals to the server.
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 bubblewrap tini \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# node_modules carries the opencode binary (opencode-ai's platform package for this architecture).
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY resources ./resources

# Inside a container the server must listen on every interface (its own default is 127.0.0.1).
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8000 \
    ENABLE_WEB_INTERFACE=true
EXPOSE 8000

# The node image's unprivileged user (uid 1000, as Hugging Face Spaces run); traces go to ~/.local/share/opencode-env.
USER node
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 8000) + '/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "dist/cli.js", "http"]
