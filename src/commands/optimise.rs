//! `assay optimise`: genetic search for the best output of each input, with the evaluator
//! set as fitness, and with `--compare` best-of-N on the same budget of evaluations.

use crate::options::{GlobalOptions, OptimiseArgs};
use anyhow::{Context, Result};
use assay_pipeline::optimise::{best_of_n, evolve, OptimiseOptions, Task};
use assay_pipeline::ProjectConfig;
use serde_json::json;

pub fn run(global: &GlobalOptions, args: &OptimiseArgs) -> Result<()> {
    let store = super::open_store(global)?;
    let project = super::project(&store, &args.project.project)?;
    let set = super::set_version(&store, &project, args.set.set)?;
    let dataset = super::dataset(&store, &project, args.dataset.data.as_deref())?;
    let items: Vec<_> = store.items(dataset.id)?.into_iter().take(args.items).collect();
    anyhow::ensure!(!items.is_empty(), "dataset '{}' has no items", dataset.name);
    let config = ProjectConfig::from_json(&project.config)?;
    let backends = super::backends(global)?;
    let (generator, judge) = (backends.role(&config.roles.generator)?, backends.role(&config.roles.judge)?);
    let options = OptimiseOptions { generations: args.generations, population: args.population, budget: args.budget, seed: args.seed, max_tokens: args.max_tokens };
    let total = set.set.checks.len();
    eprintln!("optimising {} inputs of '{}' against v{} ({total} checks): population {}, up to {} generations, budget {} evaluations per input", items.len(), dataset.name, set.number, args.population, args.generations, args.budget);
    let (mut evolved_scores, mut baseline_scores) = (Vec::new(), Vec::new());
    let mut results = Vec::new();
    for (n, item) in items.iter().enumerate() {
        let task = Task { generator: &generator, judge: &judge, prompt: &project.generation_prompt, input: &item.fields.input, context: item.fields.context.as_deref(), checks: &set.set.checks };
        let evolution = evolve(&task, &options, &mut |e| {
            eprint!("\r[{}/{}] {}: generation {}, best {}/{total} (score {:.2}), {} evaluations   ", n + 1, items.len(), item.fields.key, e.generation, e.best_passes, e.best_score, e.evaluations)
        })
        .with_context(|| format!("optimising item '{}'", item.fields.key))?;
        eprintln!();
        let best = evolution.best();
        evolved_scores.push(best.passes as f64);
        let baseline = if args.compare {
            let b = best_of_n(&task, evolution.evaluations, args.seed, args.max_tokens).with_context(|| format!("best-of-N for item '{}'", item.fields.key))?;
            baseline_scores.push(b.passes as f64);
            Some(b)
        } else {
            None
        };
        println!(
            "{}: evolved {}/{total} (P(PASS) sum {:.2}) in {} evaluations{}",
            item.fields.key,
            best.passes,
            best.score(),
            evolution.evaluations,
            baseline.as_ref().map(|b| format!("; best-of-{} {}/{total} ({:.2})", evolution.evaluations, b.passes, b.score())).unwrap_or_default()
        );
        results.push(json!({"item": item.fields.key, "evolution": evolution, "best_of_n": baseline}));
    }
    let mean = |x: &[f64]| x.iter().sum::<f64>() / x.len().max(1) as f64;
    println!("mean passes of the best output: evolved {:.2}/{total}{}", mean(&evolved_scores), if args.compare { format!(", best-of-N {:.2}/{total} (same evaluations per input)", mean(&baseline_scores)) } else { String::new() });
    if let Some(path) = &args.out {
        let tmp = path.with_extension("partial");
        std::fs::write(&tmp, serde_json::to_string_pretty(&results)?).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    }
    Ok(())
}
