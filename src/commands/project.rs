//! `assay project create` (a project from its generation prompt) and `assay project config`
//! (which backend and model each pipeline role uses, and the discovery generators).

use crate::options::{GlobalOptions, ProjectArgs, ProjectCommand};
use anyhow::{Context, Result};
use assay_pipeline::ProjectConfig;
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
        ProjectCommand::Config(config) => {
            let mut store = super::open_store(global)?;
            let project = super::project(&store, &config.name)?;
            let current = ProjectConfig::from_json(&project.config).with_context(|| format!("the stored configuration of '{}'", project.name))?;
            match &config.file {
                None => println!("{}", serde_json::to_string_pretty(&current)?),
                Some(path) => {
                    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                    let value: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
                    let new = ProjectConfig::from_json(&value).with_context(|| format!("configuration in {}", path.display()))?;
                    store.update_project_notes_and_config(project.id, &project.expert_notes, &serde_json::to_value(&new)?, assay_store::ConfigOrigin::Operator)?;
                    println!("updated the configuration of '{}'", project.name);
                }
            }
            Ok(())
        }
    }
}
