//! Checks measured before refinement adopts them: a draft from the expert's notes, or a rewrite,
//! is judged on the outputs the expert scored in the run's dataset (with the run's judge
//! options; the outputs its judged examples show stay out), and its P(PASS) ranked against the
//! expert's high and low scores (AUROC). A check writer can word a question so that yes is the
//! bad case, ask about one output's particulars, or rewrite a check into one that ranks worse;
//! measured on the expert's own outputs, that shows before it reaches a version.
//!
//! Nothing is stored: the judgments serve the choice only, and the version's next run judges
//! the adopted check again.

use crate::backend::Role;
use crate::error::Result;
use crate::judge_run::run_options;
use crate::report::ScoreMiddle;
use crate::Progress;
use assay_core::metrics::auroc;
use assay_core::{Check, JudgeItem, Judgment};
use assay_store::{ItemId, Run, Store};
use std::collections::HashMap;

/// Most outputs of each side (scored high, scored low) a probe judges: enough to rank a check,
/// few enough that probing stays a fraction of a judge run.
pub const MAX_PROBE_OUTPUTS: usize = 32;

/// The outputs of a run's dataset the expert scored off the middle of their scores (at most
/// `MAX_PROBE_OUTPUTS` a side, in dataset order), and the run they are probed like.
pub struct ScoredOutputs<'r> {
    run: &'r Run,
    items: Vec<JudgeItem>,
    /// Whether the expert scored each of `items` high.
    good: Vec<bool>,
    /// The inputs of the run's judged examples (their outputs stay out of `items`).
    shown_inputs: Vec<String>,
}

impl<'r> ScoredOutputs<'r> {
    pub fn of_run(store: &Store, run: &'r Run) -> Result<Self> {
        let mut scored = Self { run, items: Vec::new(), good: Vec::new(), shown_inputs: Vec::new() };
        let Some(dataset) = run.dataset else { return Ok(scored) };
        let scores: HashMap<ItemId, f64> = store.score_labels(dataset)?.into_iter().map(|s| (s.item, s.score)).collect();
        let Some(middle) = ScoreMiddle::of(scores.values().copied()) else { return Ok(scored) };
        // The judge has seen the expert's verdict on the outputs its examples show.
        let examples = run_options(run)?.examples;
        let shown: Vec<String> = examples.iter().filter_map(|e| e.item.clone()).collect();
        scored.shown_inputs = examples.into_iter().map(|e| e.input).collect();
        let mut taken = [0usize; 2];
        for item in store.items(dataset)? {
            let (Some(&score), Some(judge_item)) = (scores.get(&item.id), item.to_judge_item()) else { continue };
            if shown.contains(&judge_item.id) {
                continue;
            }
            let Some(side) = middle.high(score) else { continue };
            if taken[usize::from(side)] == MAX_PROBE_OUTPUTS {
                continue;
            }
            taken[usize::from(side)] += 1;
            scored.items.push(judge_item);
            scored.good.push(side);
        }
        Ok(scored)
    }

    /// Whether the expert scored outputs on both sides: without, nothing can be ranked.
    pub fn ranks(&self) -> bool {
        self.good.contains(&true) && self.good.contains(&false)
    }

    /// AUROC of `check`'s P(PASS) among `judgments` (the run's, say) on these outputs.
    pub fn auroc_of(&self, judgments: &[Judgment], check: &str) -> Option<f64> {
        let p: HashMap<&str, f64> = judgments.iter().filter(|j| j.check_id == check).map(|j| (j.item_id.as_str(), j.p_pass as f64)).collect();
        self.auroc(|n| p.get(self.items[n].id.as_str()).copied())
    }

    /// Judges `checks` on these outputs: each check's AUROC (`None` for all when `ranks` is not).
    pub fn probe(&self, judge: &Role, checks: &[Check], progress: Progress) -> Result<Vec<Option<f64>>> {
        if checks.is_empty() || !self.ranks() {
            return Ok(vec![None; checks.len()]);
        }
        let options = run_options(self.run)?;
        let total = self.items.len() * checks.len();
        let judged = judge.judge(&self.items, checks, &options, &mut |done| progress("probing checks", done, total))?;
        Ok((0..checks.len()).map(|c| self.auroc(|n| judged[n].get(c).map(|j| j.p_pass as f64))).collect())
    }

    /// A name or figure in `check`'s question or pass criteria that only one of these outputs'
    /// inputs (or the judged examples') mentions (of three or more inputs): such a check asks
    /// about that input's particulars, and however well it ranks that input's outputs, it
    /// measures nothing on others.
    pub fn particular(&self, check: &Check) -> Option<String> {
        let inputs: std::collections::HashSet<&str> = self.items.iter().map(|i| i.input.as_str()).chain(self.shown_inputs.iter().map(String::as_str)).collect();
        let inputs: Vec<&str> = inputs.into_iter().collect();
        [&check.question, &check.pass_criteria].into_iter().find_map(|text| particular_of_one_input(text, &inputs)).map(str::to_string)
    }

    /// AUROC of the P(PASS) `p` gives output `n`, high-scored vs low-scored.
    fn auroc(&self, p: impl Fn(usize) -> Option<f64>) -> Option<f64> {
        let side = |good: bool| (0..self.items.len()).filter(|&n| self.good[n] == good).filter_map(&p).collect::<Vec<_>>();
        auroc(&side(true), &side(false))
    }
}

/// The first name (a capitalised word inside a sentence) or figure (a word with a digit) of
/// `text` that exactly one of `inputs` (three or more) contains as a word, case aside; the
/// verdicts PASS and FAIL are no particular.
fn particular_of_one_input<'t>(text: &'t str, inputs: &[&str]) -> Option<&'t str> {
    if inputs.len() < 3 {
        return None;
    }
    let words = |t: &str| t.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect::<std::collections::HashSet<_>>();
    let input_words: Vec<_> = inputs.iter().map(|i| words(i)).collect();
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for (at, c) in text.char_indices().filter(|(_, c)| c.is_alphanumeric()) {
        match spans.last_mut() {
            Some((_, end)) if *end == at => *end = at + c.len_utf8(),
            _ => spans.push((at, at + c.len_utf8())),
        }
    }
    for (start, end) in spans {
        let word = &text[start..end];
        let sentence_start = text[..start].trim_end().chars().last().is_none_or(|c| matches!(c, '.' | '?' | '!' | ':' | '"'));
        // PASS and FAIL are the judge's verdicts, named in any check's criteria.
        let verdict = word.eq_ignore_ascii_case("pass") || word.eq_ignore_ascii_case("fail");
        let name_or_figure = !verdict && (word.chars().any(|c| c.is_ascii_digit()) || (!sentence_start && word.chars().next().is_some_and(char::is_uppercase)));
        if name_or_figure && input_words.iter().filter(|w| w.contains(&word.to_lowercase())).count() == 1 {
            return Some(word);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::particular_of_one_input;

    #[test]
    fn a_name_or_figure_only_one_input_mentions_is_that_inputs_particular() {
        let inputs = ["Which SSRI is Escitalopram like?", "Is 5 mg of melatonin safe?", "What helps a cough?"];
        let particular = |text| particular_of_one_input(text, &inputs);
        assert_eq!(particular("Does the output state that Escitalopram is sold as Lexapro?"), Some("Escitalopram"));
        assert_eq!(particular("Does it say 5 mg at most?"), Some("5"));
        // Sentence starts, names no input mentions, and words of several inputs are not.
        assert_eq!(particular("Does the output answer the question? Is Lexapro named?"), None);
        assert_eq!(particular("Is the dose safe? Melatonin aside."), None);
        assert_eq!(particular("Does it answer what Is asked?"), None, "'is' is in two inputs");
        let with_pass = ["Will I pass the exam?", "Say hi.", "Say bye."];
        assert_eq!(particular_of_one_input("Answer PASS when it names the exam.", &with_pass), None);
        // Of fewer than three inputs, every word is some input's.
        assert_eq!(particular_of_one_input("Is Escitalopram named?", &inputs[..2]), None);
    }
}
