//! `assay optimise` (an optimise run: a gold output per input, evolved with the evaluator set
//! as fitness, stored and resumable; `--compare` adds best-of-N on the same budget), `assay
//! gold` (a version's gold outputs) and `assay critique` (the expert rejects one).

use crate::options::{CritiqueArgs, GlobalOptions, GoldArgs, OptimiseArgs};
use anyhow::{Context, Result};
use assay_pipeline::gold::{critique as critique_gold, run_optimisation, start_optimise_run, OptimiseEvent, OptimiseRunOptions};
use assay_pipeline::optimise::OptimiseOptions;
use assay_store::{GoldOutputId, GoldStatus};

pub fn run(global: &GlobalOptions, args: &OptimiseArgs) -> Result<()> {
    let mut store = super::open_store(global)?;
    let project = super::project(&store, &args.project.project)?;
    let set = super::set_version(&store, &project, args.set.set)?;
    let dataset = super::dataset(&store, &project, args.dataset.data.as_deref())?;
    let backends = super::backends(global)?;
    let budget = args.budget.unwrap_or_else(|| OptimiseOptions::default_budget(args.population));
    let options = OptimiseRunOptions {
        search: OptimiseOptions { generations: args.generations, population: args.population, budget, seed: args.seed, max_tokens: args.max_tokens, rationales: args.rationales },
        items: Some(args.items),
        compare: args.compare,
    };
    let (run, resumed) = start_optimise_run(&mut store, &backends, &project, &set, &dataset, &options)?;
    let total = set.set.checks.len();
    eprintln!(
        "{} optimise run {} on '{}' against v{} ({total} checks): population {}, up to {} generations, budget {} evaluations per input",
        if resumed { "resumed" } else { "started" },
        run.id,
        dataset.name,
        set.number,
        args.population,
        args.generations,
        budget
    );
    let report = run_optimisation(&mut store, &backends, &project, run.id, &mut |event| match event {
        OptimiseEvent::Generation { item, position, items, progress } => {
            eprint!(
                "\r[{position}/{items}] {item}: generation {}, best {}/{total} (score {:.2}), {} evaluations   ",
                progress.generation, progress.best_passes, progress.best_score, progress.evaluations
            )
        }
        OptimiseEvent::Gold { item, passes, score, evaluations, best_of_n, .. } => {
            eprintln!();
            let baseline = best_of_n.map(|b| format!("; best-of-{evaluations} {}/{total} ({:.2})", b.passes, b.score)).unwrap_or_default();
            println!("{item}: gold {passes}/{total} (P(PASS) sum {score:.2}) in {evaluations} evaluations{baseline}");
        }
    })
    .with_context(|| format!("optimise run {}", run.id))?;
    println!(
        "run {}: {} gold outputs ({} optimised now); mean passes {:.2}/{total}, mean P(PASS) sum {:.2}{}",
        run.id,
        report.gold.len(),
        report.optimised_now,
        report.mean_passes,
        report.mean_score,
        report.best_of_n.map(|(p, s)| format!("; best-of-N (same evaluations per input) {p:.2}/{total}, {s:.2}")).unwrap_or_default()
    );
    if let Some(path) = &args.out {
        let tmp = path.with_extension("partial");
        std::fs::write(&tmp, serde_json::to_string_pretty(&report)?).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    }
    Ok(())
}

pub fn gold(global: &GlobalOptions, args: &GoldArgs) -> Result<()> {
    let store = super::open_store(global)?;
    let project = super::project(&store, &args.project.project)?;
    let set = super::set_version(&store, &project, args.set.set)?;
    let gold = store.gold_outputs(set.id)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&gold)?);
        return Ok(());
    }
    for g in &gold {
        let item = store.item(g.found.item)?;
        let status = if g.status == GoldStatus::Rejected { format!(" REJECTED: {}", g.critique.as_deref().unwrap_or_default()) } else { String::new() };
        println!(
            "gold {} item '{}' (run {}): {}/{} checks, {} evaluations{status}\n  {}",
            g.id,
            item.fields.key,
            g.run,
            g.found.passes,
            set.set.checks.len(),
            g.found.evaluations,
            g.found.output.replace('\n', "\n  ")
        );
    }
    eprintln!("{} gold outputs of v{} of project '{}'", gold.len(), set.number, project.name);
    Ok(())
}

pub fn critique(global: &GlobalOptions, args: &CritiqueArgs) -> Result<()> {
    let mut store = super::open_store(global)?;
    let project = super::project(&store, &args.project.project)?;
    let id = match (args.gold, &args.item) {
        (Some(id), _) => GoldOutputId(id),
        (None, Some(key)) => {
            let set = super::set_version(&store, &project, args.set.set)?;
            let mut matching = Vec::new();
            for g in store.gold_outputs(set.id)? {
                if store.item(g.found.item)?.fields.key == *key {
                    matching.push(g.id);
                }
            }
            match matching[..] {
                [id] => id,
                [] => anyhow::bail!("item '{key}' has no gold output under v{} (run `assay optimise` first)", set.number),
                _ => anyhow::bail!("items of several datasets are called '{key}'; name the gold output with --gold (see `assay gold`)"),
            }
        }
        (None, None) => anyhow::bail!("name the gold output with --gold or --item"),
    };
    let backends = super::backends(global)?;
    let done = critique_gold(&mut store, &backends, &project, id, &args.note, args.seed)?;
    println!("rejected gold output {}: {}", done.gold.id, args.note.trim());
    match (&done.candidate_check, done.question) {
        (Some(check), Some(question)) => println!(
            "it passes every check, so it proposes check '{}'{}: {}\nquestion {question} asks the expert to adopt it (`assay answer {question} --ruling \"add the check\"`, then `assay refine`)",
            check.id,
            if done.from_note { " (built from the note: the check writer's answer was unreadable)" } else { "" },
            check.question
        ),
        _ => println!("it fails {} of the checks already, so no new check is proposed", done.gold.found.p_pass.len() - done.gold.found.passes),
    }
    Ok(())
}
