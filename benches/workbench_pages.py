#!/usr/bin/env python3
"""Workbench page latency with a 10,000-item dataset in the store: the time to the first byte of
every kind of page (and of its /v1 twin), median and max over repeats, against the 200 ms the
issue sets. The server is `assay serve` with a random-weight tiny model as judge (the pages'
cost is the store and the rendering, not the model), so judging 10,000 items x 2 checks takes
minutes rather than hours. Items are IFEval prompts and responses, cut short and repeated
with new ids. Standard library only.

    python3 benches/workbench_pages.py [--items 10000] [--repeats 5] [--binary target/release/assay]
"""

import argparse
import json
import pathlib
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[1]
IFEVAL = ROOT.parent / "shared" / "data" / "ifeval" / "input_response_data_gpt4_20231107_145030.jsonl"


def call(base, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=3600) as r:
        return json.load(r)


def first_byte(base, path):
    """Seconds from sending the request to the first byte of the answer (status checked)."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as s:
        start = time.perf_counter()
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
        first = s.recv(1)
        elapsed = time.perf_counter() - start
        rest = first + s.recv(64)
        status = rest.split(b" ")[1].decode()
        while s.recv(65536):
            pass
    if status != "200":
        raise SystemExit(f"GET {path}: status {status}")
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--binary", default=str(ROOT / "target" / "release" / "assay"))
    parser.add_argument("--port", type=int, default=18190)
    args = parser.parse_args()

    rows = [json.loads(line) for line in IFEVAL.read_text().splitlines() if line.strip()]
    items = [{"id": str(i), "input": rows[i % len(rows)]["prompt"][:160], "output": rows[i % len(rows)]["response"][:160]} for i in range(args.items)]
    checks = [
        {"id": "no_commas", "question": "Does the response avoid commas, as the prompt asks?"},
        {"id": "length", "question": "Does the response respect the length the prompt sets?"},
    ]
    with tempfile.TemporaryDirectory() as tmp:
        base = f"http://127.0.0.1:{args.port}"
        server = subprocess.Popen([args.binary, "serve", "--model", "random:tiny-llama", "--embed-model", "minilm", "--port", str(args.port), "--db", f"{tmp}/bench.db", "--max-body-bytes", str(64 << 20)],
                                  cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(600):
                try:
                    urllib.request.urlopen(base + "/health", timeout=1)
                    break
                except Exception:
                    time.sleep(0.2)
            tiny = {"model": "random:tiny-llama"}
            roles = {"generator": tiny, "annotator": tiny, "judge": tiny, "check_writer": tiny, "embedder": {"model": "minilm"}}
            call(base, "POST", "/v1/projects", {"name": "bench", "generation_prompt": "Follow the instructions.", "config": {"roles": roles}})
            call(base, "POST", "/v1/projects/bench/datasets", {"name": "big", "items": items})
            call(base, "POST", "/v1/projects/bench/sets", {"checks": checks})
            started = time.perf_counter()
            run = call(base, "POST", "/v1/projects/bench/runs", {"chunk_items": 256})["run"]["id"]
            while call(base, "GET", f"/v1/projects/bench/runs/{run}")["run"]["status"] in ("queued", "running"):
                time.sleep(2)
            judged = time.perf_counter() - started
            record = call(base, "GET", f"/v1/projects/bench/runs/{run}")["run"]
            if record["status"] != "done":
                raise SystemExit(f"the judge run ended {record['status']}: {record['error']}")
            labels = [{"item": str(i), "check": "no_commas", "verdict": "PASS" if i % 3 else "FAIL"} for i in range(0, args.items, 50)]
            call(base, "POST", "/v1/projects/bench/labels", {"labels": labels})
            question = call(base, "GET", "/v1/projects/bench/questions")["questions"][0]["id"]
            last = (args.items + 49) // 50
            pages = [
                ("projects", "/ui"),
                ("project", "/ui/p/bench"),
                ("items, page 1", "/ui/p/bench/data/big"),
                (f"items, page {last} (last)", f"/ui/p/bench/data/big?page={last}"),
                ("items, search", "/ui/p/bench/data/big?q=wikipedia"),
                ("item", "/ui/p/bench/data/big/items/9999"),
                ("review, all, pair 10,000", f"/ui/p/bench/review?i={args.items}"),
                ("review, unlabelled", "/ui/p/bench/review?filter=unlabelled"),
                ("review, disagreements", "/ui/p/bench/review?filter=disagree"),
                ("questions", "/ui/p/bench/questions"),
                ("question", f"/ui/p/bench/questions/{question}"),
                ("report", "/ui/p/bench/report"),
                ("version", "/ui/p/bench/sets/1"),
                ("check", "/ui/p/bench/sets/1/checks/no_commas"),
                ("run", f"/ui/p/bench/runs/{run}"),
                ("JSON: items page", "/v1/projects/bench/datasets/big/items"),
                ("JSON: review", f"/v1/projects/bench/review?i={args.items}"),
                ("JSON: report", "/v1/projects/bench/report"),
            ]
            results = []
            for name, path in pages:
                times = [first_byte(base, path) for _ in range(args.repeats)]
                results.append({"page": name, "path": path, "median_ms": round(1000 * statistics.median(times), 1), "max_ms": round(1000 * max(times), 1)})
        finally:
            server.terminate()
            server.wait()
    print(f"{args.items} items x {len(checks)} checks judged by random:tiny-llama in {judged:.0f} s; first byte over {args.repeats} requests each:")
    print(f"{'page':32} {'median ms':>10} {'max ms':>8}")
    for r in results:
        print(f"{r['page']:32} {r['median_ms']:>10} {r['max_ms']:>8}")
    print(json.dumps({"items": args.items, "pages": results}))


if __name__ == "__main__":
    main()
