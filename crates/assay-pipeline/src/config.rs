//! A project's configuration (stored as JSON with the project): which backend and model each
//! pipeline role uses, and the spectrum of generators discovery samples outputs from.

use crate::error::{PipelineError, Result};
use assay_store::{ConfigOrigin, Project};
use serde::{Deserialize, Serialize};

/// Where a role's model runs: the local engine, or an OpenAI-compatible server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleModel {
    /// A local model (manifest name, GGUF path, checkpoint folder) or the server's model name.
    pub model: String,
    /// Base URL of an OpenAI-compatible server (ending in `/v1`); absent = the local engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Environment variable holding the server's API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// Who chose this: set from the project when its configuration is read (`ProjectConfig::of`);
    /// a choice read any other way is treated as an HTTP client's until then.
    #[serde(skip, default = "untrusted")]
    pub origin: ConfigOrigin,
}

fn untrusted() -> ConfigOrigin {
    ConfigOrigin::Http
}

impl RoleModel {
    /// A local model chosen by the program or the operator.
    pub fn local(model: &str) -> Self {
        Self { model: model.into(), base_url: None, api_key_env: None, origin: ConfigOrigin::Operator }
    }

    /// How the role is named in stored records (generator, annotator and judge fields).
    pub fn describe(&self) -> String {
        match &self.base_url {
            Some(url) => format!("{} at {url}", self.model),
            None => self.model.clone(),
        }
    }
}

/// The model behind each role of the loop; a role left out keeps its default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Roles {
    pub generator: RoleModel,
    pub annotator: RoleModel,
    pub judge: RoleModel,
    pub embedder: RoleModel,
    pub check_writer: RoleModel,
}

impl Default for Roles {
    /// The default local models (`models/manifest.json`): SmolLM2 for every language-model
    /// role, MiniLM for embeddings.
    fn default() -> Self {
        let lm = RoleModel::local("smollm2");
        Self { generator: lm.clone(), annotator: lm.clone(), judge: lm.clone(), embedder: RoleModel::local("minilm"), check_writer: lm }
    }
}

/// How a discovery generator changes the task's prompt: the spectrum runs from the prompt as
/// written to degraded variants, so that outputs of varying quality show varied errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptVariant {
    /// The generation prompt as the project states it.
    AsWritten,
    /// The prompt plus "answer in one or two sentences": outputs that cut corners.
    Terse,
    /// No task prompt at all, only the input: outputs that ignore the task's rules.
    InputOnly,
}

/// One point of the generator spectrum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorConfig {
    /// Short name, part of the discovery outputs' item keys (`<item>#<name>`).
    pub name: String,
    /// A model other than the generator role's (same backend rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<RoleModel>,
    pub temperature: f32,
    pub variant: PromptVariant,
    #[serde(default = "default_max_tokens")]
    pub max_tokens: usize,
}

fn default_max_tokens() -> usize {
    192
}

/// A project's configuration; every field has a default, so `{}` is a valid configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProjectConfig {
    pub roles: Roles,
    /// Ordered from the strongest configuration to the weakest: separation without expert
    /// labels compares the first generator's outputs with the last one's.
    pub generators: Vec<GeneratorConfig>,
    /// Most tokens an annotator or check writer may answer with.
    pub answer_tokens: usize,
}

impl Default for ProjectConfig {
    fn default() -> Self {
        let g = |name: &str, temperature, variant| GeneratorConfig { name: name.into(), model: None, temperature, variant, max_tokens: default_max_tokens() };
        Self {
            roles: Roles::default(),
            generators: vec![
                g("careful", 0.2, PromptVariant::AsWritten),
                g("sampled", 0.9, PromptVariant::AsWritten),
                g("terse", 0.9, PromptVariant::Terse),
                g("input-only", 1.1, PromptVariant::InputOnly),
            ],
            answer_tokens: 160,
        }
    }
}

impl ProjectConfig {
    /// The project's configuration, each model choice marked with who set it.
    pub fn of(project: &Project) -> Result<Self> {
        let mut config = Self::from_json(&project.config)?;
        let r = &mut config.roles;
        for role in [&mut r.generator, &mut r.annotator, &mut r.judge, &mut r.embedder, &mut r.check_writer].into_iter().chain(config.generators.iter_mut().filter_map(|g| g.model.as_mut())) {
            role.origin = project.config_origin;
        }
        Ok(config)
    }

    /// Every model the configuration names: the roles', then the generators' own.
    pub fn models(&self) -> impl Iterator<Item = &RoleModel> {
        let r = &self.roles;
        [&r.generator, &r.annotator, &r.judge, &r.embedder, &r.check_writer].into_iter().chain(self.generators.iter().filter_map(|g| g.model.as_ref()))
    }

    /// Reads the stored JSON (`{}` for a new project), naming what is wrong.
    pub fn from_json(value: &serde_json::Value) -> Result<Self> {
        let config: Self = serde_json::from_value(value.clone()).map_err(|e| PipelineError::Config(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<()> {
        if self.generators.is_empty() {
            return Err(PipelineError::Config("'generators' is empty: discovery needs at least one".into()));
        }
        let mut names = std::collections::HashSet::new();
        for g in &self.generators {
            if g.name.is_empty() || !names.insert(g.name.as_str()) {
                return Err(PipelineError::Config(format!("generator names must be non-empty and distinct ('{}')", g.name)));
            }
            if !(0.0..=2.0).contains(&g.temperature) || g.max_tokens == 0 {
                return Err(PipelineError::Config(format!("generator '{}': temperature must be in [0, 2] and max_tokens > 0", g.name)));
            }
        }
        if self.answer_tokens == 0 {
            return Err(PipelineError::Config("'answer_tokens' must be > 0".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_json_is_the_default_and_unknown_fields_are_named() {
        let empty = ProjectConfig::from_json(&serde_json::json!({})).unwrap();
        assert_eq!(empty.roles.judge.model, ProjectConfig::default().roles.judge.model);
        let err = ProjectConfig::from_json(&serde_json::json!({"rolez": {}})).unwrap_err().to_string();
        assert!(err.contains("rolez"), "{err}");
        let err = ProjectConfig::from_json(&serde_json::json!({"generators": []})).unwrap_err().to_string();
        assert!(err.contains("generators"), "{err}");
    }
}
