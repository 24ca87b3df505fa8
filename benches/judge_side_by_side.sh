#!/usr/bin/env bash
# Workload J1 (one ~1,000-token judge prompt prefix, 25 checks), assay vs llama.cpp
# (llama-cpp-python) on the same GGUF file, the same token ids and the same thread count.
# assay runs naive (each check a full prompt), prefix reuse (checks one after another on the
# cached prefix) and packed (all checks in one pass); llama.cpp runs its best mode, the prefix
# evaluated once and each check evaluated after rewinding the KV cache to it. Rounds alternate
# the engines so that both see the same machine load.
#
#   benches/judge_side_by_side.sh [ROUNDS] [THREADS] [MODEL_GGUF]   (default: SmolLM2-135M Q4_1; the 1.5B judge:
#   models/local/qwen-judge/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf after `models/fetch judge`)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rounds="${1:-3}" threads="${2:-2}"
model="${3:-models/local/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}"

models/fetch >/dev/null
benches/peer-venv >/dev/null
cargo build --release --quiet

workload="$(mktemp)" results="$(mktemp)"
trap 'rm -f "$workload" "$results"' EXIT
for round in $(seq "$rounds"); do
    modes=packed,prefix_reuse
    [ "$round" = 1 ] && modes=naive,prefix_reuse,packed  # naive is slow: once is enough
    ASSAY_THREADS="$threads" ./target/release/assay bench judge --model "$model" --repeats 3 --modes "$modes" \
        --dump-workload "$workload" | tee -a "$results"
    .bench-venv/bin/python benches/llamacpp_peer.py --model "$model" --threads "$threads" --judge J1 \
        --workload "$workload" --repeats 3 | tee -a "$results"
done
python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
runs = {}
for r in rows:
    if r["engine"] == "llama.cpp":
        runs.setdefault("llama.cpp (prefix reuse)", []).append(r["checks_per_s"])
    else:
        for m in r["modes"]:
            runs.setdefault(f"assay {m['mode']}", []).append(m["checks_per_s"])
print(f"\n{'engine / mode':<28} {'checks/s (median; min-max over rounds)'}")
med = {k: statistics.median(v) for k, v in runs.items()}
for k, v in runs.items():
    print(f"{k:<28} {med[k]:>6.2f} ({min(v):.2f}-{max(v):.2f})")
peer = med["llama.cpp (prefix reuse)"]
for k in ("assay packed", "assay prefix_reuse", "assay naive"):
    if k in med:
        print(f"{k} / llama.cpp: {med[k] / peer:.2f}x")
if "assay naive" in med:
    print(f"assay packed / assay naive: {med['assay packed'] / med['assay naive']:.1f}x")
PY
