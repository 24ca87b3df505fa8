"""Workload J2 through `POST /v1/judge`: the 64 K-QA answers x 25 checks of
`assay bench judge --workload j2`, split over N concurrent clients (each posts its share of the
items in one request); prints one JSON line per N with the checks judged per second over the
wall time of the round. Standard library only.

    python3 benches/judge_load.py --base-url http://127.0.0.1:8080/v1 --clients 1,8
"""

import argparse
import json
import urllib.request

from serve_load import run_round


def j2(kqa, checks_path):
    rows = [json.loads(l) for l in open(kqa) if l.strip()]
    rows = [r for r in rows if r.get("Free_form_answer", "").strip()][:64]
    items = [{"id": f"kqa-{i}", "input": r["Question"], "output": r["Free_form_answer"]} for i, r in enumerate(rows)]
    return items, json.load(open(checks_path))


def judge(base, checks, items):
    body = json.dumps({"checks": checks, "items": items}).encode()
    req = urllib.request.Request(f"{base}/judge", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=3600) as r:
        return sum(len(x["judgments"]) for x in json.load(r)["results"])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base-url", required=True)
    p.add_argument("--clients", default="1,8")
    p.add_argument("--kqa", default="../shared/data/kqa/questions_w_answers.jsonl")
    p.add_argument("--checks", default="examples/medical_answer_checks.json")
    a = p.parse_args()
    items, checks = j2(a.kqa, a.checks)
    for n in [int(c) for c in a.clients.split(",")]:
        judged = [0] * n

        def client(i):
            judged[i] = judge(a.base_url, checks, items[i::n])

        secs = run_round(n, client)
        print(json.dumps({"engine": "assay", "workload": "J2", "clients": n, "checks": sum(judged), "seconds": round(secs, 1), "checks_per_s": round(sum(judged) / secs, 2)}), flush=True)


if __name__ == "__main__":
    main()
