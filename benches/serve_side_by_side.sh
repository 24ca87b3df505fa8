#!/usr/bin/env bash
# Workload G1: aggregate generated tokens/s through the HTTP server at 1, 4 and 16 concurrent
# clients, assay serve vs llama.cpp's server (llama-cpp-python[server]), same GGUF file, same
# threads, same client (benches/serve_load.py), one engine at a time.
#
#   benches/serve_side_by_side.sh [THREADS] [CLIENTS] [REQUESTS_PER_CLIENT] [MAX_TOKENS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
threads="${1:-2}" clients="${2:-1,4,16}" per_client="${3:-3}" max_tokens="${4:-64}"
model=models/local/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
port=18473

models/fetch >/dev/null
benches/peer-venv >/dev/null
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

run_engine() {  # engine-name model-name command...
    local engine="$1" name="$2"
    shift 2
    "$@" >/dev/null 2>&1 &
    local pid=$!
    wait_ready
    python3 benches/serve_load.py --engine "$engine" --base-url "http://127.0.0.1:$port/v1" --model "$name" \
        --clients "$clients" --requests-per-client "$per_client" --max-tokens "$max_tokens"
    kill -TERM "$pid"
    wait "$pid" || true
}

run_engine assay smollm2 env ASSAY_THREADS="$threads" ./target/release/assay serve --model smollm2 --port "$port"
run_engine llama.cpp "$model" .bench-venv/bin/python -m llama_cpp.server --model "$model" --n_threads "$threads" \
    --n_threads_batch "$threads" --n_ctx 2048 --host 127.0.0.1 --port "$port"
