//! The check writer: a model turns a cluster of errors (or a check and what is wrong with it)
//! into a binary check: a question where PASS means the output is good, pass criteria and
//! failing examples. An answer that cannot be read falls back to a check built from the
//! errors themselves, and the caller counts it.

use crate::backend::ChatRequest;
use crate::lenient_json::first_json_value;
use assay_core::{Check, SamplingParams};
use assay_engine::ChatMessage;
use serde_json::Value;

/// Longest question accepted from a model, in characters.
const MAX_QUESTION: usize = 400;

const SYSTEM: &str = "You write binary evaluation checks: yes/no questions a judge asks of an output, where yes (PASS) means the output is good.";
const FORMAT: &str = "Answer as JSON only: {\"question\": \"...\", \"pass_criteria\": \"...\", \"fail_examples\": [\"...\"]}";

/// Asks for a check that catches the kind of error the `errors` (one cluster) describe.
pub fn cluster_request(task_prompt: &str, errors: &[&str], max_tokens: usize, seed: u64) -> ChatRequest {
    let listed: String = errors.iter().map(|e| format!("- {e}\n")).collect();
    let user = format!(
        "Task instructions:\n{task_prompt}\n\nA reviewer found these errors in outputs of the task:\n{listed}\n\
         Write one yes/no question that detects this kind of error in any output of the task. PASS means the output is free of it.\n{FORMAT}"
    );
    request(user, max_tokens, seed)
}

/// Asks for a check, in the task instructions' own terms, on the requirement that the outputs
/// an expert rejected with `notes` break: the notes name one output's particulars, the check
/// must apply to every input of the task.
pub fn task_request(task_prompt: &str, notes: &[&str], max_tokens: usize, seed: u64) -> ChatRequest {
    let listed: String = notes.iter().map(|e| format!("- {e}\n")).collect();
    let user = format!(
        "Task instructions:\n{task_prompt}\n\nAn expert rejected several outputs of the task, each written for a different input, with these notes:\n{listed}\n\
         Which requirement of the task instructions do these outputs break? Write one yes/no question that checks it in the task instructions' own terms, so that it applies to the output for any input. PASS means the output meets the requirement.\n{FORMAT}"
    );
    request(user, max_tokens, seed)
}

/// Asks for a rewrite of `check` that fixes `problem`; `rulings` are the expert's words.
pub fn rewrite_request(task_prompt: &str, check: &Check, problem: &str, rulings: &[String], max_tokens: usize, seed: u64) -> ChatRequest {
    let rulings: String = rulings.iter().map(|r| format!("- {r}\n")).collect();
    let user = format!(
        "Task instructions:\n{task_prompt}\n\nA check used to grade outputs of the task:\nQuestion: {}\nPass criteria: {}\n\n\
         What is wrong with it: {problem}\n{}\
         Rewrite the check so that judges answer it consistently and as the expert would. PASS means the output is good.\n{FORMAT}",
        check.question,
        check.pass_criteria,
        if rulings.is_empty() { String::new() } else { format!("The expert ruled:\n{rulings}") }
    );
    request(user, max_tokens, seed)
}

/// Asks for a check that catches what the expert objects to in `output`, which passed every
/// check of the set.
pub fn critique_request(task_prompt: &str, input: &str, output: &str, note: &str, max_tokens: usize, seed: u64) -> ChatRequest {
    let user = format!(
        "Task instructions:\n{task_prompt}\n\nInput:\n{input}\n\nAn output of the task passed every existing check, but the expert rejected it:\n{output}\n\n\
         The expert's note: {note}\n\
         Write one yes/no question that detects this problem in any output of the task. PASS means the output is free of it.\n{FORMAT}"
    );
    request(user, max_tokens, seed)
}

fn request(user: String, max_tokens: usize, seed: u64) -> ChatRequest {
    ChatRequest {
        messages: vec![ChatMessage::new("system", SYSTEM), ChatMessage::new("user", &user)],
        answer_prefix: "{\"question\": \"".into(),
        params: SamplingParams { max_tokens, temperature: 0.0, seed: Some(seed), ..Default::default() },
    }
}

/// The question, pass criteria and failing examples in a check writer's answer, if readable.
pub fn parse_check(answer: &str) -> Option<(String, String, Vec<String>)> {
    let value = first_json_value(answer)?;
    let question = value["question"].as_str()?.trim();
    // A judge needs a real question: a few words ending in a question mark.
    if question.split_whitespace().count() < 3 || !question.ends_with('?') || question.chars().count() > MAX_QUESTION {
        return None;
    }
    let criteria = value["pass_criteria"].as_str().unwrap_or("").trim().to_string();
    let examples = match &value["fail_examples"] {
        Value::Array(xs) => xs.iter().filter_map(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).take(5).collect(),
        Value::String(s) if !s.trim().is_empty() => vec![s.trim().to_string()],
        _ => Vec::new(),
    };
    Some((question.to_string(), criteria, examples))
}

/// A short id for a check from its words: `<prefix>-<up to four words>`.
pub fn check_id(prefix: &str, text: &str) -> String {
    const FILLER: &[&str] = &["the", "a", "an", "is", "does", "do", "of", "to", "and", "or", "in", "it", "this", "that", "output", "free", "any", "be", "are", "has", "have"];
    let words: Vec<String> = text.split(|c: char| !c.is_alphanumeric()).map(str::to_lowercase).filter(|w| !w.is_empty() && !FILLER.contains(&w.as_str())).take(4).collect();
    if words.is_empty() {
        prefix.to_string()
    } else {
        format!("{prefix}-{}", words.join("-"))
    }
}

/// A check made from a cluster whose check writer answer was unreadable: the cluster's most
/// typical error as the question, its members as failing examples.
pub fn fallback_check(id: String, errors: &[&str]) -> Check {
    Check {
        id,
        name: String::new(),
        question: format!("Is the output free of this problem: {}?", errors[0].trim_end_matches(['.', '?', '!'])),
        pass_criteria: "PASS if the output does not have this problem; FAIL if it does.".into(),
        fail_examples: errors.iter().take(3).map(|e| e.to_string()).collect(),
        threshold: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_check_and_refuses_an_empty_question() {
        let (q, c, ex) = parse_check(r#"{"question": "Does the answer cite a source?", "pass_criteria": "names one", "fail_examples": ["no source", ""]}"#).unwrap();
        assert_eq!((q.as_str(), c.as_str(), ex), ("Does the answer cite a source?", "names one", vec!["no source".to_string()]));
        assert!(parse_check(r#"{"question": "  "}"#).is_none());
        assert!(parse_check(r#"{"question": "sleeping in a hammock"}"#).is_none(), "not a question");
        assert!(parse_check("no json").is_none());
        // Cut off after the question: still a check.
        assert_eq!(parse_check(r#"{"question": "Is it short?", "pass_criteria": "under 50 wo"#).unwrap().0, "Is it short?");
    }

    #[test]
    fn ids_are_short_and_readable() {
        assert_eq!(check_id("c1", "Does the output cite any source for its claims?"), "c1-cite-source-for-its");
        assert_eq!(check_id("c2", "???"), "c2");
    }
}
