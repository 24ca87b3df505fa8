//! `assay refine`: a new evaluator-set version from rulings and the latest report.

use crate::options::{GlobalOptions, RefineArgs};
use anyhow::{Context, Result};
use assay_pipeline::refine::refine;
use assay_store::RunId;

pub fn run(global: &GlobalOptions, args: &RefineArgs) -> Result<()> {
    let mut store = super::open_store(global)?;
    let project = super::project(&store, &args.project.project)?;
    let set = super::set_version(&store, &project, args.set.set)?;
    let backends = super::backends(global)?;
    let mut line = super::ProgressLine::new();
    let report = refine(&mut store, &backends, &project, &set, args.run.map(RunId), args.seed, &mut |stage, done, total| line.update(stage, done, total));
    line.finish();
    let report = report.with_context(|| format!("refining v{} of '{}'", set.number, project.name))?;
    for p in &report.probed {
        println!("{p}");
    }
    for c in &report.changes {
        println!("{:<10} {}: {}", c.action, c.check, c.why);
    }
    match report.to {
        Some(to) => println!("created v{to} from v{} ({} changes; `assay set diff --project {} {} {to}` shows them)", report.from, report.changes.len(), project.name, report.from),
        None if report.changes.is_empty() => println!("nothing in the rulings or the report calls for a change to v{}: no new version", report.from),
        None => println!("every check of v{} would be dropped: no new version made", report.from),
    }
    if report.unreadable_rewrites > 0 {
        eprintln!("{} check writer answer(s) were unreadable: those checks kept their wording (rulings were still folded in)", report.unreadable_rewrites);
    }
    Ok(())
}
