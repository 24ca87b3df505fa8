"""How long a client waits for a one-pair POST /v1/judge while a background judge run fills the
engine. For each assay binary given: starts `assay serve` on SmolLM2 with a fresh store, times
the request on the idle server, starts a judge run of ITEMS IFEval outputs x 2 checks (the
server's own background work, CHUNK items' units in the engine at once; the server's default
is 8), then times the same request REPEATS times while the run goes on. Prints one JSON line
per binary: the idle time, each busy time, and how far the run had got. Run the binaries one
after another on an otherwise idle machine; compare their lines. Standard library only.

usage: python3 benches/interactive_latency.py target/release/assay [other/assay ...]"""

import argparse
import json
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IFEVAL = os.path.join(ROOT, "../shared/data/ifeval/input_response_data_gpt4_20231107_145030.jsonl")
CHECKS = [
    {"id": "follows_format", "question": "Does the response follow every formatting instruction of the prompt (sections, bullet points, capital letters, punctuation)?"},
    {"id": "on_topic", "question": "Does the response address the task in the prompt?"},
]
ONE_PAIR = {"checks": CHECKS[1:], "items": [{"id": "x", "input": "Say hi in one word.", "output": "Hi."}]}


def call(base, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, method=method, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=900) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def timed(base, path, body):
    start = time.perf_counter()
    status, answer = call(base, "POST", path, body)
    assert status == 200, answer
    return round(time.perf_counter() - start, 2)


def measure(binary, port, items, chunk, repeats):
    base = f"http://127.0.0.1:{port}"
    store = tempfile.mkdtemp()
    server = subprocess.Popen([binary, "serve", "--model", "smollm2", "--embed-model", "minilm", "--port", str(port), "--db", os.path.join(store, "assay.db")], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                if call(base, "GET", "/health")[0] == 200:
                    break
            except OSError:
                pass
            assert server.poll() is None, f"{binary} serve exited"
            time.sleep(0.5)
        with open(IFEVAL) as f:
            rows = [json.loads(line) for line in f][:items]
        dataset = [{"id": f"ifeval-{i}", "input": r["prompt"], "output": r["response"]} for i, r in enumerate(rows)]
        for path, body in [("/v1/projects", {"name": "latency", "generation_prompt": "Follow the instructions.", "task": "instruction following"}), ("/v1/projects/latency/datasets", {"name": "ifeval", "items": dataset}), ("/v1/projects/latency/sets", {"checks": {"version": "v1", "checks": CHECKS}, "reason": "two checks"})]:
            status, answer = call(base, "POST", path, body)
            assert status == 201, answer
        idle = timed(base, "/v1/judge", ONE_PAIR)
        status, started = call(base, "POST", "/v1/projects/latency/runs", {"chunk_items": chunk})
        assert status == 202, started
        time.sleep(3)  # the run's units are in the engine's queue
        busy = []
        for _ in range(repeats):
            busy.append(timed(base, "/v1/judge", ONE_PAIR))
            time.sleep(1)
        _, run = call(base, "GET", f"/v1/projects/latency/runs/{started['run']['id']}")
        return {"binary": binary, "chunk": chunk, "idle_s": idle, "busy_s": busy, "run_progress": [run["run"]["progress_done"], run["run"]["progress_total"]]}
    finally:
        server.terminate()
        server.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("binaries", nargs="+")
    parser.add_argument("--items", type=int, default=60, help="IFEval outputs in the background run")
    parser.add_argument("--chunk", type=int, default=8, help="items the run sends the engine at once")
    parser.add_argument("--repeats", type=int, default=3, help="timed requests while the run goes on")
    parser.add_argument("--port", type=int, default=18473)
    args = parser.parse_args()
    for binary in args.binaries:
        print(json.dumps(measure(binary, args.port, args.items, args.chunk, args.repeats)), flush=True)


if __name__ == "__main__":
    main()
