//! `assay project create`: a project from its generation prompt.

use crate::options::{GlobalOptions, ProjectArgs, ProjectCommand};
use anyhow::{Context, Result};
use assay_store::NewProject;

pub fn run(global: &GlobalOptions, args: &ProjectArgs) -> Result<()> {
    match &args.what {
        ProjectCommand::Create(create) => {
            let prompt = std::fs::read_to_string(&create.prompt_file).with_context(|| format!("reading the prompt file {}", create.prompt_file.display()))?;
            let mut store = super::open_store(global)?;
            let new = NewProject { name: create.name.clone(), task: create.task.clone(), generation_prompt: prompt, ..Default::default() };
            let project = store.create_project(&new).with_context(|| format!("creating project '{}'", create.name))?;
            println!("created project '{}' (id {}) in {}", project.name, project.id, global.db.display());
            Ok(())
        }
    }
}
