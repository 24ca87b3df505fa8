#!/usr/bin/env bash
# Generation throughput, assay vs llama.cpp (llama-cpp-python), on the same GGUF file, the same
# prompt tokens and the same thread count, alternating engines for several rounds so that both
# see the same machine load. Prints one JSON line per engine and round, then a summary table.
#
#   benches/gen_side_by_side.sh [ROUNDS] [THREADS] [PROMPT_TOKENS] [GEN_TOKENS] [MODEL_GGUF]   (default:
#   SmolLM2-135M Q4_1; the 1.5B judge: models/local/qwen-judge/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rounds="${1:-3}" threads="${2:-2}" prompt_tokens="${3:-498}" gen_tokens="${4:-64}"
model="${5:-models/local/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}"

models/fetch >/dev/null
benches/peer-venv >/dev/null
cargo build --release --quiet

# The same realistic text for both engines: K-QA questions and physician answers.
prompt_file="$(mktemp)"
trap 'rm -f "$prompt_file"' EXIT
python3 - "$prompt_file" <<'PY'
import json, sys
rows = [json.loads(l) for l in open("../shared/data/kqa/questions_w_answers.jsonl") if l.strip()]
open(sys.argv[1], "w").write("\n\n".join(r["Question"] + "\n" + r["Free_form_answer"] for r in rows))
PY

results="$(mktemp)"
for round in $(seq "$rounds"); do
    ASSAY_THREADS="$threads" ./target/release/assay bench gen --model "$model" --prompt-file "$prompt_file" \
        --prompt-tokens "$prompt_tokens" --gen-tokens "$gen_tokens" --repeats 3 2>/dev/null | tee -a "$results"
    .bench-venv/bin/python benches/llamacpp_peer.py --model "$model" --threads "$threads" --prompt-file "$prompt_file" \
        --prompt-tokens "$prompt_tokens" --gen-tokens "$gen_tokens" --repeats 3 | tee -a "$results"
done
python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in rows:
    by.setdefault(r["engine"], []).append(r)
print(f"\n{'engine':<10} {'prefill tok/s (median, min-max over rounds)':<46} {'decode tok/s (median, min-max)':<34}")
med = {}
for engine, rs in by.items():
    p = [r["prefill_tok_s"] for r in rs]; d = [r["decode_tok_s"] for r in rs]
    med[engine] = (statistics.median(p), statistics.median(d))
    print(f"{engine:<10} {med[engine][0]:>8.1f} ({min(p):.1f}-{max(p):.1f}){'':<26} {med[engine][1]:>8.1f} ({min(d):.1f}-{max(d):.1f})")
for engine, rs in by.items():
    load = [r["load_s"] for r in rs]; rss = [r["peak_rss_mib"] for r in rs]
    print(f"{engine:<10} load {statistics.median(load):.2f} s ({min(load):.2f}-{max(load):.2f}), peak resident {max(rss):.0f} MiB")
if "assay" in med and "llama.cpp" in med:
    print(f"assay / llama.cpp: prefill {med['assay'][0] / med['llama.cpp'][0]:.2f}x, decode {med['assay'][1] / med['llama.cpp'][1]:.2f}x")
PY
rm -f "$results"
