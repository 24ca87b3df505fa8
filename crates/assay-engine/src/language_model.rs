//! A loaded text model: weights, tokenizer and chat template, from GGUF or a checkpoint folder.

use crate::chat::{ChatMessage, ChatTemplate, FallbackFormat};
use crate::error::{EngineError, Result};
use crate::gguf::GgufFile;
use crate::llama::{LlamaConfig, LlamaModel};
use crate::projection::MatmulPolicy;
use crate::registry::ModelFiles;
use crate::tokenizer::TextTokenizer;
use candle_core::Device;
use std::path::Path;

/// A model ready to tokenize, template and run.
pub struct LanguageModel {
    pub name: String,
    pub model: LlamaModel,
    pub tokenizer: TextTokenizer,
    pub template: ChatTemplate,
}

impl LanguageModel {
    pub fn load(name: &str, files: &ModelFiles, device: &Device) -> Result<Self> {
        Self::load_with_policy(name, files, device, MatmulPolicy::for_device(device))
    }

    pub fn load_with_policy(name: &str, files: &ModelFiles, device: &Device, policy: MatmulPolicy) -> Result<Self> {
        match files {
            ModelFiles::Gguf(path) => Self::from_gguf(name, path, device, policy),
            ModelFiles::Checkpoint(dir) => Self::from_checkpoint(name, dir, device, policy),
        }
    }

    fn from_gguf(name: &str, path: &Path, device: &Device, policy: MatmulPolicy) -> Result<Self> {
        let mut file = GgufFile::open(path)?;
        // Architecture and shape errors first: they say the most about a wrong file.
        LlamaConfig::from_gguf(&file)?;
        // A tokenizer.json beside the file wins: it covers vocabularies we do not rebuild.
        let beside = path.with_file_name("tokenizer.json");
        let tokenizer = if beside.is_file() {
            TextTokenizer::from_file(&beside, &["</s>", "<|im_end|>", "<|eot_id|>", "<|endoftext|>"], Some("<s>"))?
        } else {
            TextTokenizer::from_gguf(&file)?
        };
        let model = LlamaModel::from_gguf(&mut file, device, policy)?;
        let template = match file.string("tokenizer.chat_template") {
            Ok(source) => ChatTemplate::new(name, source, tokenizer.bos_token(), tokenizer.eos_token())?,
            Err(_) => fallback_template(name, &tokenizer)?,
        };
        Ok(Self { name: name.to_string(), model, tokenizer, template })
    }

    fn from_checkpoint(name: &str, dir: &Path, device: &Device, policy: MatmulPolicy) -> Result<Self> {
        let tok_path = dir.join("tokenizer.json");
        if !tok_path.is_file() {
            return Err(EngineError::Tokenizer { model: dir.display().to_string(), reason: format!("{} is missing", tok_path.display()) });
        }
        let config: serde_json::Value = std::fs::read(dir.join("tokenizer_config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        // Special tokens are strings or {"content": ...} objects.
        let special = |key: &str| {
            let v = &config[key];
            v.as_str().or_else(|| v["content"].as_str()).map(str::to_string)
        };
        let eos = special("eos_token");
        let mut stops: Vec<&str> = vec!["<|im_end|>", "<|eot_id|>", "<|endoftext|>"];
        if let Some(e) = eos.as_deref() {
            stops.insert(0, e);
        }
        let tokenizer = TextTokenizer::from_file(&tok_path, &stops, special("bos_token").as_deref())?;
        let model = LlamaModel::from_safetensors_dir(dir, device, policy)?;
        let template = match config["chat_template"].as_str() {
            Some(source) => ChatTemplate::new(name, source, special("bos_token"), eos)?,
            None => fallback_template(name, &tokenizer)?,
        };
        Ok(Self { name: name.to_string(), model, tokenizer, template })
    }

    /// Token ids of a chat, rendered by the model's template with the assistant turn opened.
    pub fn chat_prompt(&self, messages: &[ChatMessage]) -> Result<Vec<u32>> {
        let text = self.template.render(messages, true)?;
        self.tokenizer.encode(&text)
    }

    pub fn context_length(&self) -> usize {
        self.model.config().context_length
    }
}

/// The prompt format a template-less model most likely expects, judged by its control tokens.
fn fallback_template(name: &str, tok: &TextTokenizer) -> Result<ChatTemplate> {
    let format = if tok.token_to_id("<|im_start|>").is_some() {
        FallbackFormat::ChatMl
    } else if tok.token_to_id("<|start_header_id|>").is_some() {
        FallbackFormat::Llama3
    } else {
        FallbackFormat::Inst
    };
    ChatTemplate::fallback(name, format, tok.bos_token(), tok.eos_token())
}
