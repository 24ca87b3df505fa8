//! `assay set import` (checks as the next immutable version) and `assay set diff`.

use crate::options::{GlobalOptions, SetArgs, SetCommand};
use anyhow::{Context, Result};
use assay_core::{Check, EvaluatorSet};
use assay_store::SetDiff;

pub fn run(global: &GlobalOptions, args: &SetArgs) -> Result<()> {
    match &args.what {
        SetCommand::Import(import) => {
            let path = &import.checks;
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let set = EvaluatorSet::from_json(&text).with_context(|| format!("checks in {}", path.display()))?;
            let reason = import.reason.clone().unwrap_or_else(|| format!("imported from {}", path.display()));
            let mut store = super::open_store(global)?;
            let project = super::project(&store, &import.project.project)?;
            let version = store.create_set_version(project.id, &set, &reason).with_context(|| format!("importing {} into project '{}'", path.display(), project.name))?;
            let parent = version.parent.map_or("none".to_string(), |p| format!("v{p}"));
            println!("created evaluator-set version v{} of project '{}': {} checks, hash {}, parent {parent}", version.number, project.name, version.set.checks.len(), &version.content_hash[..12]);
            Ok(())
        }
        SetCommand::Diff(diff_args) => {
            let store = super::open_store(global)?;
            let project = super::project(&store, &diff_args.project.project)?;
            let diff = store.set_diff(project.id, diff_args.from, diff_args.to).with_context(|| format!("comparing versions of project '{}'", project.name))?;
            if diff_args.json {
                println!("{}", serde_json::to_string_pretty(&diff)?);
            } else {
                print!("{}", render(&diff));
            }
            Ok(())
        }
    }
}

/// One field of a check as compact JSON, for showing before and after. The check goes through
/// its JSON text so that a threshold reads as written (0.6), not widened to f64.
fn field_text(check: &Check, field: &str) -> String {
    let json: serde_json::Value = serde_json::from_str(&serde_json::to_string(check).expect("checks serialise")).expect("our own JSON parses");
    json[field].to_string()
}

/// The diff as lines: `+` added, `-` removed, `~` changed with each field's before and after.
fn render(diff: &SetDiff) -> String {
    let mut out = format!("v{} -> v{}: {} added, {} removed, {} changed\n", diff.from, diff.to, diff.added.len(), diff.removed.len(), diff.changed.len());
    for c in &diff.added {
        out += &format!("+ {}: {}\n", c.id, c.question);
    }
    for c in &diff.removed {
        out += &format!("- {}: {}\n", c.id, c.question);
    }
    for change in &diff.changed {
        out += &format!("~ {}: {}\n", change.id, change.fields.join(", "));
        for field in &change.fields {
            out += &format!("    {field}: {} -> {}\n", field_text(&change.before, field), field_text(&change.after, field));
        }
    }
    if diff.order_changed {
        out += "the checks both versions share are in a different order\n";
    }
    if diff.is_empty() {
        out += "no differences\n";
    }
    out
}
