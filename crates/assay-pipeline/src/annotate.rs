//! The annotator: a meta-prompt (task prompt + input + context + output) that asks a model for
//! the output's concrete errors as JSON, and the robust reading of its answer.

use crate::backend::ChatRequest;
use crate::lenient_json::first_json_value;
use assay_core::SamplingParams;
use assay_engine::ChatMessage;
use assay_store::{AnnotatedError, Severity, Span};
use serde_json::Value;

/// Most errors kept from one answer: a model that lists fifty is not listing concrete errors.
const MAX_ERRORS: usize = 8;
/// Longest error description kept, in characters.
const MAX_DESCRIPTION: usize = 300;

/// The annotation request for one output; `retry` asks again, more insistently, after an
/// answer that could not be read.
pub fn annotation_request(task_prompt: &str, input: &str, context: Option<&str>, output: &str, max_tokens: usize, seed: u64, retry: bool) -> ChatRequest {
    let context = context.map(|c| format!("Context:\n{c}\n\n")).unwrap_or_default();
    let mut user = format!(
        "Task instructions:\n{task_prompt}\n\nInput:\n{input}\n\n{context}Output to review:\n{output}\n\n\
         List every concrete error in the output as a JSON array of objects with the keys \"error\" (what is wrong, in one sentence), \
         \"quote\" (the exact words of the output that are wrong, or \"\") and \"severity\" (\"minor\", \"major\" or \"critical\"). \
         Answer [] if the output has no error. Answer with the JSON array only."
    );
    if retry {
        user.push_str("\nYour previous answer was not a JSON array. Write only the array, for example [{\"error\": \"...\", \"quote\": \"...\", \"severity\": \"major\"}].");
    }
    ChatRequest {
        messages: vec![ChatMessage::new("system", "You are a meticulous reviewer of task outputs. You point out concrete errors only."), ChatMessage::new("user", &user)],
        answer_prefix: "[".into(),
        params: SamplingParams { max_tokens, temperature: if retry { 0.7 } else { 0.0 }, seed: Some(seed), ..Default::default() },
    }
}

/// The errors in an annotator's answer, with spans where the quote is found in `output`;
/// `None` when the answer holds no readable list (it is then stored raw, flagged unparseable).
pub fn parse_annotation(answer: &str, output: &str) -> Option<Vec<AnnotatedError>> {
    let value = first_json_value(answer)?;
    let entries = match value {
        Value::Array(entries) => entries,
        Value::Object(ref fields) => match fields.get("errors") {
            Some(Value::Array(entries)) => entries.clone(),
            _ if description(&value).is_some() => vec![value],
            _ => return None,
        },
        _ => return None,
    };
    Some(entries.iter().filter_map(|e| error_of(e, output)).take(MAX_ERRORS).collect())
}

fn description(entry: &Value) -> Option<String> {
    let text = match entry {
        Value::String(s) => s.as_str(),
        Value::Object(_) => ["error", "description", "issue", "problem"].iter().find_map(|k| entry[*k].as_str())?,
        _ => return None,
    };
    let text = text.trim();
    (!text.is_empty()).then(|| text.chars().take(MAX_DESCRIPTION).collect())
}

fn error_of(entry: &Value, output: &str) -> Option<AnnotatedError> {
    let description = description(entry)?;
    let quote = ["quote", "span", "text", "excerpt"].iter().find_map(|k| entry[*k].as_str()).map(str::trim).filter(|q| !q.is_empty());
    let span = quote.and_then(|q| output.find(q).map(|start| Span { start, end: start + q.len() }));
    let severity = match entry["severity"].as_str().map(str::to_ascii_lowercase).as_deref() {
        Some("critical") => Severity::Critical,
        Some("minor" | "low") => Severity::Minor,
        _ => Severity::Major,
    };
    Some(AnnotatedError { description, span, severity })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_errors_with_spans_and_defaults() {
        let output = "Paris is the capital of Germany.";
        let answer = r#"[{"error": "Wrong country", "quote": "Germany", "severity": "critical"}, {"error": "  "}, "No source given"]"#;
        let errors = parse_annotation(answer, output).unwrap();
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].span, Some(Span { start: 24, end: 31 }));
        assert_eq!(errors[0].severity, Severity::Critical);
        assert_eq!((errors[1].description.as_str(), errors[1].span, errors[1].severity), ("No source given", None, Severity::Major));
    }

    #[test]
    fn empty_list_is_parsed_and_junk_is_not() {
        assert_eq!(parse_annotation("[]", "x"), Some(vec![]));
        assert_eq!(parse_annotation("I think it is fine.", "x"), None);
        assert_eq!(parse_annotation(r#"{"verdict": "ok"}"#, "x"), None);
        assert_eq!(parse_annotation(r#"{"errors": [{"error": "e"}]}"#, "x").unwrap().len(), 1);
    }
}
