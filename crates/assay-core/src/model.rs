//! What a model is for in the evaluation loop.

use serde::{Deserialize, Serialize};

/// The part a model plays in the loop (DESIGN.md, "The loop"). A model may play several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelRole {
    /// Produces the outputs that are evaluated.
    Generator,
    /// Reads an output and lists its concrete errors.
    Annotator,
    /// Answers binary checks with PASS/FAIL.
    Judge,
    /// Maps text to sentence embeddings.
    Embedder,
}

impl std::fmt::Display for ModelRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Generator => "generator",
            Self::Annotator => "annotator",
            Self::Judge => "judge",
            Self::Embedder => "embedder",
        })
    }
}
