#!/usr/bin/env python3
"""IFEval as an assay project's data: items (prompt, GPT-4 response), one binary check per
instruction type, and the official verifier's strict results as expert labels.

    python3 examples/ifeval/prepare.py --out DIR [--checks N] [--items M]

writes DIR/items.jsonl, DIR/checks.json and DIR/labels.jsonl (see examples/ifeval/README.md).
The N instruction types with the most FAILs in the verifier's results become checks; the
first M responses that carry at least one of them become items. Standard library only."""

import argparse
import collections
import json
import pathlib

DATA = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data" / "ifeval"

# What each instruction type asks of a response, phrased so that PASS means it complies.
QUESTIONS = {
    "change_case:capital_word_frequency": "Does the response use fully capitalised words as often as the prompt allows or requires?",
    "change_case:english_capital": "Is the whole response written in English capital letters, as the prompt asks?",
    "change_case:english_lowercase": "Is the whole response written in English lowercase letters, as the prompt asks?",
    "combination:repeat_prompt": "Does the response first repeat the request word for word, as the prompt asks, before answering?",
    "combination:two_responses": "Does the response give two different responses separated as the prompt asks?",
    "detectable_content:number_placeholders": "Does the response contain at least as many square-bracket placeholders as the prompt asks?",
    "detectable_content:postscript": "Does the response end with the postscript the prompt asks for?",
    "detectable_format:constrained_response": "Does the response answer with one of the exact options the prompt allows?",
    "detectable_format:json_format": "Is the entire response valid JSON, as the prompt asks?",
    "detectable_format:multiple_sections": "Does the response have the number of marked sections the prompt asks for?",
    "detectable_format:number_bullet_lists": "Does the response have exactly the number of markdown bullet points the prompt asks for?",
    "detectable_format:number_highlighted_sections": "Does the response highlight at least as many sections with markdown as the prompt asks?",
    "detectable_format:title": "Does the response include a title wrapped in double angular brackets, as the prompt asks?",
    "keywords:existence": "Does the response include every keyword the prompt requires?",
    "keywords:forbidden_words": "Does the response avoid every word the prompt forbids?",
    "keywords:frequency": "Does the response use the required word as many times as the prompt asks?",
    "keywords:letter_frequency": "Does the response use the given letter as many times as the prompt asks?",
    "language:response_language": "Is the response written entirely in the language the prompt asks for?",
    "length_constraints:nth_paragraph_first_word": "Does the required paragraph start with the word the prompt specifies, with the paragraph count right?",
    "length_constraints:number_paragraphs": "Does the response have exactly the number of paragraphs the prompt asks for?",
    "length_constraints:number_sentences": "Does the response respect the number of sentences the prompt sets?",
    "length_constraints:number_words": "Does the response respect the word count the prompt sets?",
    "punctuation:no_comma": "Does the response avoid commas entirely, as the prompt asks?",
    "startend:end_checker": "Does the response end with exactly the phrase the prompt asks for?",
    "startend:quotation": "Is the whole response wrapped in double quotation marks, as the prompt asks?",
}


def note(check, ok, kwargs):
    """The label's words, as an expert would give them: what the verifier found, naming the
    instruction and its parameters (the simulated expert of `assay answer --from-labels` rules
    with them)."""
    params = ", ".join(f"{k} {v}" for k, v in (kwargs or {}).items())
    return f"IFEval verifier (strict): the response {'follows' if ok else 'does not follow'} the prompt's {check} instruction{f' ({params})' if params else ''}."


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=pathlib.Path, help="folder for items.jsonl, checks.json, labels.jsonl")
    parser.add_argument("--checks", type=int, default=6, help="instruction types to keep (most FAILs first)")
    parser.add_argument("--items", type=int, default=60, help="responses to keep")
    parser.add_argument("--data", type=pathlib.Path, default=DATA, help="the IFEval folder of ../shared/data")
    args = parser.parse_args()

    keys, kwargs = {}, {}
    for line in open(args.data / "input_data.jsonl", encoding="utf-8"):
        row = json.loads(line)
        keys[row["prompt"]] = str(row["key"])
        kwargs[row["prompt"]] = {i: {k: v for k, v in kw.items() if v is not None} for i, kw in zip(row["instruction_id_list"], row["kwargs"])}
    results = [json.loads(line) for line in open(args.data / "eval_results_strict.jsonl", encoding="utf-8")]
    fails = collections.Counter(i for r in results for i, ok in zip(r["instruction_id_list"], r["follow_instruction_list"]) if not ok)
    kept = [i for i, _ in sorted(fails.items(), key=lambda kv: (-kv[1], kv[0]))][: args.checks]

    args.out.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(args.out / "items.jsonl", "w", encoding="utf-8") as items, open(args.out / "labels.jsonl", "w", encoding="utf-8") as labels:
        for r in results:
            # An instruction type can appear twice in one prompt: it passes only if both do.
            labelled = {}
            for i, ok in zip(r["instruction_id_list"], r["follow_instruction_list"]):
                if i in kept:
                    labelled[i] = labelled.get(i, True) and ok
            if not labelled or r["prompt"] not in keys or n >= args.items:
                continue
            key = keys[r["prompt"]]
            items.write(json.dumps({"id": key, "input": r["prompt"], "output": r["response"], "metadata": {"instructions": r["instruction_id_list"]}}) + "\n")
            for check, ok in labelled.items():
                labels.write(json.dumps({"item": key, "check": check, "verdict": "PASS" if ok else "FAIL", "note": note(check, ok, kwargs[r["prompt"]].get(check))}) + "\n")
            n += 1
    checks = [{"id": i, "question": QUESTIONS[i], "pass_criteria": "Only the instruction of this type in the prompt matters; PASS if the prompt has none."} for i in kept]
    (args.out / "checks.json").write_text(json.dumps(checks, indent=2) + "\n", encoding="utf-8")
    print(f"{n} items, {len(kept)} checks ({', '.join(kept)}) in {args.out}")


if __name__ == "__main__":
    main()
