//! assay-pipeline: the evaluation loop (DESIGN.md, "The loop") on top of the store.
//!
//! It owns discovery (generator spectrum -> annotations -> error taxonomy -> checks, plus
//! static analysis of the task prompt), judge runs (resumable), reports (consistency,
//! separation, cohesion, agreement with expert labels; SVG plots), ambiguity questions and
//! refinement into new evaluator-set versions (new wordings measured on the outputs the
//! expert scored before they are adopted), and gold outputs evolved with the set as
//! fitness (critiqued by the expert; exported as training data), and an expert simulated from a
//! labels file (benchmarks and tests of the loop only). Every model call goes
//! through a `Backend` (the local engine or an OpenAI-compatible server), chosen per role in
//! the project's configuration. It must not parse command lines or speak HTTP as a server; everything it
//! learns is written to the store before a step returns.

pub mod annotate;
pub mod backend;
pub mod check_writer;
pub mod config;
pub mod discover;
pub mod error;
pub mod gold;
pub mod judge_run;
pub mod labels;
mod lease;
pub mod lenient_json;
pub mod optimise;
pub mod plots;
pub mod preview;
pub mod probe;
pub mod questions;
pub mod refine;
pub mod report;
pub mod simulated_expert;
pub mod static_analysis;
pub mod taxonomy;
pub mod training_data;

pub use backend::{AllowedBackend, Backend, Backends, ChatRequest, Completion, HttpBackend, LocalBackend, OutboundPolicy, Role};
pub use config::{GeneratorConfig, ProjectConfig, PromptVariant, RoleModel, Roles};
pub use discover::{discover, run_discovery, start_discovery, DiscoverOptions, DiscoveryReport};
pub use error::{PipelineError, Result};
pub use gold::{critique, run_optimisation, start_optimise_run, Critique, OptimiseEvent, OptimiseRunOptions, OptimiseRunReport};
pub use judge_run::{run_judging, start_judge_run, JudgeRunReport, DEFAULT_CHUNK_ITEMS};

/// Records how a run's work ended, done or failed (with the error), and passes the result on.
pub(crate) fn record_outcome<T>(store: &mut assay_store::Store, run: assay_store::RunId, result: Result<T>) -> Result<T> {
    match &result {
        Ok(_) => store.set_run_status(run, assay_store::RunStatus::Done, None)?,
        Err(e) => store.set_run_status(run, assay_store::RunStatus::Failed, Some(&e.to_string()))?,
    };
    result
}

/// Progress of a long step: (stage, done, total).
pub type Progress<'a> = &'a mut dyn FnMut(&str, usize, usize);

/// A seed for one sampled call, from the run's seed and what the call is about, so that a
/// rerun with the same seed makes the same calls whatever their order.
pub fn stable_seed(seed: u64, parts: &[&str]) -> u64 {
    // FNV-1a: stable across platforms and Rust versions, unlike `DefaultHasher`.
    let mut hash = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for part in parts {
        for byte in part.bytes().chain([0xff]) {
            hash = (hash ^ byte as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// A judgment as scripted test backends make it: `p` as P(PASS), the verdict at 0.5, nothing else.
#[cfg(test)]
pub(crate) fn scripted_judgment(item: &str, check: &str, p: f32) -> assay_core::Judgment {
    assay_core::Judgment {
        item_id: item.into(),
        check_id: check.into(),
        verdict: assay_core::Verdict::at(p, 0.5),
        p_pass: p,
        logprob_pass: 0.0,
        logprob_fail: 0.0,
        off_format_mass: 0.0,
        rationale: None,
        samples: vec![],
        flip_rate: None,
    }
}
