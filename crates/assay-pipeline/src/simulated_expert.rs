//! An expert simulated from a labels file, so that the loop (discover -> run -> questions ->
//! answers -> refine -> run) can run unattended on labelled data: for benchmarks and tests of
//! the loop, never in place of a person. Each open question about one check on one item of the
//! dataset is answered the way an expert would: the file's label of that pair as the ruling's
//! verdict (and recorded as the expert's label), its note as the ruling's words.
//!
//! It sees only the labels it is given: a benchmark hands it the training split's file, so
//! questions on held-out items stay open and their labels never reach the store.

use crate::error::Result;
use crate::labels::{labels_of, LabelRecord};
use assay_core::Verdict;
use assay_store::{Dataset, ItemId, Project, QuestionId, QuestionStatus, Store};
use serde::Serialize;
use std::collections::HashMap;

/// What the simulated expert did with the open questions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SimulatedAnswers {
    /// Answered from a label, in question order.
    pub answered: Vec<QuestionId>,
    /// About one check on one item of the dataset, with no label for that pair: left open.
    pub unlabelled: usize,
    /// About a check, the set, or another dataset's item: a label cannot settle them; left open.
    pub not_answerable: usize,
}

/// The ruling an expert's label makes: its verdict, then its note (or, without one, a plain
/// statement that this is the expert's verdict on this output).
pub fn ruling_of_label(verdict: Verdict, note: &str) -> String {
    let verdict = match verdict {
        Verdict::Pass => "PASS",
        Verdict::Fail => "FAIL",
    };
    match note.trim() {
        "" => format!("{verdict}: that is the expert's verdict on this output."),
        note => format!("{verdict}: {note}"),
    }
}

/// Answers `project`'s open questions from `records` (labels of `dataset`'s items, checked all
/// or nothing as `assay label` checks them), each ruling and label recorded as given by `rater`.
pub fn answer_from_labels(store: &mut Store, project: &Project, dataset: &Dataset, records: &[LabelRecord], rater: &str) -> Result<SimulatedAnswers> {
    let (labels, _scores) = labels_of(records, &store.items(dataset.id)?)?;
    let by_pair: HashMap<(ItemId, &str), (Verdict, &str)> = labels.iter().map(|l| ((l.item, l.check.as_str()), (l.verdict, l.note.as_str()))).collect();
    let mut done = SimulatedAnswers::default();
    for q in store.questions(project.id, Some(QuestionStatus::Open))? {
        let (Some(item), Some(check)) = (q.asked.item, q.asked.check.as_deref()) else {
            done.not_answerable += 1;
            continue;
        };
        if store.item(item)?.dataset != dataset.id {
            done.not_answerable += 1;
            continue;
        }
        match by_pair.get(&(item, check)) {
            Some(&(verdict, note)) => {
                store.answer_question_with_label(q.id, &ruling_of_label(verdict, note), Some(verdict), rater)?;
                done.answered.push(q.id);
            }
            None => done.unlabelled += 1,
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use assay_store::{NewItem, NewProject, NewQuestion};

    fn record(item: &str, check: &str, verdict: Verdict, note: &str) -> LabelRecord {
        LabelRecord { item: item.into(), check: Some(check.into()), verdict: Some(verdict), score: None, note: note.into(), rater: String::new() }
    }

    #[test]
    fn answers_only_the_labelled_pairs_and_records_the_labels() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("assay.db")).unwrap();
        let project = store.create_project(&NewProject { name: "p".into(), generation_prompt: "Answer.".into(), ..Default::default() }).unwrap();
        let items: Vec<NewItem> = ["a", "b", "c"].iter().map(|k| NewItem { key: k.to_string(), input: "in".into(), output: Some("out".into()), ..Default::default() }).collect();
        let dataset = store.import_dataset(project.id, "d", "test", &items).unwrap();
        let ids: Vec<ItemId> = store.items(dataset.id).unwrap().iter().map(|i| i.id).collect();
        let ask = |item: Option<ItemId>, check: Option<&str>| NewQuestion { item, check: check.map(str::to_string), why: "near the threshold".into(), ..Default::default() };
        let asked = store.add_questions(project.id, &[ask(Some(ids[0]), Some("c1")), ask(Some(ids[1]), Some("c1")), ask(Some(ids[2]), Some("c2")), ask(None, Some("c1"))]).unwrap();

        // Labels of items a and c only (the "training split"); b's label is not given.
        let records = [record("a", "c1", Verdict::Fail, "the prompt asks for no commas"), record("c", "c2", Verdict::Pass, "")];
        let done = answer_from_labels(&mut store, &project, &dataset, &records, "simulated").unwrap();
        assert_eq!(done, SimulatedAnswers { answered: vec![asked[0], asked[2]], unlabelled: 1, not_answerable: 1 });

        let q0 = store.question(asked[0]).unwrap();
        assert_eq!(q0.status, QuestionStatus::Answered);
        let ruling = q0.ruling.unwrap();
        assert_eq!((ruling.text.as_str(), ruling.rater.as_str()), ("FAIL: the prompt asks for no commas", "simulated"));
        assert_eq!(store.question(asked[2]).unwrap().ruling.unwrap().text, "PASS: that is the expert's verdict on this output.");
        assert_eq!(store.question(asked[1]).unwrap().status, QuestionStatus::Open);
        let labels = store.check_labels(dataset.id).unwrap();
        assert_eq!(labels.iter().map(|l| (l.item, l.check.as_str(), l.verdict)).collect::<Vec<_>>(), vec![(ids[0], "c1", Verdict::Fail), (ids[2], "c2", Verdict::Pass)]);

        // A second pass finds nothing new to answer; an unknown item is refused with nothing done.
        assert_eq!(answer_from_labels(&mut store, &project, &dataset, &records, "simulated").unwrap().answered, vec![]);
        let err = answer_from_labels(&mut store, &project, &dataset, &[record("zz", "c1", Verdict::Pass, "")], "simulated").unwrap_err();
        assert!(err.to_string().contains("item 'zz'"), "{err}");
        assert_eq!(store.question(asked[1]).unwrap().status, QuestionStatus::Open);
    }
}
