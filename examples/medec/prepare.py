#!/usr/bin/env python3
"""MEDEC as a separation test: clinical notes with and without an expert-injected error.

    python3 examples/medec/prepare.py --out DIR [--items N]

writes DIR/items.jsonl (each note as the output to judge), DIR/checks.json (one check: the
note is free of medical errors) and DIR/labels.jsonl (PASS for notes without an error, FAIL
for notes with one, from MEDEC's error flag). The first N/2 notes of each kind are kept.
Standard library only (MEDEC's CSV has quoted fields with newlines: the csv module reads them)."""

import argparse
import csv
import json
import pathlib

DATA = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data" / "medec" / "MEDEC-MS-ValidationSet-with-GroundTruth-and-ErrorType.csv"
CHECK = {
    "id": "no-medical-error",
    "question": "Is the clinical note free of medical errors (in diagnosis, management, treatment, pharmacotherapy or causal organism)?",
    "pass_criteria": "PASS if every clinical statement is consistent with the findings described; FAIL if any diagnosis, treatment, drug or organism contradicts them.",
    "fail_examples": ["Culture tests indicate Neisseria gonorrhoeae (for findings of trichomoniasis)."],
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=pathlib.Path)
    parser.add_argument("--items", type=int, default=40, help="notes to keep, half with an error")
    parser.add_argument("--data", type=pathlib.Path, default=DATA)
    args = parser.parse_args()
    rows = list(csv.DictReader(open(args.data, encoding="utf-8", newline="")))
    kept = [r for r in rows if r["Error Flag"] == "0"][: args.items // 2] + [r for r in rows if r["Error Flag"] == "1"][: args.items - args.items // 2]
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "items.jsonl", "w", encoding="utf-8") as items, open(args.out / "labels.jsonl", "w", encoding="utf-8") as labels:
        for r in kept:
            items.write(json.dumps({"id": r["Text ID"], "input": "Write the clinical note for this encounter.", "output": r["Text"], "metadata": {"error_type": r["Error Type"]}}) + "\n")
            verdict = "FAIL" if r["Error Flag"] == "1" else "PASS"
            labels.write(json.dumps({"item": r["Text ID"], "check": CHECK["id"], "verdict": verdict, "note": "MEDEC error flag"}) + "\n")
    (args.out / "checks.json").write_text(json.dumps([CHECK], indent=2) + "\n", encoding="utf-8")
    print(f"{len(kept)} notes ({sum(r['Error Flag'] == '1' for r in kept)} with an error) in {args.out}")


if __name__ == "__main__":
    main()
