#!/usr/bin/env python3
"""llama.cpp peer measurement (via llama-cpp-python), for side-by-side runs with assay.

Default mode measures, after one warm-up run, over --repeats runs (median reported):
  * prefill: wall time of llm.eval(prompt) from an empty KV cache (llm.reset()),
    the whole prompt in one batch (n_batch >= prompt length), only the last
    position's logits computed;
  * decode: wall time to greedily generate --gen-tokens tokens after the prompt,
    one llm.eval([tok]) per token, argmax over the last logits; prefill excluded.

--judge J1 measures prefix-shared judging: one ~1000-token context (chat-formatted
instructions + K-QA question + answer) evaluated once, then 25 checks of ~60
tokens; for each check the KV cache is rewound to the prefix (llm.n_tokens =
prefix length; eval() drops the KV cells past it and keeps the prefix), the check
suffix is evaluated and the last logits read (argmax). Reported: checks_per_s
over the 25 checks (prefix included in the time) and prefill_tok_s =
(prefix + all suffix tokens) / that time.

Prints ONE JSON line to stdout; llama.cpp logging is silenced.

  .bench-venv/bin/python benches/llamacpp_peer.py --model M.gguf --threads 2 \
      --prompt-tokens 512 --gen-tokens 64 --repeats 3
  .bench-venv/bin/python benches/llamacpp_peer.py --model M.gguf --threads 2 --judge J1
"""
import argparse
import csv
import glob
import json
import os
import statistics
import resource
import sys
import time

import numpy as np
import llama_cpp
from llama_cpp import Llama

# ../shared/data beside the repository (DESIGN.md layout).
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")
KQA = f"{DATA}/kqa/questions_w_answers.jsonl"
_QUIET_LOG = llama_cpp.llama_log_callback(lambda *_: None)  # must stay referenced


def medec_text() -> str:
    """Clinical notes from MEDEC csv files (quoted fields contain newlines)."""
    parts = []
    for path in sorted(glob.glob(f"{DATA}/medec/*.csv")):
        with open(path, newline="", encoding="utf-8") as f:
            parts += [row["Text"] for row in csv.DictReader(f) if row.get("Text")]
    return "\n\n".join(parts)


def kqa_rows() -> list:
    with open(KQA, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def tok(llm: Llama, text: str) -> list:
    return llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)


def last_argmax(llm: Llama) -> int:
    ptr = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
    return int(np.argmax(np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),))))


def bench_generate(llm: Llama, prompt: list, gen: int) -> dict:
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(prompt)
    t1 = time.perf_counter()
    nxt = last_argmax(llm)
    out = []
    for _ in range(gen):
        out.append(nxt)
        llm.eval([nxt])
        nxt = last_argmax(llm)
    t2 = time.perf_counter()
    return {"prefill_s": t1 - t0, "decode_s": t2 - t1,
            "prefill_tok_s": len(prompt) / (t1 - t0), "decode_tok_s": gen / (t2 - t1),
            "first_tokens": out[:8]}


def build_j1(llm: Llama, ctx_tokens=1000, n_checks=25, check_tokens=60):
    """Shared prefix (~ctx_tokens) and n_checks suffixes of ~check_tokens, from K-QA."""
    rows = kqa_rows()
    head = ("<|im_start|>system\nYou are a strict medical fact checker. You are given a "
            "patient question and an answer written by an assistant. For each statement "
            "you are asked about, reply yes if the answer states or clearly implies it, "
            "and no otherwise. Do not explain.<|im_end|>\n<|im_start|>user\n")
    q = rows[0]["Question"]
    answer = " ".join(r["Free_form_answer"] for r in rows)  # padded, truncated below
    pre = tok(llm, head + f"Question: {q}\n\nAnswer: ")
    end = tok(llm, "<|im_end|>\n")
    prefix = pre + tok(llm, answer)[: ctx_tokens - len(pre) - len(end)] + end
    claims = [c.strip() for r in rows for c in r["Must_have"]]  # already JSON lists
    c_head = tok(llm, "<|im_start|>user\nDoes the answer state the following? ")
    c_tail = tok(llm, "\nReply yes or no.<|im_end|>\n<|im_start|>assistant\n")
    room = check_tokens - len(c_head) - len(c_tail)
    checks, i = [], 0
    while len(checks) < n_checks:
        body = []
        while len(body) < room:  # join claims until the check reaches its size
            body += tok(llm, claims[i % len(claims)] + ". ")
            i += 1
        checks.append(c_head + body[:room] + c_tail)
    return prefix, checks


def bench_j1(llm: Llama, prefix: list, checks: list) -> dict:
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(prefix)
    t1 = time.perf_counter()
    answers = []
    for c in checks:
        llm.n_tokens = len(prefix)  # rewind: eval() removes KV past n_tokens, keeps prefix
        llm.eval(c)
        answers.append(last_argmax(llm))
    t2 = time.perf_counter()
    n = len(prefix) + sum(map(len, checks))
    return {"prefix_s": t1 - t0, "checks_s": t2 - t1, "total_s": t2 - t0,
            "checks_per_s": len(checks) / (t2 - t0), "prefill_tok_s": n / (t2 - t0),
            "suffix_tok_s": sum(map(len, checks)) / (t2 - t1),
            "answer_ids": sorted(set(answers))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-file")
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--gen-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--judge", choices=["J1"])
    ap.add_argument("--workload", help="J1 token ids from `assay bench judge --dump-workload F` "
                    "(prefix, suffixes, pass_label): run exactly assay's workload")
    ap.add_argument("--flash-attn", action="store_true", help="enable flash attention")
    ap.add_argument("--dump-workload", help="write the token ids used to this JSON file")
    a = ap.parse_args()

    llama_cpp.llama_log_set(_QUIET_LOG, None)
    t_load = time.perf_counter()
    llm = Llama(model_path=a.model, n_ctx=4096, n_batch=4096, n_threads=a.threads,
                n_threads_batch=a.threads, flash_attn=a.flash_attn, verbose=False)
    load_s = time.perf_counter() - t_load
    res = {"engine": "llama.cpp", "version": llama_cpp.__version__, "threads": a.threads, "load_s": round(load_s, 3),
           "system_info": llama_cpp.llama_print_system_info().decode().strip(),
           "flash_attn": a.flash_attn}

    if a.judge:
        if a.workload:
            w = json.load(open(a.workload, encoding="utf-8"))
            # The same rows assay scores: each suffix plus the pass label but its last token.
            prefix, checks = w["prefix"], [s + w["pass_label"][:-1] for s in w["suffixes"]]
        else:
            prefix, checks = build_j1(llm)
        workload = {"prefix": prefix, "checks": checks}
        bench_j1(llm, prefix, checks)  # warm-up
        runs = [bench_j1(llm, prefix, checks) for _ in range(a.repeats)]
        res.update(mode="judge", judge=a.judge, prefix_tokens=len(prefix),
                   n_checks=len(checks), check_tokens=[len(c) for c in checks])
        keys = ("checks_per_s", "prefill_tok_s", "suffix_tok_s")
    else:
        if a.prompt_file:
            text = open(a.prompt_file, encoding="utf-8").read()
        else:
            text = medec_text()
        prompt = tok(llm, text)[: a.prompt_tokens]
        if len(prompt) + a.gen_tokens > 4096:
            sys.exit("prompt + gen-tokens exceeds n_ctx 4096")
        workload = {"prompt": prompt}
        bench_generate(llm, prompt, a.gen_tokens)  # warm-up
        runs = [bench_generate(llm, prompt, a.gen_tokens) for _ in range(a.repeats)]
        res.update(mode="generate", prompt_tokens=len(prompt), gen_tokens=a.gen_tokens)
        keys = ("prefill_tok_s", "decode_tok_s")

    for k in keys:
        res[k] = round(statistics.median(r[k] for r in runs), 2)
    # Peak resident memory, mapped model pages included (llama.cpp reads weights through mmap).
    res["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    res["runs"] = [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
                   for r in runs]
    if a.dump_workload:
        with open(a.dump_workload, "w", encoding="utf-8") as f:
            json.dump(workload, f)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
