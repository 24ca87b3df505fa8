//! The externally labelled datasets of `../shared/data` as judge-quality benchmarks: items
//! (input, output) with the expert's verdict on the whole output and the words behind it,
//! split into train and test by a seed. The files are read as they are; nothing is edited.

use anyhow::{bail, Context, Result};
use assay_store::NewItem;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;

/// How a dataset's labels score a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Two outputs per input, one labelled better: the better one should score higher.
    Pairwise,
    /// Each output labelled acceptable or not: AUROC of its score and kappa of "every check passes".
    Binary,
}

/// One labelled output.
#[derive(Debug, Clone)]
pub struct LabelledItem {
    pub item: NewItem,
    /// Items of one group (an LLMBar pair, a K-QA question, a MEDEC case) land in the same split.
    pub group: String,
    /// The expert's verdict on the whole output.
    pub good: bool,
    /// The expert's words: what is right or wrong with it (the simulated expert rules with them).
    pub note: String,
    /// K-QA: the share of the answer's labelled must-have statements it states.
    pub recall: Option<f64>,
}

#[derive(Debug)]
pub struct Benchmark {
    pub name: &'static str,
    pub task: &'static str,
    /// The project's generation prompt (what discovery generates and annotates against).
    pub prompt: &'static str,
    pub metric: Metric,
    pub train: Vec<LabelledItem>,
    pub test: Vec<LabelledItem>,
}

/// The datasets `assay bench quality` knows, by name.
pub const NAMES: [&str; 4] = ["llmbar", "ifeval", "medec", "kqa"];

/// `name`'s first `items` outputs (LLMBar: pairs; the others: half acceptable, half not),
/// split by `seed`: a `test_share` of the groups go to test.
pub fn load(name: &str, data: &Path, items: usize, seed: u64, test_share: f64) -> Result<Benchmark> {
    let (task, prompt, metric, all) = match name {
        "llmbar" => {
            ("instruction following", "Follow the user's instruction: do exactly what it asks, as well as possible.", Metric::Pairwise, llmbar(&data.join("llmbar-natural/dataset.json"), items)?)
        }
        "ifeval" => ("verifiable instructions", "Follow every instruction in the user's request exactly.", Metric::Binary, ifeval(&data.join("ifeval"), items)?),
        "medec" => (
            "clinical notes",
            "Write the clinical note for this encounter. Every diagnosis, management step, treatment, drug and causal organism must be consistent with the findings.",
            Metric::Binary,
            medec(&data.join("medec/MEDEC-MS-ValidationSet-with-GroundTruth-and-ErrorType.csv"), items)?,
        ),
        "kqa" => (
            "patient questions",
            "Answer the patient's medical question: state what a physician would consider essential, and nothing that contradicts it.",
            Metric::Binary,
            kqa(&data.join("kqa/NLI_medical_annotator.csv"), items)?,
        ),
        other => bail!("unknown dataset '{other}' (known: {})", NAMES.join(", ")),
    };
    let name = NAMES.into_iter().find(|n| *n == name).expect("matched above");
    let (train, test) = split(all, seed, test_share);
    if train.is_empty() || test.is_empty() {
        bail!("{name}: {} output(s) are too few for both a train and a test split (raise --items)", train.len() + test.len());
    }
    Ok(Benchmark { name, task, prompt, metric, train, test })
}

/// A `test_share` of the groups to test, stratified by what a group holds (acceptable outputs,
/// unacceptable ones, or both) so that both splits keep the dataset's balance; within each
/// stratum groups are ordered by a hash of (seed, group).
fn split(all: Vec<LabelledItem>, seed: u64, test_share: f64) -> (Vec<LabelledItem>, Vec<LabelledItem>) {
    let mut strata: std::collections::BTreeMap<(bool, bool), Vec<&str>> = std::collections::BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    for i in &all {
        if seen.insert(i.group.as_str()) {
            let members = all.iter().filter(|j| j.group == i.group);
            let kind = members.fold((false, false), |(g, b), j| (g || j.good, b || !j.good));
            strata.entry(kind).or_default().push(i.group.as_str());
        }
    }
    let mut test = std::collections::HashSet::new();
    for groups in strata.values_mut() {
        groups.sort_by_key(|g| assay_pipeline::stable_seed(seed, &["split", g]));
        let n_test = ((groups.len() as f64 * test_share).round() as usize).min(groups.len().saturating_sub(1)).max(usize::from(groups.len() > 1));
        test.extend(groups[..n_test].iter().map(|g| g.to_string()));
    }
    // Strata of one group each all stay in train: then the largest stratum gives one to test.
    if test.is_empty() {
        if let Some(groups) = strata.values().filter(|g| strata.len() > 1 || g.len() > 1).max_by_key(|g| g.len()) {
            test.insert(groups[0].to_string());
        }
    }
    all.into_iter().partition(|i| !test.contains(&i.group))
}

fn read_json(path: &Path) -> Result<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?).with_context(|| format!("parsing {}", path.display()))
}

fn read_jsonl(path: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines().filter(|l| !l.trim().is_empty()).enumerate().map(|(n, l)| serde_json::from_str(l).with_context(|| format!("{} line {}", path.display(), n + 1))).collect()
}

/// A CSV file's reader and the positions of the `names` columns (a missing one is named).
fn csv_columns<const N: usize>(path: &Path, names: [&str; N]) -> Result<(csv::Reader<std::fs::File>, [usize; N])> {
    let mut reader = csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let headers = reader.headers().with_context(|| format!("reading {}", path.display()))?.clone();
    let mut columns = [0; N];
    for (column, name) in columns.iter_mut().zip(names) {
        *column = headers.iter().position(|h| h == name).with_context(|| format!("{}: no column '{name}'", path.display()))?;
    }
    Ok((reader, columns))
}

fn item(key: String, input: &str, output: &str) -> NewItem {
    NewItem { key, input: input.to_string(), output: Some(output.to_string()), ..Default::default() }
}

/// LLMBar Natural: the first `pairs` instructions, each with its better and its worse output.
fn llmbar(path: &Path, pairs: usize) -> Result<Vec<LabelledItem>> {
    let rows = read_json(path)?;
    let rows = rows.as_array().with_context(|| format!("{}: not a list", path.display()))?;
    let mut out = Vec::new();
    for (n, row) in rows.iter().take(pairs).enumerate() {
        let field = |k: &str| row[k].as_str().with_context(|| format!("{} entry {n}: no text '{k}'", path.display()));
        let better = row["label"].as_u64().filter(|l| *l == 1 || *l == 2).with_context(|| format!("{} entry {n}: label is not 1 or 2", path.display()))?;
        for side in [1, 2] {
            let good = side == better;
            let note = if good {
                "This response follows the instruction better than the other response to it."
            } else {
                "The other response to this instruction follows it better; this one falls short of what it asks."
            };
            out.push(LabelledItem {
                item: item(format!("pair{n}-output{side}"), field("input")?, field(&format!("output_{side}"))?),
                group: format!("pair{n}"),
                good,
                note: note.into(),
                recall: None,
            });
        }
    }
    Ok(out)
}

/// IFEval: GPT-4's responses, acceptable when the official verifier (strict) finds every
/// instruction of the prompt followed; the first `items / 2` of each kind by key.
fn ifeval(dir: &Path, items: usize) -> Result<Vec<LabelledItem>> {
    let keys: HashMap<String, String> = read_jsonl(&dir.join("input_data.jsonl"))?.iter().filter_map(|r| Some((r["prompt"].as_str()?.to_string(), r["key"].to_string()))).collect();
    let mut kinds: [Vec<LabelledItem>; 2] = [Vec::new(), Vec::new()];
    for r in read_jsonl(&dir.join("eval_results_strict.jsonl"))? {
        let (Some(prompt), Some(response)) = (r["prompt"].as_str(), r["response"].as_str()) else { continue };
        let Some(key) = keys.get(prompt) else { continue };
        let ids: Vec<&str> = r["instruction_id_list"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let followed: Vec<bool> = r["follow_instruction_list"].as_array().into_iter().flatten().filter_map(Value::as_bool).collect();
        if ids.is_empty() || ids.len() != followed.len() {
            continue;
        }
        let missed: Vec<String> = ids.iter().zip(&followed).filter(|(_, ok)| !**ok).map(|(id, _)| instruction_words(id)).collect();
        let good = missed.is_empty();
        let note = if good {
            format!("IFEval verifier (strict): the response follows every instruction of the prompt ({}).", ids.iter().map(|id| instruction_words(id)).collect::<Vec<_>>().join("; "))
        } else {
            format!("IFEval verifier (strict): the response does not follow the prompt's instructions on {}.", missed.join("; "))
        };
        kinds[usize::from(good)].push(LabelledItem { item: item(key.clone(), prompt, response), group: key.clone(), good, note, recall: None });
    }
    Ok(balanced(kinds, items))
}

/// An IFEval instruction id in words, as an expert would name it: `change_case:english_lowercase`
/// becomes "change case (english lowercase)".
fn instruction_words(id: &str) -> String {
    let words = |s: &str| s.replace('_', " ");
    match id.split_once(':') {
        Some((kind, which)) => format!("{} ({})", words(kind), words(which)),
        None => words(id),
    }
}

/// MEDEC validation: clinical notes, acceptable without the injected error.
fn medec(path: &Path, items: usize) -> Result<Vec<LabelledItem>> {
    let (mut reader, [id, text, flag, kind, sentence, corrected]) = csv_columns(path, ["Text ID", "Text", "Error Flag", "Error Type", "Error Sentence", "Corrected Sentence"])?;
    let mut kinds: [Vec<LabelledItem>; 2] = [Vec::new(), Vec::new()];
    for (n, row) in reader.records().enumerate() {
        let row = row.with_context(|| format!("{} record {}", path.display(), n + 1))?;
        let good = &row[flag] == "0";
        let note = if good {
            "The note has no medical error.".to_string()
        } else {
            format!("The note contains a {} error: \"{}\" should read \"{}\".", &row[kind], row[sentence].trim(), row[corrected].trim())
        };
        let mut it = item(row[id].to_string(), "Write the clinical note for this encounter.", &row[text]);
        it.metadata = Some(json!({"error_type": &row[kind]}));
        // MEDEC holds many cases twice, with and without the error, under different ids: the
        // copies share their opening, and must share a split (a train note's correction would
        // describe its test copy).
        let opening: String = row[text].split_whitespace().collect::<Vec<_>>().join(" ").chars().take(MEDEC_OPENING).collect();
        kinds[usize::from(good)].push(LabelledItem { item: it, group: opening, good, note, recall: None });
    }
    Ok(balanced(kinds, items))
}

/// Characters of a MEDEC note's opening that identify its case.
const MEDEC_OPENING: usize = 80;

/// K-QA: LLM answers to patient questions whose statements physicians labelled (majority of
/// three) as entailed by the answer, neutral or contradicted. An answer is acceptable when it
/// states every labelled must-have statement and contradicts none; its recall is the share of
/// must-haves it states. Answers to one question stay in one split.
fn kqa(path: &Path, items: usize) -> Result<Vec<LabelledItem>> {
    let (mut reader, [question, llm, answer, claim, category, label]) = csv_columns(path, ["Question", "llm_x", "answer", "claim", "category_x", "majority_label"])?;
    // One answer (a model's, to a question) and its labelled statements, in file order.
    struct Statement {
        must_have: bool,
        claim: String,
        label: String,
    }
    struct Answer {
        question: String,
        model: String,
        text: String,
        statements: Vec<Statement>,
    }
    let mut answers: Vec<Answer> = Vec::new();
    for (n, row) in reader.records().enumerate() {
        let row = row.with_context(|| format!("{} record {}", path.display(), n + 1))?;
        let statement = Statement { must_have: &row[category] == "Must_have", claim: row[claim].trim().to_string(), label: row[label].to_string() };
        match answers.iter_mut().find(|a| a.question == row[question] && a.model == row[llm] && a.text == row[answer]) {
            Some(a) => a.statements.push(statement),
            None => answers.push(Answer { question: row[question].to_string(), model: row[llm].to_string(), text: row[answer].to_string(), statements: vec![statement] }),
        }
    }
    let mut kinds: [Vec<LabelledItem>; 2] = [Vec::new(), Vec::new()];
    let mut questions: Vec<String> = Vec::new();
    for Answer { question: q, model, text, statements } in answers {
        let must: Vec<&Statement> = statements.iter().filter(|s| s.must_have).collect();
        if must.is_empty() {
            continue;
        }
        let stated = must.iter().filter(|s| s.label == "Entailment").count();
        let contradicted: Vec<&str> = statements.iter().filter(|s| s.label == "Contradiction").map(|s| s.claim.as_str()).collect();
        let missing: Vec<&str> = must.iter().filter(|s| s.label != "Entailment").map(|s| s.claim.as_str()).collect();
        let good = missing.is_empty() && contradicted.is_empty();
        let note = if good {
            "Physicians find every must-have statement in the answer and nothing contradicting one.".to_string()
        } else {
            let mut why = Vec::new();
            if !missing.is_empty() {
                why.push(format!("it does not state: {}", missing.join("; ")));
            }
            if !contradicted.is_empty() {
                why.push(format!("it contradicts: {}", contradicted.join("; ")));
            }
            format!("Physicians' reading of the answer: {}.", why.join("; "))
        };
        let group = match questions.iter().position(|x| *x == q) {
            Some(i) => i,
            None => {
                questions.push(q.clone());
                questions.len() - 1
            }
        };
        kinds[usize::from(good)].push(LabelledItem { item: item(format!("q{group}-{model}"), &q, &text), group: format!("q{group}"), good, note, recall: Some(stated as f64 / must.len() as f64) });
    }
    Ok(balanced(kinds, items))
}

/// The first `items / 2` unacceptable and the first `items - items / 2` acceptable outputs.
fn balanced([bad, good]: [Vec<LabelledItem>; 2], items: usize) -> Vec<LabelledItem> {
    bad.into_iter().take(items / 2).chain(good.into_iter().take(items - items / 2)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data")
    }

    #[test]
    fn ifeval_instructions_are_named_in_words() {
        assert_eq!(instruction_words("change_case:english_lowercase"), "change case (english lowercase)");
        assert_eq!(instruction_words("no_id"), "no id");
        let b = load("ifeval", &data(), 12, 7, 0.5).unwrap();
        let bad = b.train.iter().chain(&b.test).find(|i| !i.good).unwrap();
        assert!(bad.note.contains("instructions on ") && !bad.note.contains('_'), "{}", bad.note);
    }

    #[test]
    fn every_dataset_loads_balanced_and_splits_by_group() {
        for name in NAMES {
            let b = load(name, &data(), 12, 7, 0.5).unwrap();
            let all: Vec<&LabelledItem> = b.train.iter().chain(&b.test).collect();
            assert_eq!(all.len(), if name == "llmbar" { 24 } else { 12 }, "{name}");
            assert_eq!(all.iter().filter(|i| i.good).count() * 2, all.len(), "{name}: half acceptable");
            assert_eq!(all.iter().all(|i| i.recall.is_some()), name == "kqa", "{name}: recall only where statements are labelled");
            assert!(all.iter().all(|i| !i.note.is_empty() && i.item.output.as_deref().is_some_and(|o| !o.is_empty())), "{name}");
            let train_groups: std::collections::HashSet<&str> = b.train.iter().map(|i| i.group.as_str()).collect();
            assert!(b.test.iter().all(|i| !train_groups.contains(i.group.as_str())), "{name}: a group in both splits");
            assert!(!b.train.is_empty() && !b.test.is_empty(), "{name}");
            // Stratified: each split holds as many acceptable outputs as unacceptable ones (K-QA,
            // MEDEC: outputs of one question or case stay together, so nearly as many).
            for split in [&b.train, &b.test] {
                let good = split.iter().filter(|i| i.good).count() as i64;
                assert!((2 * good - split.len() as i64).abs() <= if name == "kqa" || name == "medec" { 2 } else { 0 }, "{name}: {good} of {}", split.len());
            }
            // The same seed splits the same way; another seed differently.
            let again = load(name, &data(), 12, 7, 0.5).unwrap();
            assert_eq!(again.test.iter().map(|i| &i.item.key).collect::<Vec<_>>(), b.test.iter().map(|i| &i.item.key).collect::<Vec<_>>());
        }
        let b = load("llmbar", &data(), 12, 7, 0.5).unwrap();
        for pair in b.test.chunks(2) {
            assert_eq!(pair[0].group, pair[1].group);
            assert_ne!(pair[0].good, pair[1].good, "one better output per pair");
        }
        assert!(load("nope", &data(), 4, 1, 0.5).unwrap_err().to_string().contains("unknown dataset 'nope'"));
        assert!(load("ifeval", &data(), 1, 1, 0.5).unwrap_err().to_string().contains("too few for both a train and a test split"));
        // Few groups in strata of one each still give a test split.
        for name in NAMES {
            let b = load(name, &data(), 4, 1, 0.5).unwrap();
            assert!(!b.train.is_empty() && !b.test.is_empty(), "{name}");
        }
    }
}
