#!/usr/bin/env bash
# Workload G1: aggregate generated tokens/s through the HTTP server at 1, 4 and 16 concurrent
# clients, assay serve vs llama.cpp's server (llama-cpp-python[server]) vs llama.cpp's own C++
# llama-server (16 parallel slots, continuous batching; benches/llama-server-build), same GGUF file,
# same threads, same client (benches/serve_load.py), one engine at a time.
#
#   benches/serve_side_by_side.sh [THREADS] [CLIENTS] [REQUESTS_PER_CLIENT] [MAX_TOKENS] [GGUF]
#
# GGUF defaults to the SmolLM2 file (served by assay as `smollm2`); another path is passed to
# `assay serve --model` as is. SERVE_ENGINES names the engines to run (default: all three, e.g.
# SERVE_ENGINES="assay llama-server" skips the slow one-request-at-a-time Python server).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
threads="${1:-2}" clients="${2:-1,4,16}" per_client="${3:-3}" max_tokens="${4:-64}"
default_model=models/local/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
model="${5:-$default_model}"
if [ "$model" = "$default_model" ]; then assay_model=smollm2; else assay_model="$model"; fi
port=18473
engines=" ${SERVE_ENGINES:-assay llama.cpp llama-server} "

models/fetch >/dev/null
benches/peer-venv >/dev/null
benches/llama-server-build >/dev/null
.bench-venv/bin/python -c "import uvicorn, fastapi, sse_starlette, starlette_context, pydantic_settings" 2>/dev/null \
    || .bench-venv/bin/python -m pip install --quiet 'uvicorn>=0.22.0' 'fastapi>=0.100.0' 'pydantic-settings>=2.0.1' \
        'sse-starlette>=1.6.1' 'starlette-context>=0.3.6,<0.4' 'PyYAML>=5.1'
cargo build --release --quiet

wait_ready() {
    for _ in $(seq 600); do
        if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/v1/models', timeout=2)" 2>/dev/null; then
            return 0
        fi
        sleep 0.2
    done
    echo "server on port $port did not come up" >&2
    return 1
}

server_pid=
trap '[ -z "$server_pid" ] || kill -TERM "$server_pid" 2>/dev/null || true' EXIT

run_engine() {  # engine-name model-name command...
    local engine="$1" name="$2"
    shift 2
    [[ "$engines" == *" $engine "* ]] || return 0
    "$@" >/dev/null 2>&1 &
    server_pid=$!
    wait_ready
    python3 benches/serve_load.py --engine "$engine" --base-url "http://127.0.0.1:$port/v1" --model "$name" \
        --clients "$clients" --requests-per-client "$per_client" --max-tokens "$max_tokens"
    kill -TERM "$server_pid"
    wait "$server_pid" || true
    server_pid=
}

run_engine assay "$assay_model" env ASSAY_THREADS="$threads" ./target/release/assay serve --model "$assay_model" --port "$port"
run_engine llama.cpp "$model" .bench-venv/bin/python -m llama_cpp.server --model "$model" --n_threads "$threads" \
    --n_threads_batch "$threads" --n_ctx 2048 --host 127.0.0.1 --port "$port"
# 16 slots share -c: 32768 gives each slot 2048 tokens, as much as the Python server's n_ctx.
run_engine llama-server "$model" .bench-llama-server/bin/llama-server -m "$model" -t "$threads" -tb "$threads" \
    -np 16 -c 32768 --cont-batching --host 127.0.0.1 --port "$port"
