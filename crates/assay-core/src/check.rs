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
    /// Validates `checks`: at least one, unique ids, non-empty questions, thresholds in [0, 1].
    pub fn new(version: Option<String>, checks: Vec<Check>) -> Result<Self, InputError> {
        if checks.is_empty() {
            return Err(InputError::NoChecks);
        }
        let mut seen = std::collections::HashSet::new();
        for c in &checks {
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
}

impl Default for JudgeOptions {
    fn default() -> Self {
        Self { mode: JudgeMode::Verdict, samples: 1, temperature: 0.7, rationale_tokens: 48, seed: 0 }
    }
}

impl JudgeOptions {
    pub fn validate(&self) -> Result<(), InputError> {
        let bad = |m: String| Err(InputError::JudgeOptions(m));
        if self.samples == 0 {
            return bad("samples must be at least 1".into());
        }
        if self.samples > 1 && !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return bad(format!("sampling {} rationales needs a temperature > 0 (got {})", self.samples, self.temperature));
        }
        if self.generates_rationales() && self.rationale_tokens == 0 {
            return bad("rationale_tokens must be at least 1".into());
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
        let empty = "{\"id\": \"e\", \"input\": \"q\", \"output\": \" \"}";
        assert_eq!(parse_items_jsonl(empty), Err(InputError::EmptyOutput { line: 1, id: "e".into() }));
    }
}
