//! What the expert does at the terminal: `assay questions` (what the system is unsure of),
//! `assay answer` (a ruling, optionally also a label; or, for benchmarks, every open question
//! answered from a labels file by a simulated expert) and `assay label` (PASS/FAIL labels of
//! checks on items, or whole-output scores).

use crate::options::{AnswerArgs, GlobalOptions, LabelArgs, QuestionsArgs};
use anyhow::{bail, Context, Result};
use assay_core::Verdict;
use assay_pipeline::labels::{labels_of, parse_label_lines, LabelRecord};
use assay_pipeline::simulated_expert;
use assay_store::{QuestionId, QuestionStatus};

pub fn questions(global: &GlobalOptions, args: &QuestionsArgs) -> Result<()> {
    let store = super::open_store(global)?;
    let project = super::project(&store, &args.project.project)?;
    let questions = store.questions(project.id, (!args.all).then_some(QuestionStatus::Open))?;
    for q in &questions {
        if args.json {
            println!("{}", serde_json::to_string(q)?);
            continue;
        }
        let about = match (q.asked.item, &q.asked.check) {
            (Some(item), Some(check)) => format!("item '{}', check '{check}'", store.item(item)?.fields.key),
            (None, Some(check)) => format!("check '{check}'"),
            (Some(item), None) => format!("item '{}'", store.item(item)?.fields.key),
            (None, None) => "the evaluator set".to_string(),
        };
        println!("Q{} [{}] {about}: {}", q.id, q.status.as_str(), q.asked.why);
        if !q.asked.options.is_empty() {
            println!("    options: {}", q.asked.options.join(" | "));
        }
        if let Some(ruling) = &q.ruling {
            println!("    ruling: {}", ruling.text);
        }
    }
    if !args.json {
        eprintln!("{} question(s){}", questions.len(), if args.all { "" } else { " open (--all shows answered ones too)" });
    }
    Ok(())
}

pub fn answer(global: &GlobalOptions, args: &AnswerArgs) -> Result<()> {
    let mut store = super::open_store(global)?;
    if let (Some(path), Some(project)) = (&args.from_labels, &args.project) {
        return answer_from_labels(&mut store, project, args.dataset.data.as_deref(), path, if args.rater.is_empty() { "simulated-expert" } else { &args.rater });
    }
    let (Some(question), Some(ruling)) = (args.question, args.ruling.as_deref()) else { bail!("give a question id and --ruling, or --project and --from-labels") };
    let label = args.label.as_deref().map(verdict_of);
    let answered = store.answer_question_with_label(QuestionId(question), ruling, label, &args.rater).with_context(|| format!("answering question {question}"))?;
    println!("recorded the ruling on question {}{}", answered.id, if args.label.is_some() { " and the expert label" } else { "" });
    Ok(())
}

/// `assay answer --from-labels`: the simulated expert of the benchmarks.
fn answer_from_labels(store: &mut assay_store::Store, project: &str, dataset: Option<&str>, path: &std::path::Path, rater: &str) -> Result<()> {
    let project = super::project(store, project)?;
    let dataset = super::dataset(store, &project, dataset)?;
    let records = parse_label_lines(&std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?).with_context(|| format!("labels in {}", path.display()))?;
    let done = simulated_expert::answer_from_labels(store, &project, &dataset, &records, rater).with_context(|| format!("answering the questions of '{}' from {}", project.name, path.display()))?;
    println!(
        "answered {} question(s) from the labels as '{rater}'; left open: {} about a pair the file does not label, {} a label cannot settle",
        done.answered.len(),
        done.unlabelled,
        done.not_answerable
    );
    Ok(())
}

fn verdict_of(text: &str) -> Verdict {
    if text == "pass" {
        Verdict::Pass
    } else {
        Verdict::Fail
    }
}

pub fn label(global: &GlobalOptions, args: &LabelArgs) -> Result<()> {
    let mut store = super::open_store(global)?;
    let project = super::project(&store, &args.project.project)?;
    let dataset = super::dataset(&store, &project, args.dataset.data.as_deref())?;
    let records = match (&args.file, &args.item) {
        (Some(path), _) => parse_label_lines(&std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?).with_context(|| format!("labels in {}", path.display()))?,
        (None, Some(item)) => {
            if args.verdict.is_none() && args.score.is_none() {
                bail!("give --check and --verdict, or --score, for item '{item}'");
            }
            vec![LabelRecord { item: item.clone(), check: args.check.clone(), verdict: args.verdict.as_deref().map(verdict_of), score: args.score, note: args.note.clone(), rater: args.rater.clone() }]
        }
        (None, None) => bail!("give --item (with --check and --verdict, or --score) or --file"),
    };
    let records: Vec<LabelRecord> = records.into_iter().map(|r| if r.rater.is_empty() { LabelRecord { rater: args.rater.clone(), ..r } } else { r }).collect();
    let (checks, scores) = labels_of(&records, &store.items(dataset.id)?).with_context(|| format!("labels for dataset '{}'", dataset.name))?;
    store.set_check_labels(&checks)?;
    store.set_score_labels(&scores)?;
    println!("recorded {} check label(s) and {} score(s) on dataset '{}'", checks.len(), scores.len(), dataset.name);
    Ok(())
}
