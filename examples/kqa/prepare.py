#!/usr/bin/env python3
"""K-QA questions as discovery input: each question an item with the physicians' Must_have
statements as its reference, so that `assay report` can count how many of them the
evaluator set's checks recover.

    python3 examples/kqa/prepare.py --out DIR [--items N]

writes DIR/items.jsonl ({"id", "input": question, "reference": {"must_have": [...]}}).
Standard library only."""

import argparse
import json
import pathlib

DATA = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data" / "kqa" / "questions_w_answers.jsonl"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=pathlib.Path)
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--data", type=pathlib.Path, default=DATA)
    args = parser.parse_args()
    rows = [json.loads(line) for line in open(args.data, encoding="utf-8")][: args.items]
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "items.jsonl", "w", encoding="utf-8") as items:
        for n, r in enumerate(rows):
            items.write(json.dumps({"id": f"kqa-{n}", "input": r["Question"], "reference": {"must_have": r["Must_have"]}}) + "\n")
    print(f"{len(rows)} questions, {sum(len(r['Must_have']) for r in rows)} must-have statements in {args.out}")


if __name__ == "__main__":
    main()
