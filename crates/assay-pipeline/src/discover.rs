//! Discovery (`assay discover`): outputs from a spectrum of generators, their errors from an
//! annotator, the errors' taxonomy, one check per heaviest cluster from the check writer,
//! and static analysis against the task prompt. The result is a new evaluator-set version.
//! Every generation, annotation (parsed or not) and the cluster tree are stored as they are
//! made; the outputs also become a dataset (`discovery-<run>`) that judge runs can score.

use crate::annotate::{annotation_request, parse_annotation};
use crate::backend::{Backends, ChatRequest, Completion};
use crate::check_writer::{check_id, cluster_request, fallback_check, parse_check};
use crate::config::{GeneratorConfig, ProjectConfig, PromptVariant};
use crate::error::{PipelineError, Result};
use crate::record_outcome;
use crate::static_analysis::{self, check_text, constraint_check, prompt_constraints};
use crate::taxonomy::{cluster, ErrorPoint};
use crate::{stable_seed, Progress};
use assay_core::{Check, EvaluatorSet, JudgeOptions, SamplingParams};
use assay_engine::ChatMessage;
use assay_store::{Dataset, GenerationId, Item, NewGeneration, NewItem, NewQuestion, NewRun, Project, Run, RunId, RunKind, RunStatus, SetVersion, Store};
use serde::Serialize;
use serde_json::json;

#[derive(Debug, Clone)]
pub struct DiscoverOptions {
    /// How many checks to keep (clusters ranked by size and severity; then prompt constraints).
    pub checks: usize,
    /// Seed of every sampled generation, annotation and check writing.
    pub seed: u64,
}

/// What discovery did, in counts.
#[derive(Debug, Clone, Serialize)]
pub struct DiscoveryReport {
    pub run: RunId,
    pub outputs_dataset: String,
    pub generations: usize,
    /// Generations that failed or came back empty (stored with the error, not annotated).
    pub failed_generations: usize,
    pub annotations: usize,
    /// Annotator answers that stayed unreadable after one retry (stored raw, flagged).
    pub unparseable_annotations: usize,
    pub errors: usize,
    pub clusters: usize,
    pub checks_from_clusters: usize,
    /// Clusters whose check writer answer was unreadable: the check was built from the errors.
    pub fallback_checks: usize,
    pub checks_from_prompt: usize,
    pub questions: usize,
    pub set_version: u32,
}

/// Records a discovery run (queued) on `dataset`, refusing what cannot work before any model
/// is called; `run_discovery` carries it out. Servers return the run at once and carry it
/// out in the background.
pub fn start_discovery(store: &mut Store, project: &Project, dataset: &Dataset, options: &DiscoverOptions) -> Result<Run> {
    if options.checks == 0 {
        return Err(PipelineError::Invalid("the number of checks to keep must be at least 1".into()));
    }
    if dataset.item_count == 0 {
        return Err(PipelineError::Invalid(format!("dataset '{}' has no items to discover errors in", dataset.name)));
    }
    ProjectConfig::of(project)?;
    Ok(store.create_run(project.id, &NewRun { kind: RunKind::Discovery, set_version: None, dataset: Some(dataset.id), params: json!({"checks": options.checks, "seed": options.seed}) })?)
}

/// Carries out a discovery run made by `start_discovery`; the run ends done or failed.
pub fn run_discovery(store: &mut Store, backends: &Backends, project: &Project, run: RunId, options: &DiscoverOptions, progress: Progress) -> Result<DiscoveryReport> {
    let dataset = store.run(run)?.dataset.ok_or_else(|| PipelineError::Invalid(format!("run {run} has no dataset")))?;
    let items = store.items(dataset)?;
    let config = ProjectConfig::of(project)?;
    store.set_run_status(run, RunStatus::Running, None)?;
    let mut discovery = Discovery { store, backends, project, config, options, run, progress };
    let result = discovery.run(&items);
    record_outcome(discovery.store, run, result)
}

/// `start_discovery` then `run_discovery`.
pub fn discover(store: &mut Store, backends: &Backends, project: &Project, dataset: &Dataset, options: &DiscoverOptions, progress: Progress) -> Result<DiscoveryReport> {
    let run = start_discovery(store, project, dataset, options)?;
    run_discovery(store, backends, project, run.id, options, progress)
}

struct Discovery<'a, 'p> {
    store: &'a mut Store,
    backends: &'a Backends,
    project: &'a Project,
    config: ProjectConfig,
    options: &'a DiscoverOptions,
    run: RunId,
    progress: Progress<'p>,
}

/// An output discovery annotates.
struct Output {
    generation: GenerationId,
    item: usize,
    text: String,
}

impl Discovery<'_, '_> {
    fn run(&mut self, items: &[Item]) -> Result<DiscoveryReport> {
        let (outputs, failed, dataset) = self.generate(items)?;
        let (points, annotations, unparseable) = self.annotate(items, &outputs)?;
        let taxonomy = cluster(&points);
        let cluster_ids = self.store.save_cluster_tree(self.run, &taxonomy.tree)?;
        let mut checks = Vec::new();
        let mut fallbacks = 0;
        let kept: Vec<_> = taxonomy.leaves.iter().take(self.options.checks).collect();
        // Each kept cluster's errors, most typical first, as the check writer reads them.
        let cluster_errors: Vec<Vec<&str>> = kept.iter().map(|leaf| leaf.members.iter().take(8).map(|&m| points[m].description.as_str()).collect()).collect();
        let requests: Vec<ChatRequest> = kept
            .iter()
            .zip(&cluster_errors)
            .map(|(leaf, errors)| cluster_request(&self.project.generation_prompt, errors, self.config.answer_tokens, stable_seed(self.options.seed, &["check", &leaf.node.to_string()])))
            .collect();
        let writer = self.backends.role(&self.config.roles.check_writer)?;
        let answers = writer.chat(&requests, &mut |done| (self.progress)("writing checks", done, requests.len()))?;
        let mut origins = Vec::new();
        for (rank, (errors, answer)) in cluster_errors.iter().zip(answers).enumerate() {
            // A question another cluster already got says nothing about this cluster.
            let parsed = answer.ok().as_deref().and_then(parse_check).filter(|(q, _, _)| !checks.iter().any(|c: &Check| &c.question == q));
            let check = match parsed {
                Some((question, pass_criteria, mut fail_examples)) => {
                    if fail_examples.is_empty() {
                        fail_examples = errors.iter().take(3).map(|e| e.to_string()).collect();
                    }
                    Check { id: check_id(&format!("c{}", rank + 1), &question), name: String::new(), question, pass_criteria, fail_examples, threshold: None }
                }
                None => {
                    fallbacks += 1;
                    fallback_check(check_id(&format!("c{}", rank + 1), errors[0]), errors)
                }
            };
            origins.push((check.id.clone(), cluster_ids[kept[rank].node]));
            checks.push(check);
        }
        let from_clusters = checks.len();
        let questions = self.static_analysis(&mut checks)?;
        if checks.is_empty() {
            return Err(PipelineError::Invalid(format!(
                "nothing to make checks from: {} annotations listed no readable error ({unparseable} unreadable) and the generation prompt states no constraint",
                annotations
            )));
        }
        let reason = format!(
            "discovery run {}: {} outputs, {} errors in {} clusters; {} checks from clusters ({fallbacks} written from the errors because the check writer's answer was unreadable), {} from prompt constraints",
            self.run,
            outputs.len(),
            points.len(),
            taxonomy.leaves.len(),
            from_clusters,
            checks.len() - from_clusters
        );
        let version: SetVersion = self.store.create_set_version(self.project.id, &EvaluatorSet::new(None, checks.clone())?, &reason)?;
        origins.retain(|(id, _)| checks.iter().any(|c| c.id == *id));
        self.store.record_check_origins(version.id, &origins)?;
        Ok(DiscoveryReport {
            run: self.run,
            outputs_dataset: dataset.name,
            generations: outputs.len() + failed,
            failed_generations: failed,
            annotations,
            unparseable_annotations: unparseable,
            errors: points.len(),
            clusters: taxonomy.leaves.len(),
            checks_from_clusters: from_clusters,
            fallback_checks: fallbacks,
            checks_from_prompt: checks.len() - from_clusters,
            questions,
            set_version: version.number,
        })
    }

    /// Outputs of every generator for every item (and the items' own outputs, if they have
    /// them), stored as generations and as the outputs dataset.
    fn generate(&mut self, items: &[Item]) -> Result<(Vec<Output>, usize, Dataset)> {
        let mut new = Vec::new();
        let mut sources: Vec<(usize, usize)> = Vec::new(); // (item, rank)
        for (i, item) in items.iter().enumerate() {
            if let Some(output) = item.fields.output.as_ref().filter(|o| !o.trim().is_empty()) {
                new.push(NewGeneration { item: item.id, generator: json!({"name": "dataset", "rank": 0}), text: output.clone() });
                sources.push((i, 0));
            }
        }
        for (g, generator) in self.config.generators.clone().iter().enumerate() {
            let role = self.backends.role(generator.model.as_ref().unwrap_or(&self.config.roles.generator))?;
            let requests: Vec<ChatRequest> = items.iter().map(|item| self.generation_request(generator, item)).collect();
            let stage = format!("generating ({})", generator.name);
            let answers: Vec<Completion> = role.chat(&requests, &mut |done| (self.progress)(&stage, done, requests.len()))?;
            for (i, answer) in answers.into_iter().enumerate() {
                let mut described = json!({"name": generator.name, "rank": g + 1, "model": role.describe(), "temperature": generator.temperature, "variant": generator.variant});
                let text = match answer {
                    Ok(text) if !text.trim().is_empty() => text,
                    Ok(_) => {
                        described["error"] = json!("the generator returned no text");
                        String::new()
                    }
                    Err(e) => {
                        described["error"] = json!(e);
                        String::new()
                    }
                };
                new.push(NewGeneration { item: items[i].id, generator: described, text });
                sources.push((i, g + 1));
            }
        }
        let ids = self.store.add_generations(&new)?;
        let mut outputs = Vec::new();
        let mut dataset_items = Vec::new();
        let mut failed = 0;
        for ((generation, stored), (i, rank)) in ids.into_iter().zip(new).zip(sources) {
            if stored.text.is_empty() {
                failed += 1;
                continue;
            }
            let item = &items[i].fields;
            let name = stored.generator["name"].as_str().unwrap_or_default().to_string();
            dataset_items.push(NewItem {
                key: format!("{}#{name}", item.key),
                input: item.input.clone(),
                output: Some(stored.text.clone()),
                context: item.context.clone(),
                reference: item.reference.clone(),
                metadata: Some(json!({"source_item": item.key, "generator": name, "rank": rank, "generation": generation})),
            });
            outputs.push(Output { generation, item: i, text: stored.text });
        }
        if outputs.is_empty() {
            return Err(PipelineError::Invalid(format!("every one of the {failed} generations failed or came back empty (see the stored generations)")));
        }
        let name = format!("discovery-{}", self.run);
        let dataset = self.store.import_dataset(self.project.id, &name, &format!("outputs of discovery run {}", self.run), &dataset_items)?;
        Ok((outputs, failed, dataset))
    }

    fn generation_request(&self, generator: &GeneratorConfig, item: &Item) -> ChatRequest {
        let prompt = &self.project.generation_prompt;
        let system = match generator.variant {
            PromptVariant::AsWritten => Some(prompt.clone()),
            PromptVariant::Terse => Some(format!("{prompt}\nAnswer in one or two sentences.")),
            PromptVariant::InputOnly => None,
        };
        let user = match &item.fields.context {
            Some(context) => format!("{}\n\nContext:\n{context}", item.fields.input),
            None => item.fields.input.clone(),
        };
        let mut messages: Vec<ChatMessage> = system.iter().map(|s| ChatMessage::new("system", s)).collect();
        messages.push(ChatMessage::new("user", &user));
        let seed = stable_seed(self.options.seed, &["generate", &generator.name, &item.fields.key]);
        ChatRequest {
            messages,
            answer_prefix: String::new(),
            params: SamplingParams { max_tokens: generator.max_tokens, temperature: generator.temperature, top_p: 0.95, seed: Some(seed), ..Default::default() },
        }
    }

    /// Annotates every output (one retry for unreadable answers) and embeds the errors found.
    fn annotate(&mut self, items: &[Item], outputs: &[Output]) -> Result<(Vec<ErrorPoint>, usize, usize)> {
        let annotator = self.backends.role(&self.config.roles.annotator)?;
        let described = json!({"model": annotator.describe(), "prompt": "errors-json-v1"});
        let request = |o: &Output, retry: bool| {
            let item = &items[o.item].fields;
            let seed = stable_seed(self.options.seed, &["annotate", &o.generation.to_string(), if retry { "retry" } else { "first" }]);
            annotation_request(&self.project.generation_prompt, &item.input, item.context.as_deref(), &o.text, self.config.answer_tokens, seed, retry)
        };
        let first: Vec<ChatRequest> = outputs.iter().map(|o| request(o, false)).collect();
        let mut answers = annotator.chat(&first, &mut |done| (self.progress)("annotating", done, first.len()))?;
        let unreadable: Vec<usize> = (0..outputs.len()).filter(|&i| answers[i].as_ref().ok().and_then(|a| parse_annotation(a, &outputs[i].text)).is_none()).collect();
        if !unreadable.is_empty() {
            let retries: Vec<ChatRequest> = unreadable.iter().map(|&i| request(&outputs[i], true)).collect();
            let again = annotator.chat(&retries, &mut |done| (self.progress)("annotating (retries)", done, retries.len()))?;
            for (&i, answer) in unreadable.iter().zip(again) {
                // Keep the first answer when the retry fails outright: it is the one to inspect.
                if answer.is_ok() {
                    answers[i] = answer;
                }
            }
        }
        let mut unparseable = 0;
        let mut errors = Vec::new();
        for (output, answer) in outputs.iter().zip(&answers) {
            let raw = match answer {
                Ok(text) => text.clone(),
                Err(e) => format!("(annotator failed: {e})"),
            };
            let parsed = answer.as_ref().ok().and_then(|a| parse_annotation(a, &output.text));
            unparseable += usize::from(parsed.is_none());
            let annotation = self.store.add_annotation(output.generation, &described, &raw, parsed.as_deref())?;
            errors.extend(annotation.errors);
        }
        let texts: Vec<String> = errors.iter().map(|e| e.error.description.clone()).collect();
        (self.progress)("embedding errors", 0, texts.len());
        let vectors = self.backends.role(&self.config.roles.embedder)?.embed(&texts)?;
        let points = errors.into_iter().zip(vectors).map(|(e, embedding)| ErrorPoint { id: e.id, description: e.error.description, severity: e.error.severity, embedding }).collect();
        Ok((points, outputs.len(), unparseable))
    }

    /// Adds candidate checks for uncovered prompt constraints (up to the requested number) and
    /// stores questions for the rest, for overlapping checks and for checks the judge finds
    /// inconsistent with the prompt. Returns the number of questions.
    fn static_analysis(&mut self, checks: &mut Vec<Check>) -> Result<usize> {
        let prompt = self.project.generation_prompt.clone();
        let embedder = self.backends.role(&self.config.roles.embedder)?;
        let constraints = prompt_constraints(&prompt);
        let constraint_vectors = embedder.embed(&constraints)?;
        let check_vectors = embedder.embed(&checks.iter().map(check_text).collect::<Vec<_>>())?;
        let mut questions = Vec::new();
        for (n, i) in static_analysis::uncovered(&constraint_vectors, &check_vectors).into_iter().enumerate() {
            if checks.len() < self.options.checks {
                checks.push(constraint_check(check_id(&format!("p{}", n + 1), &constraints[i]), &constraints[i]));
            } else {
                questions.push(NewQuestion {
                    item: None,
                    check: None,
                    why: format!("The generation prompt says \"{}\" and no check covers it.", constraints[i]),
                    options: vec!["add a check for it".into(), "no check needed".into()],
                    proposed_check: Some(constraint_check(check_id(&format!("p{}", n + 1), &constraints[i]), &constraints[i])),
                });
            }
        }
        let vectors = embedder.embed(&checks.iter().map(check_text).collect::<Vec<_>>())?;
        for (a, b, similarity) in static_analysis::overlapping(&vectors) {
            questions.push(NewQuestion {
                item: None,
                check: Some(checks[b].id.clone()),
                why: format!("Checks '{}' and '{}' ask nearly the same thing (cosine similarity {similarity:.2}): they may duplicate or contradict each other.", checks[a].id, checks[b].id),
                options: vec!["keep both".into(), "merge them".into(), "drop this one".into()],
                proposed_check: None,
            });
        }
        if !checks.is_empty() {
            let judge = self.backends.role(&self.config.roles.judge)?;
            let items: Vec<_> = checks.iter().map(|c| static_analysis::as_judge_item(&prompt, c)).collect();
            let verdicts =
                judge.judge(&items, &[static_analysis::consistency_check()], &JudgeOptions::default(), &mut |done| (self.progress)("checking checks against the prompt", done, items.len()))?;
            for (check, judged) in checks.iter().zip(verdicts) {
                let p = judged[0].p_pass;
                if p < 0.5 {
                    questions.push(NewQuestion {
                        item: None,
                        check: Some(check.id.clone()),
                        why: format!("The judge doubts that check '{}' is consistent with the generation prompt (P(consistent) = {p:.2}).", check.id),
                        options: vec!["the check is right".into(), "rewrite the check".into(), "drop the check".into()],
                        proposed_check: None,
                    });
                }
            }
        }
        self.store.add_questions(self.project.id, &questions)?;
        Ok(questions.len())
    }
}
