#!/usr/bin/env python3
"""Ground truth for an IFEval optimise run: do the gold outputs (and the best-of-N baselines
stored beside them) follow the prompt's instructions, by IFEval's rules?

    python3 benches/ifeval_verify.py --db assay.db --run 2

Reads the run's gold outputs from the database and the instructions from
../shared/data/ifeval/input_data.jsonl. Covers the six instruction types that
`examples/ifeval/prepare.py --checks 6` turns into checks; instructions of other types are
skipped. The rules follow the official verifier, with two approximations where it uses NLTK
(not available offline): words are runs of \\w characters (as its word counter), sentences are
split at . ! or ? followed by white space or the end.
"""

import argparse
import json
import pathlib
import re
import sqlite3

DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "ifeval" / "input_data.jsonl"


def compare(count, relation, n):
    return count < n if relation == "less than" else count >= n


def follows(instruction, kwargs, response):
    if instruction == "punctuation:no_comma":
        return "," not in response
    if instruction == "length_constraints:number_words":
        return compare(len(re.findall(r"\w+", response)), kwargs["relation"], kwargs["num_words"])
    if instruction == "length_constraints:number_sentences":
        sentences = [s for s in re.split(r"[.!?]+(?:\s+|$)", response.strip()) if s.strip()]
        return compare(len(sentences), kwargs["relation"], kwargs["num_sentences"])
    if instruction == "combination:repeat_prompt":
        return response.strip().lower().startswith(kwargs["prompt_to_repeat"].strip().lower())
    if instruction == "keywords:letter_frequency":
        return compare(response.lower().count(kwargs["letter"].lower()), kwargs["let_relation"], kwargs["let_frequency"])
    if instruction == "change_case:capital_word_frequency":
        capitals = [w for w in re.findall(r"\b\w+\b", response) if w.isupper()]
        return compare(len(capitals), kwargs["capital_relation"], kwargs["capital_frequency"])
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", required=True)
    parser.add_argument("--run", type=int, required=True, help="the optimise run")
    args = parser.parse_args()
    prompts = {str(r["key"]): r for r in map(json.loads, DATA.read_text().splitlines())}
    rows = sqlite3.connect(args.db).execute(
        "SELECT i.key, g.output, g.best_of_n FROM gold_outputs g JOIN items i ON i.id = g.item_id WHERE g.run_id = ? ORDER BY g.item_id", (args.run,)
    ).fetchall()
    if not rows:
        raise SystemExit(f"run {args.run} has no gold outputs in {args.db}")
    totals = {"gold": [0, 0], "best_of_n": [0, 0]}
    for key, gold, baseline in rows:
        prompt = prompts[key]
        outputs = {"gold": gold, "best_of_n": json.loads(baseline)["text"] if baseline else None}
        line = [key]
        for name, text in outputs.items():
            if text is None:
                continue
            verdicts = [follows(i, k, text) for i, k in zip(prompt["instruction_id_list"], prompt["kwargs"])]
            known = [v for v in verdicts if v is not None]
            totals[name][0] += sum(known)
            totals[name][1] += len(known)
            line.append(f"{name} {sum(known)}/{len(known)}")
        print("  ".join(line))
    for name, (followed, asked) in totals.items():
        if asked:
            print(f"{name}: follows {followed} of {asked} covered instructions ({followed / asked:.2f})")


if __name__ == "__main__":
    main()
