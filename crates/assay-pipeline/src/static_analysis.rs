//! Static analysis of an evaluator set against its task prompt, without judging any output:
//! constraints the prompt states that no check covers (candidate checks), checks that ask
//! nearly the same thing (possible duplicates or contradictions), and checks a judge finds
//! inconsistent with the prompt. The last two become questions for the expert.

use assay_core::{Check, JudgeItem};

/// Cosine similarity at or above which a check covers a prompt constraint.
pub const COVERED_SIMILARITY: f32 = 0.55;
/// Cosine similarity at or above which two checks are flagged as overlapping.
pub const OVERLAP_SIMILARITY: f32 = 0.85;

/// Words that make a prompt sentence a constraint on the output.
const CUES: &[&str] = &[
    "must",
    "should",
    "never",
    "always",
    "do not",
    "don't",
    "avoid",
    "only",
    "at least",
    "at most",
    "no more than",
    "include",
    "use",
    "respond",
    "answer",
    "write",
    "keep",
    "make sure",
    "cite",
    "mention",
    "list",
    "explain",
    "format",
    "limit",
    "without",
    "end with",
    "start with",
    "begin with",
];

/// The sentences (or bullet lines) of `prompt` that constrain the output.
pub fn prompt_constraints(prompt: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in prompt.lines() {
        let line = line.trim().trim_start_matches(['-', '*', '•']).trim();
        let mut sentence = String::new();
        for c in line.chars() {
            sentence.push(c);
            if matches!(c, '.' | '!' | '?' | ';') {
                push_constraint(&mut out, &sentence);
                sentence.clear();
            }
        }
        push_constraint(&mut out, &sentence);
    }
    out
}

fn push_constraint(out: &mut Vec<String>, sentence: &str) {
    let s = sentence.trim();
    let lower = format!(" {} ", s.to_lowercase());
    if s.split_whitespace().count() >= 3 && CUES.iter().any(|cue| lower.contains(&format!(" {cue} ")) || lower.contains(&format!(" {cue},"))) && !out.iter().any(|o| o == s) {
        out.push(s.to_string());
    }
}

use crate::taxonomy::cosine;

/// Indices of the constraints whose best match among the checks is below `COVERED_SIMILARITY`.
pub fn uncovered(constraint_vectors: &[Vec<f32>], check_vectors: &[Vec<f32>]) -> Vec<usize> {
    (0..constraint_vectors.len()).filter(|&i| check_vectors.iter().map(|c| cosine(&constraint_vectors[i], c)).fold(f32::MIN, f32::max) < COVERED_SIMILARITY).collect()
}

/// Pairs of checks at or above `OVERLAP_SIMILARITY`, with their similarity.
pub fn overlapping(check_vectors: &[Vec<f32>]) -> Vec<(usize, usize, f32)> {
    let mut pairs = Vec::new();
    for i in 0..check_vectors.len() {
        for j in i + 1..check_vectors.len() {
            let s = cosine(&check_vectors[i], &check_vectors[j]);
            if s >= OVERLAP_SIMILARITY {
                pairs.push((i, j, s));
            }
        }
    }
    pairs
}

/// The text a check is compared by: its question and pass criteria.
pub fn check_text(check: &Check) -> String {
    if check.pass_criteria.is_empty() {
        check.question.clone()
    } else {
        format!("{} {}", check.question, check.pass_criteria)
    }
}

/// A candidate check for a prompt constraint no check covers.
pub fn constraint_check(id: String, constraint: &str) -> Check {
    Check {
        id,
        name: String::new(),
        question: format!("Does the output follow this instruction of the task: \"{constraint}\"?"),
        pass_criteria: "PASS if the output follows the instruction as stated; FAIL if it breaks it.".into(),
        fail_examples: Vec::new(),
        threshold: None,
    }
}

/// The judge's view of a check as an "output" for the task: asked `consistency_check`, a low
/// P(PASS) flags a check that may contradict the prompt.
pub fn as_judge_item(task_prompt: &str, check: &Check) -> JudgeItem {
    JudgeItem { id: check.id.clone(), input: task_prompt.to_string(), output: format!("Grading rule: {}", check_text(check)), context: None }
}

pub fn consistency_check() -> Check {
    Check {
        id: "consistent-with-task".into(),
        name: String::new(),
        question:
            "The output is a rule for grading answers to the task above. Is the rule consistent with the task's instructions (it never requires what they forbid, nor forbids what they require)?"
                .into(),
        pass_criteria: String::new(),
        fail_examples: Vec::new(),
        threshold: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_constraint_sentences() {
        let prompt = "You are a medical assistant.\nAnswer in plain language. Always mention when to see a doctor!\n- Do not give doses\nThe weather is nice.";
        assert_eq!(prompt_constraints(prompt), vec!["Answer in plain language.", "Always mention when to see a doctor!", "Do not give doses"]);
    }

    #[test]
    fn coverage_and_overlap_by_similarity() {
        let constraints = vec![vec![1.0, 0.0], vec![0.0, 1.0]];
        let checks = vec![vec![0.9, 0.1], vec![1.0, 0.05]];
        assert_eq!(uncovered(&constraints, &checks), vec![1]);
        assert_eq!(overlapping(&checks).len(), 1);
        assert!(uncovered(&constraints, &[]).len() == 2);
    }
}
