# Worker and web image (docker-compose.yml runs both from it). Debian-based: the Temporal SDK's
# native core needs glibc.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
COPY test ./test
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
ENV NODE_ENV=production
# The worker's malloc arenas and heap cap, as `espresso start` and docker-compose give it
# (src/worker/node-options.ts), so running the image as it is does too.
ENV MALLOC_ARENA_MAX=2
WORKDIR /app
COPY --from=build /app/package.json /app/package-lock.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY tools ./tools
USER node
CMD ["node", "--max-old-space-size=768", "dist/src/worker/main.js"]
