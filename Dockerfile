# keypool as a sidecar image: built output and production dependencies only, run as the unprivileged
# `node` user, node itself as PID 1 (exec-form ENTRYPOINT) so SIGTERM reaches keypool's own shutdown.
#   docker build -t keypool .
#   docker run -e OPENAI_API_KEYS=sk-...,sk-... -e KEYPOOL_CLIENT_TOKEN=... -p 8787:8787 keypool
# Config: /etc/keypool/keypool.yaml (docker/keypool.yaml; mount your own over it, or set KEYPOOL_CONFIG).
# KEYPOOL_HOST / KEYPOOL_PORT / KEYPOOL_STATE_FILE override any config (a --host/--port flag beats them).
# test/docker/image-replay.test.ts replays this file line by line: keep its COPY/ENV/RUN lines plain.

FROM node:24-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY src ./src
RUN npx tsc -p tsconfig.json

FROM node:24-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

FROM node:24-slim
ENV NODE_ENV=production KEYPOOL_CONFIG=/etc/keypool/keypool.yaml KEYPOOL_HOST=0.0.0.0 KEYPOOL_STATE_FILE=/data/keypool-state.json
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist/src ./dist/src
COPY package.json ./
COPY docker/keypool.yaml /etc/keypool/keypool.yaml
RUN mkdir -p /data && chown node:node /data
VOLUME /data
USER node
EXPOSE 8787
# `keypool health` reads the same config and variables as `serve`: a port changed by KEYPOOL_PORT or the
# mounted config is still the one checked.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["node", "/app/dist/src/main.js", "health"]
ENTRYPOINT ["node", "/app/dist/src/main.js"]
CMD ["serve"]
