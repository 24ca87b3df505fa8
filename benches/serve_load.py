"""Workload G1 client: N concurrent clients, each sending R completion requests one after
another to an OpenAI-compatible server; prints one JSON line per N with the aggregate generated
tokens per second (completion tokens from each response's usage, over the wall time of the
whole round). Standard library only, so the same client drives every engine."""

import argparse
import json
import threading
import time
import urllib.request


def complete(base, model, prompt, max_tokens, seed):
    body = json.dumps({"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.8, "seed": seed}).encode()
    req = urllib.request.Request(f"{base}/completions", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.load(r)["usage"]["completion_tokens"]


def run_round(n, client):
    """Runs `client(i)` for i in 0..n on n threads at once; returns the round's wall seconds."""
    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--engine", required=True)
    p.add_argument("--base-url", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--clients", default="1,4,16")
    p.add_argument("--requests-per-client", type=int, default=3)
    p.add_argument("--max-tokens", type=int, default=64)
    a = p.parse_args()
    prompt = "Once upon a time, in a small village by the sea, there lived an old lighthouse keeper who"
    complete(a.base_url, a.model, prompt, 8, 0)  # warm-up
    for n in [int(c) for c in a.clients.split(",")]:
        tokens = [0] * n

        def client(i):
            for r in range(a.requests_per_client):
                tokens[i] += complete(a.base_url, a.model, prompt, a.max_tokens, 1000 * i + r)

        secs = run_round(n, client)
        total = sum(tokens)
        print(json.dumps({"engine": a.engine, "clients": n, "requests": n * a.requests_per_client, "tokens": total, "seconds": round(secs, 2), "tok_s": round(total / secs, 1)}), flush=True)


if __name__ == "__main__":
    main()
