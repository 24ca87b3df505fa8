//! `assay data import`: a JSONL or CSV file as a new dataset of a project, in one transaction,
//! so a bad line leaves the database as it was.

use crate::options::{DataArgs, DataCommand, GlobalOptions};
use anyhow::{Context, Result};
use assay_store::dataset_file::{read_items, FieldMap, Format};

pub fn run(global: &GlobalOptions, args: &DataArgs) -> Result<()> {
    match &args.what {
        DataCommand::Import(import) => {
            let file = &import.file;
            let format = Format::of_path(file)?;
            let map = import.map.as_deref().map(FieldMap::parse).transpose()?.unwrap_or_default();
            let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            let items = read_items(&text, format, &map).with_context(|| format!("reading items from {}", file.display()))?;
            let name = match &import.name {
                Some(name) => name.clone(),
                None => file.file_stem().and_then(|s| s.to_str()).context("the file has no name to call the dataset by; pass --name")?.to_string(),
            };
            let mut store = super::open_store(global)?;
            let project = super::project(&store, &import.project.project)?;
            let dataset = store.import_dataset(project.id, &name, &file.display().to_string(), &items).with_context(|| format!("importing {} into project '{}'", file.display(), project.name))?;
            let with_output = items.iter().filter(|i| i.output.is_some()).count();
            println!("imported {} items ({with_output} with outputs) as dataset '{}' of project '{}'", dataset.item_count, dataset.name, project.name);
            Ok(())
        }
    }
}
