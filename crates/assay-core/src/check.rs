//! Binary checks, evaluator sets, items to judge, and judgments: the JSON formats of
//! `--checks`, `--items` and judge results.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One binary PASS/FAIL question asked of every (input, output) pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    pub id: String,
    #[serde(default)]
    pub name: String,
    /// The question, phrased so that PASS means the output is good on this criterion.
    pub question: String,
    /// What a passing output does.
    #[serde(default)]
    pub pass_criteria: String,
    /// Short examples of failing outputs.
    #[serde(default)]
    pub fail_examples: Vec<String>,
    /// P(PASS) at or above which the verdict is PASS; 0.5 when absent.
    #[serde(default)]
    pub threshold: Option<f32>,
}

impl Check {
    pub const DEFAULT_THRESHOLD: f32 = 0.5;

    pub fn threshold(&self) -> f32 {
        self.threshold.unwrap_or(Self::DEFAULT_THRESHOLD)
    }
}

/// Why a set of checks or items is unusable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InputError {
    #[error("the evaluator set has no checks")]
    NoChecks,
    #[error("duplicate check id '{0}'")]
    DuplicateCheck(String),
    #[error("check '{0}' has an empty question")]
    EmptyQuestion(String),
    #[error("a check has an empty id")]
    EmptyCheckId,
    #[error("check '{id}' has threshold {threshold}, outside [0, 1]")]
    Threshold { id: String, threshold: f32 },
    #[error("invalid checks JSON: {0}")]
    ChecksJson(String),
    #[error("line {line}: {reason}")]
    ItemLine { line: usize, reason: String },
    #[error("line {line}: duplicate item id '{id}'")]
    DuplicateItem { line: usize, id: String },
    #[error("line {line}: item '{id}' has an empty output; there is nothing to judge")]
    EmptyOutput { line: usize, id: String },
    #[error("no items: the dataset is empty")]
    NoItems,
    #[error("invalid judge options: {0}")]
    JudgeOptions(String),
    #[error("the judge labels {pass:?} and {fail:?} must be distinct and non-empty (as tokens of the judge model)")]
    Labels { pass: String, fail: String },
}

/// An ordered list of checks; its content hash identifies it in results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluatorSet {
    /// A version label (e.g. "v1"); the content hash identifies the checks whatever the label.
    #[serde(default)]
    pub version: Option<String>,
    pub checks: Vec<Check>,
}

impl EvaluatorSet {
    /// Validates `checks`: at least one, unique non-blank ids, non-empty questions, thresholds in
    /// [0, 1].
    pub fn new(version: Option<String>, checks: Vec<Check>) -> Result<Self, InputError> {
        if checks.is_empty() {
            return Err(InputError::NoChecks);
        }
        let mut seen = std::collections::HashSet::new();
        for c in &checks {
            if c.id.trim().is_empty() {
                return Err(InputError::EmptyCheckId);
            }
            if !seen.insert(c.id.as_str()) {
                return Err(InputError::DuplicateCheck(c.id.clone()));
            }
            if c.question.trim().is_empty() {
                return Err(InputError::EmptyQuestion(c.id.clone()));
            }
            if let Some(t) = c.threshold.filter(|t| !(0.0..=1.0).contains(t)) {
                return Err(InputError::Threshold { id: c.id.clone(), threshold: t });
            }
        }
        Ok(Self { version, checks })
    }

    /// Parses `--checks` JSON: either `{"version"?, "checks": [...]}` or a bare list of checks.
    pub fn from_json(text: &str) -> Result<Self, InputError> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Set { version: Option<String>, checks: Vec<Check> },
            List(Vec<Check>),
        }
        let form: Form = serde_json::from_str(text).map_err(|e| InputError::ChecksJson(e.to_string()))?;
        match form {
            Form::Set { version, checks } => Self::new(version, checks),
            Form::List(checks) => Self::new(None, checks),
        }
    }

    /// Hex SHA-256 of the checks' canonical JSON.
    pub fn content_hash(&self) -> String {
        let json = serde_json::to_vec(&self.checks).expect("checks serialise");
        Sha256::digest(&json).iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// One (input, output) pair to judge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeItem {
    pub id: String,
    pub input: String,
    pub output: String,
    #[serde(default)]
    pub context: Option<String>,
}

/// Parses JSONL items `{id, input, output, context?}`; errors name the 1-based line.
pub fn parse_items_jsonl(text: &str) -> Result<Vec<JudgeItem>, InputError> {
    // Editors on Windows start UTF-8 files with a byte-order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut items = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let line_no = i + 1;
        let item: JudgeItem = serde_json::from_str(line).map_err(|e| InputError::ItemLine { line: line_no, reason: e.to_string() })?;
        if !seen.insert(item.id.clone()) {
            return Err(InputError::DuplicateItem { line: line_no, id: item.id });
        }
        if item.output.trim().is_empty() {
            return Err(InputError::EmptyOutput { line: line_no, id: item.id });
        }
        items.push(item);
    }
    if items.is_empty() {
        return Err(InputError::NoItems);
    }
    Ok(items)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Pass,
    Fail,
}

impl Verdict {
    /// PASS when `p_pass` reaches `threshold`.
    pub fn at(p_pass: f32, threshold: f32) -> Self {
        if p_pass >= threshold {
            Self::Pass
        } else {
            Self::Fail
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Pass => "PASS",
            Self::Fail => "FAIL",
        })
    }
}

/// The answer of one check on one item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Judgment {
    pub item_id: String,
    pub check_id: String,
    pub verdict: Verdict,
    /// P(pass label) / (P(pass label) + P(fail label)).
    pub p_pass: f32,
    /// Log-likelihood of the whole pass label's token sequence.
    pub logprob_pass: f32,
    pub logprob_fail: f32,
    /// Probability mass of the first label token outside both labels: how far the judge is
    /// from answering in the expected format.
    pub off_format_mass: f32,
    /// The judge's reasoning before the verdict (rationale mode with one sample).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rationale: Option<String>,
    /// Each sampled rationale and its verdict (`samples > 1`); the fields above then hold their
    /// means, and the verdict is the mean p_pass against the threshold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<JudgeSample>,
    /// Fraction of the samples whose verdict differs from the overall verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flip_rate: Option<f32>,
}

/// One sampled rationale and the verdict that followed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeSample {
    pub rationale: String,
    pub verdict: Verdict,
    pub p_pass: f32,
    pub logprob_pass: f32,
    pub logprob_fail: f32,
    pub off_format_mass: f32,
}

impl Judgment {
    /// The judgment of one check from its samples (one sample: that sample's figures, with
    /// its rationale when `with_rationale`).
    pub fn from_samples(item_id: &str, check: &Check, mut samples: Vec<JudgeSample>, with_rationale: bool) -> Self {
        let n = samples.len().max(1) as f32;
        let mean = |f: fn(&JudgeSample) -> f32| samples.iter().map(f).sum::<f32>() / n;
        let p_pass = mean(|s| s.p_pass);
        let verdict = Verdict::at(p_pass, check.threshold());
        let mut j = Self {
            item_id: item_id.to_string(),
            check_id: check.id.clone(),
            verdict,
            p_pass,
            logprob_pass: mean(|s| s.logprob_pass),
            logprob_fail: mean(|s| s.logprob_fail),
            off_format_mass: mean(|s| s.off_format_mass),
            rationale: None,
            samples: Vec::new(),
            flip_rate: None,
        };
        if samples.len() == 1 {
            let only = samples.pop().expect("one sample");
            j.verdict = only.verdict;
            j.rationale = with_rationale.then_some(only.rationale);
        } else {
            j.flip_rate = Some(samples.iter().filter(|s| s.verdict != verdict).count() as f32 / n);
            j.samples = samples;
        }
        j
    }
}

/// How a judge reaches its verdict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JudgeMode {
    /// The label log-likelihoods right after the prompt: one pass, no generation.
    #[default]
    Verdict,
    /// A short generated rationale first, then the label log-likelihoods after it.
    Rationale,
}

/// What a judge run does per check; shared by `assay judge`, the server and the pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JudgeOptions {
    pub mode: JudgeMode,
    /// Rationales sampled per check; more than one implies rationale mode at `temperature`
    /// and reports each sample's verdict and the flip rate.
    pub samples: usize,
    /// Sampling temperature of the rationales when `samples > 1` (one sample is greedy).
    pub temperature: f32,
    /// Most tokens of a rationale (it also ends at the first line break).
    pub rationale_tokens: usize,
    /// Seed of the rationale samplers; each (item, check, sample) derives its own from it.
    pub seed: u64,
    /// Outputs the expert judged, shown to the judge before every item (few-shot).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<JudgedExample>,
}

impl Default for JudgeOptions {
    fn default() -> Self {
        Self { mode: JudgeMode::Verdict, samples: 1, temperature: 0.7, rationale_tokens: 48, seed: 0, examples: Vec::new() }
    }
}

/// An output the expert judged as a whole, shown in the judge prompt's shared instructions so
/// that the judge sees where this expert draws the line on this task. The item it came from is
/// named so that figures on the expert's outputs can leave it out (the judge has seen its verdict).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgedExample {
    /// The key of the item it was taken from, if any.
    #[serde(default)]
    pub item: Option<String>,
    pub input: String,
    pub output: String,
    /// Whether the expert accepted the output.
    pub accepted: bool,
    /// The expert's words on it.
    #[serde(default)]
    pub note: String,
}

impl JudgeOptions {
    /// Most rationales sampled per check: bounds the work one request can ask for.
    pub const MAX_SAMPLES: usize = 256;
    /// Most tokens of one rationale.
    pub const MAX_RATIONALE_TOKENS: usize = 4096;
    /// Most judged examples in a judge prompt.
    pub const MAX_EXAMPLES: usize = 8;

    pub fn validate(&self) -> Result<(), InputError> {
        let bad = |m: String| Err(InputError::JudgeOptions(m));
        if self.samples == 0 || self.samples > Self::MAX_SAMPLES {
            return bad(format!("samples must be between 1 and {}, got {}", Self::MAX_SAMPLES, self.samples));
        }
        if self.rationale_tokens > Self::MAX_RATIONALE_TOKENS {
            return bad(format!("rationale_tokens must be at most {}, got {}", Self::MAX_RATIONALE_TOKENS, self.rationale_tokens));
        }
        if self.samples > 1 && !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return bad(format!("sampling {} rationales needs a temperature > 0 (got {})", self.samples, self.temperature));
        }
        if self.rationale_tokens == 0 {
            return bad("rationale_tokens must be at least 1".into());
        }
        if self.examples.len() > Self::MAX_EXAMPLES {
            return bad(format!("at most {} judged examples, got {}", Self::MAX_EXAMPLES, self.examples.len()));
        }
        if let Some(n) = self.examples.iter().position(|e| e.output.trim().is_empty()) {
            return bad(format!("judged example {} has no output", n + 1));
        }
        Ok(())
    }

    /// Whether each check first generates a rationale.
    pub fn generates_rationales(&self) -> bool {
        self.mode == JudgeMode::Rationale || self.samples > 1
    }
}

/// Passes out of checks for one item ("18/25").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemScore {
    pub item_id: String,
    pub passed: usize,
    pub total: usize,
}

impl ItemScore {
    pub fn of(item_id: &str, judgments: &[Judgment]) -> Self {
        Self { item_id: item_id.to_string(), passed: judgments.iter().filter(|j| j.verdict == Verdict::Pass).count(), total: judgments.len() }
    }
}

impl std::fmt::Display for ItemScore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.passed, self.total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(id: &str) -> Check {
        Check { id: id.into(), name: String::new(), question: "Is it polite?".into(), pass_criteria: String::new(), fail_examples: vec![], threshold: None }
    }

    #[test]
    fn sets_reject_empty_duplicate_and_bad_checks() {
        assert_eq!(EvaluatorSet::new(None, vec![]), Err(InputError::NoChecks));
        assert_eq!(EvaluatorSet::new(None, vec![check("a"), check("a")]), Err(InputError::DuplicateCheck("a".into())));
        assert_eq!(EvaluatorSet::new(None, vec![check(" ")]), Err(InputError::EmptyCheckId));
        let mut c = check("b");
        c.question = " ".into();
        assert_eq!(EvaluatorSet::new(None, vec![c]), Err(InputError::EmptyQuestion("b".into())));
        let mut c = check("c");
        c.threshold = Some(1.5);
        assert!(matches!(EvaluatorSet::new(None, vec![c]), Err(InputError::Threshold { .. })));
    }

    #[test]
    fn both_json_forms_parse_and_hash_ignores_the_label() {
        let a = EvaluatorSet::from_json(r#"[{"id": "a", "question": "Is it polite?"}]"#).unwrap();
        let b = EvaluatorSet::from_json(r#"{"version": "v2", "checks": [{"id": "a", "question": "Is it polite?"}]}"#).unwrap();
        assert_eq!(a.content_hash(), b.content_hash());
        assert_eq!(b.version.as_deref(), Some("v2"));
        assert!(matches!(EvaluatorSet::from_json(r#"[{"id": "a"}]"#), Err(InputError::ChecksJson(_))));
    }

    #[test]
    fn items_errors_name_the_line() {
        let text = "{\"id\": \"1\", \"input\": \"q\", \"output\": \"a\"}\n\n{\"id\": \"2\", \"input\": \"q\"}\n";
        assert!(matches!(parse_items_jsonl(text), Err(InputError::ItemLine { line: 3, .. })));
        let dup = "{\"id\": \"1\", \"input\": \"q\", \"output\": \"a\"}\n{\"id\": \"1\", \"input\": \"q\", \"output\": \"b\"}";
        assert_eq!(parse_items_jsonl(dup), Err(InputError::DuplicateItem { line: 2, id: "1".into() }));
        assert_eq!(parse_items_jsonl("\n"), Err(InputError::NoItems));
        assert_eq!(parse_items_jsonl("\u{feff}{\"id\": \"1\", \"input\": \"i\", \"output\": \"o\"}").unwrap().len(), 1, "a byte-order mark is skipped");
        let empty = "{\"id\": \"e\", \"input\": \"q\", \"output\": \" \"}";
        assert_eq!(parse_items_jsonl(empty), Err(InputError::EmptyOutput { line: 1, id: "e".into() }));
    }
}

/// Whatever JSON a client sends to `/v1/judge`, the core parsing and validation it goes through
/// (the request's flattened `JudgeOptions`, `JudgeOptions::validate`, `EvaluatorSet::from_json`
/// of `checks`, `parse_items_jsonl` of `items`) returns a value or a typed error, never panics,
/// and what it accepts holds the documented limits.
#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    fn config() -> ProptestConfig {
        ProptestConfig { cases: 1024, failure_persistence: None, ..ProptestConfig::default() }
    }

    const KEYS: [&str; 24] = [
        "id",
        "name",
        "question",
        "pass_criteria",
        "fail_examples",
        "threshold",
        "version",
        "checks",
        "mode",
        "samples",
        "temperature",
        "rationale_tokens",
        "seed",
        "items",
        "input",
        "output",
        "context",
        "pass_label",
        "fail_label",
        "model",
        "project",
        "set",
        "pairs",
        "",
    ];

    /// Mostly the names the parsers look for, so that generated objects reach validation.
    fn key() -> impl Strategy<Value = String> {
        prop_oneof![4 => prop::sample::select(KEYS.to_vec()).prop_map(String::from), 1 => any::<String>()]
    }

    fn number() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            // Non-finite floats have no JSON form: `Value::from` makes them null.
            any::<f64>().prop_map(Value::from),
            prop::sample::select(vec![0u64, 1, 2, 48, 255, 256, 257, 4096, 4097, u32::MAX as u64, u32::MAX as u64 + 1, i64::MAX as u64, u64::MAX]).prop_map(Value::from),
            prop::sample::select(vec![0.0, -0.0, 0.5, 1.0, 1.0000001, -1.0, 1e-45, 3.4e38, 3.5e38, 1e300, -1e300]).prop_map(Value::from),
        ]
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![prop::sample::select(vec!["", " ", "\t\n", "a", "verdict", "rationale", "Verdict", "PASS", " PASS", " FAIL", "\u{feff}", "\u{2028}", "\0"]).prop_map(String::from), any::<String>(),]
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![Just(Value::Null), any::<bool>().prop_map(Value::Bool), number(), text().prop_map(Value::String)]
    }

    /// Any JSON value, nested at most four deep.
    fn json_value() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(4, 48, 6, |inner| {
            prop_oneof![prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array), prop::collection::vec((key(), inner), 0..6).prop_map(|kv| Value::Object(kv.into_iter().collect())),]
        })
    }

    /// An object with each of `fields` present as often as its weight says, holding a plausible
    /// value or (one time in 40) any value, and sometimes one more key.
    fn object(fields: Vec<(&'static str, f64, BoxedStrategy<Value>)>) -> impl Strategy<Value = Value> {
        let fields: Vec<_> = fields.into_iter().map(|(k, present, plausible)| prop::option::weighted(present, prop_oneof![39 => plausible, 1 => json_value()]).prop_map(move |v| (k, v))).collect();
        (fields, prop::option::weighted(0.05, (key(), json_value()))).prop_map(|(fields, extra)| {
            let mut m: Map<String, Value> = fields.into_iter().filter_map(|(k, v)| Some((k.to_string(), v?))).collect();
            if let Some((k, v)) = extra {
                m.insert(k, v);
            }
            Value::Object(m)
        })
    }

    fn string_value() -> BoxedStrategy<Value> {
        text().prop_map(Value::String).boxed()
    }

    fn check_like() -> impl Strategy<Value = Value> {
        let ids = prop_oneof![prop::sample::select(vec!["a", "b", " ", ""]).prop_map(|s| Value::String(s.into())), string_value()].boxed();
        let threshold = prop_oneof![(-0.5f64..1.5).prop_map(Value::from), number()].boxed();
        object(vec![
            ("id", 0.97, ids),
            ("name", 0.5, string_value()),
            ("question", 0.97, string_value()),
            ("pass_criteria", 0.5, string_value()),
            ("fail_examples", 0.5, prop::collection::vec(string_value(), 0..3).prop_map(Value::Array).boxed()),
            ("threshold", 0.5, threshold),
        ])
    }

    /// `checks` as clients send it: a list of checks, `{version, checks}`, or anything else.
    fn checks_like() -> impl Strategy<Value = Value> {
        let list = || prop::collection::vec(check_like(), 0..4).prop_map(Value::Array);
        prop_oneof![
            8 => list(),
            4 => object(vec![("version", 0.7, string_value()), ("checks", 0.97, list().boxed())]),
            1 => json_value(),
        ]
    }

    fn item_like() -> impl Strategy<Value = Value> {
        let ids = prop_oneof![prop::sample::select(vec!["1", "2", ""]).prop_map(|s| Value::String(s.into())), string_value(), number()].boxed();
        object(vec![("id", 0.97, ids), ("input", 0.97, string_value()), ("output", 0.97, string_value()), ("context", 0.5, prop_oneof![string_value(), Just(Value::Null)].boxed())])
    }

    fn request_like() -> impl Strategy<Value = Value> {
        let mode = prop_oneof![8 => prop::sample::select(vec!["verdict", "rationale"]).prop_map(|s| Value::String(s.into())), 1 => string_value()].boxed();
        let count = |most: u64| prop_oneof![8 => (0..most).prop_map(Value::from), 1 => number()].boxed();
        object(vec![
            ("checks", 0.97, checks_like().boxed()),
            ("items", 0.97, prop::collection::vec(item_like(), 0..4).prop_map(Value::Array).boxed()),
            ("mode", 0.5, mode),
            ("samples", 0.5, count(300)),
            ("temperature", 0.5, prop_oneof![8 => (-1.0f64..3.0).prop_map(Value::from), 1 => number()].boxed()),
            ("rationale_tokens", 0.5, count(5000)),
            ("seed", 0.5, any::<u64>().prop_map(Value::from).boxed()),
            ("pass_label", 0.5, string_value()),
            ("fail_label", 0.5, string_value()),
        ])
    }

    /// The core steps of `/v1/judge` on a request body; `Err` carries the typed error's message.
    fn judge_request(body: &str) -> Result<(), String> {
        let body: Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
        let options: JudgeOptions = serde_json::from_value(body.clone()).map_err(|e| e.to_string())?;
        let validated = options.validate();
        if validated.is_ok() {
            let o = &options;
            assert!((1..=JudgeOptions::MAX_SAMPLES).contains(&o.samples) && o.rationale_tokens <= JudgeOptions::MAX_RATIONALE_TOKENS, "{o:?}");
            assert!(o.samples == 1 || (o.temperature > 0.0 && o.temperature.is_finite()), "{o:?}");
            assert!(!o.generates_rationales() || o.rationale_tokens >= 1, "{o:?}");
        }
        if let Some(checks) = body.get("checks") {
            evaluator_set(&checks.to_string())?;
        }
        let jsonl = body.get("items").and_then(Value::as_array).map_or(Vec::new(), |items| items.iter().map(Value::to_string).collect()).join("\n");
        items(&jsonl)?;
        validated.map_err(|e| e.to_string())
    }

    fn evaluator_set(text: &str) -> Result<(), String> {
        let set = EvaluatorSet::from_json(text).map_err(|e| e.to_string())?;
        assert!(!set.checks.is_empty());
        let mut ids = std::collections::HashSet::new();
        for c in &set.checks {
            assert!(!c.id.trim().is_empty() && !c.question.trim().is_empty() && ids.insert(&c.id), "{c:?}");
            assert!((0.0..=1.0).contains(&c.threshold()), "{c:?}");
        }
        assert_eq!(set.content_hash().len(), 64);
        Ok(())
    }

    fn items(jsonl: &str) -> Result<(), String> {
        let items = parse_items_jsonl(jsonl).map_err(|e| e.to_string())?;
        let mut ids = std::collections::HashSet::new();
        assert!(!items.is_empty());
        for item in &items {
            assert!(!item.output.trim().is_empty() && ids.insert(&item.id), "{item:?}");
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn judge_request_validation_never_panics_on_arbitrary_json(body in json_value()) {
            let _ = judge_request(&body.to_string());
        }

        #[test]
        fn judge_request_validation_never_panics_on_near_valid_requests(body in request_like()) {
            if let Err(e) = judge_request(&body.to_string()) {
                prop_assert!(!e.is_empty());
            }
        }

        #[test]
        fn evaluator_set_parsing_never_panics_on_arbitrary_checks(checks in checks_like()) {
            let _ = evaluator_set(&checks.to_string());
        }

        #[test]
        fn evaluator_set_parsing_never_panics_on_arbitrary_text(text in any::<String>()) {
            let _ = evaluator_set(&text);
        }

        #[test]
        fn items_parsing_never_panics_on_arbitrary_lines(lines in prop::collection::vec(prop_oneof![item_like().prop_map(|v| v.to_string()), json_value().prop_map(|v| v.to_string()), any::<String>()], 0..6), bom in any::<bool>()) {
            let text = format!("{}{}", if bom { "\u{feff}" } else { "" }, lines.join("\n"));
            let _ = items(&text);
        }

        #[test]
        fn judgments_from_any_samples_never_panic(p in prop::collection::vec((any::<f32>(), any::<f32>(), any::<bool>()), 0..5), threshold in prop::option::of(any::<f32>()), with_rationale in any::<bool>()) {
            let check = Check { id: "c".into(), name: String::new(), question: "q".into(), pass_criteria: String::new(), fail_examples: vec![], threshold };
            let samples = p.into_iter().map(|(p_pass, lp, pass)| JudgeSample { rationale: String::new(), verdict: if pass { Verdict::Pass } else { Verdict::Fail }, p_pass, logprob_pass: lp, logprob_fail: -lp, off_format_mass: 0.0 }).collect();
            let j = Judgment::from_samples("i", &check, samples, with_rationale);
            prop_assert!(serde_json::to_string(&j).is_ok());
            prop_assert_eq!(ItemScore::of("i", &[j]).total, 1);
        }
    }
}
