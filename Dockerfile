# One image for every llmd command: `docker run llmd serve …`, `llmd epp …`, `llmd sidecar …`,
# `llmd kv-indexer …`.
FROM node:20-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
# The build copies the .proto files from src/ into dist/ with this script.
COPY scripts/copy-assets.mjs ./scripts/
COPY src ./src
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

FROM node:20-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
RUN chmod +x dist/cli.js && ln -s /app/dist/cli.js /usr/local/bin/llmd
USER node
EXPOSE 8000 8080 9002 9003 9090 5557
ENTRYPOINT ["llmd"]
CMD ["--help"]
