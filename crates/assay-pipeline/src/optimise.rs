//! Genetic optimisation of outputs: the evaluator set as the fitness function of a population
//! of outputs for one input. Mutation rewrites a candidate guided by the checks it fails (and,
//! when the judge gives rationales, what they say); crossover merges two candidates; selection keeps the Pareto front
//! across checks (every candidate that is best on some trade-off, as GEPA does) plus the
//! fittest (elitism). Fitness is the number of passed checks, ties broken by the sum of
//! P(PASS). The budget counts candidate evaluations (each judges every check once); the search
//! stops early when a candidate passes every check. Deterministic for a seed; every
//! candidate keeps its lineage. `best_of_n` is the baseline with the same budget.

use crate::backend::{ChatRequest, Role};
use crate::error::{PipelineError, Result};
use crate::stable_seed;
use assay_core::{Check, JudgeItem, JudgeMode, JudgeOptions, SamplingParams, Verdict};
use assay_engine::ChatMessage;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptimiseOptions {
    /// Most generations after the seed population.
    pub generations: usize,
    pub population: usize,
    /// Most candidate evaluations (each judges every check once), seeds included.
    pub budget: usize,
    pub seed: u64,
    /// Most tokens of a generated or rewritten output.
    pub max_tokens: usize,
    /// Judge in rationale mode, so that a mutation is told why each failed check failed
    /// (a rationale per check per candidate: slower than verdicts alone).
    #[serde(default)]
    pub rationales: bool,
}

/// Tokens of a judge rationale when the search asks for them.
const RATIONALE_TOKENS: usize = 32;

/// Largest population, and most evaluations per input: a search's requests and candidates are
/// held in memory, so a request cannot ask for unbounded work.
pub const MAX_POPULATION: usize = 64;
pub const MAX_BUDGET: usize = 4096;

impl Default for OptimiseOptions {
    fn default() -> Self {
        Self { generations: 4, population: 4, budget: 20, seed: 0, max_tokens: 128, rationales: false }
    }
}

impl OptimiseOptions {
    /// The budget when none is given: the default's, or the population if larger (the seeds
    /// alone take one evaluation each).
    pub fn default_budget(population: usize) -> usize {
        Self::default().budget.max(population)
    }

    pub fn validate(&self) -> Result<()> {
        if !(2..=MAX_POPULATION).contains(&self.population) || !(self.population..=MAX_BUDGET).contains(&self.budget) || self.max_tokens == 0 {
            return Err(PipelineError::Invalid(format!(
                "the population ({}) must be 2 to {MAX_POPULATION}, the budget ({}) from the population to {MAX_BUDGET}, and max tokens at least 1",
                self.population, self.budget
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    Seed,
    Mutation { parent: usize },
    Crossover { parents: [usize; 2] },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Candidate {
    pub id: usize,
    pub generation: usize,
    pub origin: Origin,
    pub text: String,
    /// P(PASS) per check, in the set's order.
    pub p_pass: Vec<f32>,
    pub passes: usize,
    /// The judge's rationale per check, in rationale mode (empty otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rationales: Vec<String>,
}

impl Candidate {
    pub fn score(&self) -> f32 {
        self.p_pass.iter().sum()
    }

    /// Passes, ties broken by the sum of P(PASS).
    fn fitness(&self) -> (usize, f32) {
        (self.passes, self.score())
    }

    /// At least as good on every check and better on one.
    fn dominates(&self, other: &Candidate) -> bool {
        self.p_pass.iter().zip(&other.p_pass).all(|(a, b)| a >= b) && self.p_pass.iter().zip(&other.p_pass).any(|(a, b)| a > b)
    }
}

/// Progress after each generation.
#[derive(Debug, Clone, Serialize)]
pub struct GenerationEvent {
    pub generation: usize,
    pub best_passes: usize,
    pub best_score: f32,
    pub evaluations: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Evolution {
    /// Every candidate ever evaluated, in order of creation: the lineage.
    pub candidates: Vec<Candidate>,
    /// Index of the fittest candidate.
    pub best: usize,
    pub evaluations: usize,
    pub generations: usize,
}

impl Evolution {
    pub fn best(&self) -> &Candidate {
        &self.candidates[self.best]
    }
}

/// The models and the task an optimisation runs against.
pub struct Task<'a> {
    pub generator: &'a Role,
    pub judge: &'a Role,
    pub prompt: &'a str,
    pub input: &'a str,
    pub context: Option<&'a str>,
    pub checks: &'a [Check],
}

impl Task<'_> {
    fn user(&self, body: &str) -> String {
        match self.context {
            Some(c) => format!("{}\n\nContext:\n{c}\n\n{body}", self.input),
            None => format!("{}\n\n{body}", self.input),
        }
        .trim_end()
        .to_string()
    }

    fn request(&self, user: String, seed: u64, max_tokens: usize) -> ChatRequest {
        ChatRequest {
            messages: vec![ChatMessage::new("system", self.prompt), ChatMessage::new("user", &user)],
            answer_prefix: String::new(),
            params: SamplingParams { max_tokens, temperature: 0.9, top_p: 0.95, seed: Some(seed), ..Default::default() },
        }
    }

    /// Up to `n` fresh outputs for the input (the usable ones).
    fn sample(&self, n: usize, seed: u64, max_tokens: usize) -> Result<Vec<String>> {
        let requests: Vec<ChatRequest> = (0..n).map(|i| self.request(self.user(""), stable_seed(seed, &["sample", &i.to_string()]), max_tokens)).collect();
        Ok(usable(self.generator.chat(&requests, &mut |_| {})?)?.into_iter().map(|(_, text)| text).collect())
    }

    /// Each text judged on every check, all together (they share the input's prefix); a
    /// repeated text (a population often repeats a candidate) is judged once.
    fn evaluate(&self, texts: &[String], rationales: bool) -> Result<Vec<Scored>> {
        let mut distinct: Vec<&String> = Vec::new();
        let of_text: Vec<usize> = texts
            .iter()
            .map(|t| {
                distinct.iter().position(|d| *d == t).unwrap_or_else(|| {
                    distinct.push(t);
                    distinct.len() - 1
                })
            })
            .collect();
        let items: Vec<JudgeItem> = distinct
            .iter()
            .enumerate()
            .map(|(i, t)| JudgeItem { id: format!("candidate-{i}"), input: self.input.to_string(), output: t.to_string(), context: self.context.map(str::to_string) })
            .collect();
        let options = if rationales { JudgeOptions { mode: JudgeMode::Rationale, rationale_tokens: RATIONALE_TOKENS, ..JudgeOptions::default() } } else { JudgeOptions::default() };
        let scored: Vec<Scored> = self
            .judge
            .judge(&items, self.checks, &options, &mut |_| {})?
            .into_iter()
            .map(|js| Scored {
                p_pass: js.iter().map(|j| j.p_pass).collect(),
                passes: js.iter().filter(|j| j.verdict == Verdict::Pass).count(),
                rationales: if rationales { js.into_iter().map(|j| j.rationale.unwrap_or_default()).collect() } else { Vec::new() },
            })
            .collect();
        Ok(of_text.into_iter().map(|k| scored[k].clone()).collect())
    }
}

/// A text's judgments, as a candidate keeps them.
#[derive(Clone)]
struct Scored {
    p_pass: Vec<f32>,
    passes: usize,
    rationales: Vec<String>,
}

impl Scored {
    fn into_candidate(self, id: usize, generation: usize, origin: Origin, text: String) -> Candidate {
        Candidate { id, generation, origin, text, p_pass: self.p_pass, passes: self.passes, rationales: self.rationales }
    }
}

/// The usable answers with their positions. A failed or empty generation is no candidate:
/// judged, nothing can pass checks by the judge's whim and become gold. When no answer of a
/// batch is usable the search cannot go on, and the first failure is the error.
fn usable(answers: Vec<crate::backend::Completion>) -> Result<Vec<(usize, String)>> {
    let mut failure = None;
    let kept: Vec<(usize, String)> = answers
        .into_iter()
        .enumerate()
        .filter_map(|(i, answer)| match answer {
            Ok(text) if !text.trim().is_empty() => Some((i, text)),
            Ok(_) => {
                failure.get_or_insert_with(|| "the generator answered nothing".to_string());
                None
            }
            Err(e) => {
                failure.get_or_insert(e);
                None
            }
        })
        .collect();
    match (kept.is_empty(), failure) {
        (true, Some(why)) => Err(PipelineError::Invalid(format!("every generation failed: {why}"))),
        _ => Ok(kept),
    }
}

/// A small deterministic generator (SplitMix64) for parent choices.
struct Picker(u64);

impl Picker {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) % n as u64) as usize
    }
}

/// The fittest of the candidates `among` (the earliest of equals); none when `among` is empty.
pub fn fittest(candidates: &[Candidate], among: impl IntoIterator<Item = usize>) -> Option<usize> {
    among.into_iter().reduce(|best, i| if candidates[i].fitness() > candidates[best].fitness() { i } else { best })
}

/// `among`, fittest first (equals keep their order).
fn fittest_first(candidates: &[Candidate], mut among: Vec<usize>) -> Vec<usize> {
    among.sort_by(|&x, &y| candidates[y].fitness().partial_cmp(&candidates[x].fitness()).unwrap_or(std::cmp::Ordering::Equal));
    among
}

/// Indices of the candidates in `pool` that no other candidate in it dominates.
fn pareto_front(candidates: &[Candidate], pool: &[usize]) -> Vec<usize> {
    pool.iter().copied().filter(|&i| !pool.iter().any(|&j| j != i && candidates[j].dominates(&candidates[i]))).collect()
}

pub fn evolve(task: &Task, options: &OptimiseOptions, events: &mut dyn FnMut(&GenerationEvent)) -> Result<Evolution> {
    options.validate()?;
    if task.checks.is_empty() {
        return Err(assay_core::InputError::NoChecks.into());
    }
    let mut candidates: Vec<Candidate> = Vec::new();
    let add = |candidates: &mut Vec<Candidate>, texts: Vec<String>, origins: Vec<Origin>, generation: usize, scored: Vec<Scored>| {
        for ((text, origin), s) in texts.into_iter().zip(origins).zip(scored) {
            candidates.push(s.into_candidate(candidates.len(), generation, origin, text));
        }
    };
    let seeds = task.sample(options.population, options.seed, options.max_tokens)?;
    let scored = task.evaluate(&seeds, options.rationales)?;
    let mut evaluations = seeds.len();
    add(&mut candidates, seeds, vec![Origin::Seed; evaluations], 0, scored);
    let mut pool: Vec<usize> = (0..candidates.len()).collect();
    let mut picker = Picker(stable_seed(options.seed, &["parents"]));
    let mut generation = 0;
    let best_of = |candidates: &[Candidate]| fittest(candidates, 0..candidates.len()).expect("the seeds are candidates");
    let report = |candidates: &[Candidate], generation, evaluations, events: &mut dyn FnMut(&GenerationEvent)| {
        let best = &candidates[best_of(candidates)];
        events(&GenerationEvent { generation, best_passes: best.passes, best_score: best.score(), evaluations });
    };
    report(&candidates, 0, evaluations, events);
    while generation < options.generations && candidates[best_of(&candidates)].passes < task.checks.len() && evaluations + 2 <= options.budget {
        generation += 1;
        let children = options.population.min(options.budget - evaluations);
        let front = pareto_front(&candidates, &pool);
        let mut requests = Vec::with_capacity(children);
        let mut origins = Vec::with_capacity(children);
        for c in 0..children {
            let seed = stable_seed(options.seed, &["child", &generation.to_string(), &c.to_string()]);
            let a = front[picker.below(front.len())];
            if c % 2 == 0 || front.len() < 2 {
                let body = rewrite_body(task.checks, &candidates[a]);
                requests.push(task.request(task.user(&body), seed, options.max_tokens));
                origins.push(Origin::Mutation { parent: a });
            } else {
                let b = loop {
                    let b = front[picker.below(front.len())];
                    if b != a {
                        break b;
                    }
                };
                let body = format!(
                    "Answer A:\n{}\n\nAnswer B:\n{}\n\nMerge them into one answer that keeps the strengths of both. Reply with the merged answer only.",
                    candidates[a].text, candidates[b].text
                );
                requests.push(task.request(task.user(&body), seed, options.max_tokens));
                origins.push(Origin::Crossover { parents: [a, b] });
            }
        }
        let (kept, texts): (Vec<usize>, Vec<String>) = usable(task.generator.chat(&requests, &mut |_| {})?)?.into_iter().unzip();
        let origins: Vec<Origin> = kept.into_iter().map(|i| origins[i].clone()).collect();
        let scored = task.evaluate(&texts, options.rationales)?;
        evaluations += texts.len();
        let first_child = candidates.len();
        add(&mut candidates, texts, origins, generation, scored);
        // Survivors: the Pareto front of parents and children, then the fittest, up to the population.
        let everyone: Vec<usize> = pool.iter().copied().chain(first_child..candidates.len()).collect();
        let mut next = fittest_first(&candidates, pareto_front(&candidates, &everyone));
        next.truncate(options.population);
        let rest = fittest_first(&candidates, everyone.into_iter().filter(|i| !next.contains(i)).collect());
        next.extend(rest.into_iter().take(options.population.saturating_sub(next.len())));
        pool = next;
        report(&candidates, generation, evaluations, events);
    }
    Ok(Evolution { best: best_of(&candidates), candidates, evaluations, generations: generation })
}

/// A mutation's request: the parent, the checks it fails (with the judge's rationale when
/// there is one), and the ask to rewrite it.
fn rewrite_body(checks: &[Check], parent: &Candidate) -> String {
    let failing: Vec<String> = (0..checks.len())
        .filter(|&k| parent.p_pass[k] < checks[k].threshold())
        .map(|k| match parent.rationales.get(k).filter(|r| !r.is_empty()) {
            Some(why) => format!("- {} (the judge: {why})", checks[k].question),
            None => format!("- {}", checks[k].question),
        })
        .collect();
    let guidance = if failing.is_empty() { "It passes every check; make it clearer and more precise.".to_string() } else { format!("It fails these checks:\n{}", failing.join("\n")) };
    format!("A previous answer:\n{}\n\n{guidance}\nRewrite the answer so that it passes every check, keeping what is already right. Reply with the rewritten answer only.", parent.text)
}

/// The baseline: `n` samples, each judged as the search judges (`options`' seed, tokens and
/// mode), the fittest kept.
pub fn best_of_n(task: &Task, n: usize, options: &OptimiseOptions) -> Result<Candidate> {
    let texts = task.sample(n, stable_seed(options.seed, &["best-of-n"]), options.max_tokens)?;
    let scored = task.evaluate(&texts, options.rationales)?;
    let mut candidates: Vec<Candidate> = texts.into_iter().zip(scored).enumerate().map(|(id, (text, s))| s.into_candidate(id, 0, Origin::Seed, text)).collect();
    let best = fittest(&candidates, 0..candidates.len()).ok_or_else(|| PipelineError::Invalid("best-of-n needs n >= 1".into()))?;
    Ok(candidates.swap_remove(best))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::backend::{Backend, Backends, Completion};
    use crate::config::RoleModel;
    use assay_core::Judgment;
    use std::sync::Arc;

    /// A scripted backend: outputs are numbers; a rewrite adds one, a merge takes the larger;
    /// check k passes when the number exceeds k. Enough to see selection, lineage and stops.
    pub(crate) struct Counting;

    fn number(text: &str) -> i64 {
        text.trim().parse().unwrap_or(0)
    }

    impl Backend for Counting {
        fn chat(&self, _: &str, requests: &[ChatRequest], _: &mut dyn FnMut(usize)) -> crate::Result<Vec<Completion>> {
            Ok(requests
                .iter()
                .map(|r| {
                    let user = &r.messages[1].content;
                    let numbers: Vec<i64> = user.lines().filter_map(|l| l.trim().parse().ok()).collect();
                    Ok(if user.contains("Merge") {
                        numbers.iter().max().unwrap() + 1
                    } else if user.contains("Rewrite") {
                        numbers[0] + 1
                    } else {
                        (r.params.seed.unwrap() % 3) as i64
                    }
                    .to_string())
                })
                .collect())
        }

        fn judge(&self, _: &str, items: &[JudgeItem], checks: &[Check], _: &JudgeOptions, _: &mut dyn FnMut(usize)) -> crate::Result<Vec<Vec<Judgment>>> {
            Ok(items
                .iter()
                .map(|item| {
                    checks
                        .iter()
                        .enumerate()
                        .map(|(k, c)| {
                            let p = if number(&item.output) > k as i64 { 0.9 } else { 0.1 };
                            crate::scripted_judgment(&item.id, &c.id, p)
                        })
                        .collect()
                })
                .collect())
        }

        fn embed(&self, _: &str, _: &[String]) -> crate::Result<Vec<Vec<f32>>> {
            unreachable!("optimisation embeds nothing")
        }
    }

    pub(crate) fn checks(n: usize) -> Vec<Check> {
        (0..n).map(|k| Check { id: format!("c{k}"), name: String::new(), question: format!("Is it above {k}?"), pass_criteria: String::new(), fail_examples: vec![], threshold: None }).collect()
    }

    fn run(budget: usize, seed: u64) -> Evolution {
        let role = Backends::new(Arc::new(Counting)).role(&RoleModel::local("scripted")).unwrap();
        let checks = checks(6);
        let task = Task { generator: &role, judge: &role, prompt: "Count.", input: "Give a number.", context: None, checks: &checks };
        evolve(&task, &OptimiseOptions { generations: 20, population: 4, budget, seed, max_tokens: 8, rationales: false }, &mut |_| {}).unwrap()
    }

    #[test]
    fn climbs_stops_when_every_check_passes_and_records_lineage() {
        let e = run(200, 1);
        assert_eq!(e.best().passes, 6, "rewrites add one per generation until every check passes");
        assert!(e.evaluations < 200, "stopped early at {} evaluations", e.evaluations);
        for c in &e.candidates {
            match &c.origin {
                Origin::Seed => assert_eq!(c.generation, 0),
                Origin::Mutation { parent } => assert!(e.candidates[*parent].generation < c.generation),
                Origin::Crossover { parents } => assert!(parents.iter().all(|p| e.candidates[*p].generation < c.generation)),
            }
        }
    }

    /// `Counting`, remembering how many items each judge call asked for.
    #[derive(Default)]
    struct JudgedItems(std::sync::Mutex<Vec<usize>>);

    impl Backend for JudgedItems {
        fn chat(&self, model: &str, requests: &[ChatRequest], progress: &mut dyn FnMut(usize)) -> crate::Result<Vec<Completion>> {
            Counting.chat(model, requests, progress)
        }

        fn judge(&self, model: &str, items: &[JudgeItem], checks: &[Check], options: &JudgeOptions, progress: &mut dyn FnMut(usize)) -> crate::Result<Vec<Vec<Judgment>>> {
            self.0.lock().unwrap().push(items.len());
            Counting.judge(model, items, checks, options, progress)
        }

        fn embed(&self, model: &str, texts: &[String]) -> crate::Result<Vec<Vec<f32>>> {
            Counting.embed(model, texts)
        }
    }

    #[test]
    fn a_repeated_text_is_judged_once_and_scored_for_each() {
        let backend = Arc::new(JudgedItems::default());
        let role = Backends::new(backend.clone()).role(&RoleModel::local("scripted")).unwrap();
        let checks = checks(3);
        let task = Task { generator: &role, judge: &role, prompt: "Count.", input: "Give a number.", context: None, checks: &checks };
        let scored = task.evaluate(&["2".into(), "0".into(), "2".into()], false).unwrap();
        assert_eq!(scored.iter().map(|s| s.passes).collect::<Vec<_>>(), vec![2, 0, 2]);
        assert_eq!(*backend.0.lock().unwrap(), vec![2], "two distinct texts judged");
    }

    #[test]
    fn a_rewrite_names_the_failed_checks_and_the_judges_rationales() {
        let checks = checks(3);
        let parent = Candidate {
            id: 0,
            generation: 0,
            origin: Origin::Seed,
            text: "1".into(),
            p_pass: vec![0.9, 0.2, 0.1],
            passes: 1,
            rationales: vec![String::new(), "it is too small".into(), String::new()],
        };
        let body = rewrite_body(&checks, &parent);
        assert!(!body.contains("Is it above 0?"), "a passed check is not named: {body}");
        assert!(body.contains("- Is it above 1? (the judge: it is too small)") && body.contains("- Is it above 2?\n"), "{body}");
        let verdicts_only = rewrite_body(&checks, &Candidate { rationales: vec![], ..parent });
        assert!(verdicts_only.contains("- Is it above 1?\n") && !verdicts_only.contains("the judge"), "{verdicts_only}");
    }

    /// `Counting` whose generations fail (or answer nothing) by a seed's remainder.
    struct Flaky(u64);

    impl Backend for Flaky {
        fn chat(&self, model: &str, requests: &[ChatRequest], progress: &mut dyn FnMut(usize)) -> crate::Result<Vec<Completion>> {
            let answers = Counting.chat(model, requests, progress)?;
            Ok(requests
                .iter()
                .zip(answers)
                .map(|(r, a)| match r.params.seed.unwrap() % self.0 {
                    0 => Err("the generator is down".to_string()),
                    1 => Ok("  ".to_string()),
                    _ => a,
                })
                .collect())
        }

        fn judge(&self, model: &str, items: &[JudgeItem], checks: &[Check], options: &JudgeOptions, progress: &mut dyn FnMut(usize)) -> crate::Result<Vec<Vec<Judgment>>> {
            assert!(items.iter().all(|i| !i.output.trim().is_empty()), "an empty output was judged");
            Counting.judge(model, items, checks, options, progress)
        }

        fn embed(&self, model: &str, texts: &[String]) -> crate::Result<Vec<Vec<f32>>> {
            Counting.embed(model, texts)
        }
    }

    #[test]
    fn failed_or_empty_generations_are_no_candidates() {
        let checks = checks(3);
        let options = OptimiseOptions { generations: 5, population: 8, budget: 100, seed: 3, max_tokens: 8, rationales: false };
        let role = Backends::new(Arc::new(Flaky(4))).role(&RoleModel::local("scripted")).unwrap();
        let task = Task { generator: &role, judge: &role, prompt: "Count.", input: "Give a number.", context: None, checks: &checks };
        let e = evolve(&task, &options, &mut |_| {}).unwrap();
        assert!(e.candidates.iter().all(|c| !c.text.trim().is_empty()));
        assert_eq!(e.evaluations, e.candidates.len(), "only usable answers cost evaluations");
        let down = Backends::new(Arc::new(Flaky(1))).role(&RoleModel::local("scripted")).unwrap();
        let task = Task { generator: &down, judge: &down, ..task };
        let err = evolve(&task, &options, &mut |_| {}).unwrap_err().to_string();
        assert!(err.contains("every generation failed: the generator is down"), "{err}");
    }

    #[test]
    fn respects_the_budget_and_is_deterministic() {
        let e = run(10, 5);
        assert!(e.evaluations <= 10);
        let again = run(10, 5);
        assert_eq!(e.candidates.iter().map(|c| &c.text).collect::<Vec<_>>(), again.candidates.iter().map(|c| &c.text).collect::<Vec<_>>());
    }
}
