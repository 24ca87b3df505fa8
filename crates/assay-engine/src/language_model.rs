//! A loaded text model: the decoder, its tokenizer and chat template, from a GGUF file, a
//! checkpoint folder or a random-weight spec. Loading only: running it is the engine's.

use crate::batch::StepBatch;
use crate::chat::{ChatMessage, ChatTemplate, FallbackFormat};
use crate::error::{EngineError, Result};
use crate::gguf::GgufFile;
use crate::kv_pool::{KvPool, BLOCK_SIZE};
use crate::model::random::{synthetic_tokenizer, RandomSpec};
use crate::model::weights::{GgufWeights, RandomWeights, SafetensorsWeights};
use crate::model::{architecture, Decoder, ModelConfig};
use crate::projection::MatmulPolicy;
use crate::registry::ModelFiles;
use crate::tokenizer::TextTokenizer;
use candle_core::Device;
use std::path::Path;

/// A model ready to tokenize, template and run.
pub struct LanguageModel {
    pub name: String,
    pub model: Decoder,
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
            ModelFiles::Random(spec) => Self::random(name, spec, device, policy),
        }
    }

    fn from_gguf(name: &str, path: &Path, device: &Device, policy: MatmulPolicy) -> Result<Self> {
        let file = GgufFile::open(path)?;
        // Architecture and shape errors first: they say the most about a wrong file.
        let arch = architecture(file.string("general.architecture")?, path)?;
        let config = arch.config_from_gguf(&file)?;
        config.validate(path)?;
        // A tokenizer.json beside the file wins: it covers vocabularies we do not rebuild.
        let beside = path.with_file_name("tokenizer.json");
        let tokenizer =
            if beside.is_file() { TextTokenizer::from_file(&beside, &["</s>", "<|im_end|>", "<|eot_id|>", "<|endoftext|>", "<end_of_turn>"], Some("<s>"))? } else { TextTokenizer::from_gguf(&file)? };
        let model = Decoder::load(config, &mut GgufWeights { file: &file, device: device.clone() }, device, policy)?;
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
        let read = |p: &Path| std::fs::read(p).map_err(|source| EngineError::Io { path: p.to_path_buf(), source });
        let cfg_path = dir.join("config.json");
        let json: serde_json::Value = serde_json::from_slice(&read(&cfg_path)?).map_err(|e| EngineError::InvalidModel { path: cfg_path.clone(), reason: e.to_string() })?;
        let arch = architecture(json["model_type"].as_str().unwrap_or("(no model_type)"), &cfg_path)?;
        let config = arch.config_from_hf(&json, &cfg_path)?;
        config.validate(&cfg_path)?;
        let tok_config: serde_json::Value = std::fs::read(dir.join("tokenizer_config.json")).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        // Special tokens are strings or {"content": ...} objects.
        let special = |key: &str| {
            let v = &tok_config[key];
            v.as_str().or_else(|| v["content"].as_str()).map(str::to_string)
        };
        let eos = special("eos_token");
        let mut stops: Vec<&str> = vec!["<|im_end|>", "<|eot_id|>", "<|endoftext|>", "<end_of_turn>"];
        if let Some(e) = eos.as_deref() {
            stops.insert(0, e);
        }
        let tokenizer = TextTokenizer::from_file(&tok_path, &stops, special("bos_token").as_deref())?;
        let model = Decoder::load(config, &mut SafetensorsWeights::open(dir, arch, device)?, device, policy)?;
        let template = match tok_config["chat_template"].as_str() {
            Some(source) => ChatTemplate::new(name, source, special("bos_token"), eos)?,
            None => fallback_template(name, &tokenizer)?,
        };
        Ok(Self { name: name.to_string(), model, tokenizer, template })
    }

    fn random(name: &str, spec: &RandomSpec, device: &Device, policy: MatmulPolicy) -> Result<Self> {
        let origin = spec.origin();
        let arch = architecture(spec.config["model_type"].as_str().unwrap_or("(no model_type)"), &origin)?;
        let config: ModelConfig = arch.config_from_hf(&spec.config, &origin)?;
        config.validate(&origin)?;
        let tokenizer = TextTokenizer::from_tokenizer(synthetic_tokenizer(config.vocab_size)?, &["<|im_end|>", "<|endoftext|>"], None);
        let mut weights = RandomWeights { config: config.clone(), seed: spec.seed, device: device.clone(), origin };
        let model = Decoder::load(config, &mut weights, device, policy)?;
        let template = ChatTemplate::fallback(name, FallbackFormat::ChatMl, None, tokenizer.eos_token())?;
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

    /// Most bytes of text that can fit the context (`TextTokenizer::max_token_bytes`): longer
    /// texts are too long whatever they say.
    pub fn max_text_bytes(&self) -> usize {
        self.context_length().saturating_mul(self.tokenizer.max_token_bytes())
    }

    /// The logits at every position of `tokens` run as one sequence in a pool of its own (what
    /// the model computes with nothing shared and nothing batched: references, tests): the
    /// first `prefill` tokens in one pass, then one token per pass, the shape of decoding.
    pub fn logits_along(&self, tokens: &[u32], prefill: usize) -> Result<Vec<Vec<f32>>> {
        if tokens.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        if tokens.len() > self.context_length() {
            return Err(EngineError::ContextOverflow { tokens: tokens.len(), reserved: 0, limit: self.context_length() });
        }
        let layout = self.model.kv_layout();
        let blocks = tokens.len().div_ceil(BLOCK_SIZE);
        let mut pool = KvPool::new(layout, blocks * layout.bytes_per_block(), self.model.device(), self.model.wants_cpu_blocks())?;
        let table: Vec<u32> = (0..blocks).map(|_| pool.allocate().expect("sized for the tokens")).collect();
        let prefill = prefill.clamp(1, tokens.len());
        let mut out = Vec::with_capacity(tokens.len());
        let mut start = 0;
        for end in std::iter::once(prefill).chain(prefill + 1..=tokens.len()) {
            let mut batch = StepBatch::default();
            batch.push(&tokens[start..end], start, &table, 0..end - start);
            out.extend(self.model.forward(&batch, &mut pool)?.to_vec2::<f32>()?);
            start = end;
        }
        Ok(out)
    }
}

/// The prompt format a template-less model most likely expects, judged by its control tokens.
fn fallback_template(name: &str, tok: &TextTokenizer) -> Result<ChatTemplate> {
    let format = if tok.token_to_id("<|im_start|>").is_some() {
        FallbackFormat::ChatMl
    } else if tok.token_to_id("<|start_header_id|>").is_some() {
        FallbackFormat::Llama3
    } else if tok.token_to_id("<start_of_turn>").is_some() {
        FallbackFormat::Gemma
    } else {
        FallbackFormat::Inst
    };
    ChatTemplate::fallback(name, format, tok.bos_token(), tok.eos_token())
}

/// The configuration of a model's files, without loading any weight.
pub fn model_config(files: &ModelFiles) -> Result<ModelConfig> {
    let from_json = |json: &serde_json::Value, path: &Path| -> Result<ModelConfig> {
        let config = architecture(json["model_type"].as_str().unwrap_or("(no model_type)"), path)?.config_from_hf(json, path)?;
        config.validate(path)?;
        Ok(config)
    };
    match files {
        ModelFiles::Gguf(path) => {
            let file = GgufFile::open(path)?;
            let config = architecture(file.string("general.architecture")?, path)?.config_from_gguf(&file)?;
            config.validate(path)?;
            Ok(config)
        }
        ModelFiles::Checkpoint(dir) => {
            let path = dir.join("config.json");
            let text = std::fs::read(&path).map_err(|source| EngineError::Io { path: path.clone(), source })?;
            let json: serde_json::Value = serde_json::from_slice(&text).map_err(|e| EngineError::InvalidModel { path: path.clone(), reason: e.to_string() })?;
            from_json(&json, &path)
        }
        ModelFiles::Random(spec) => from_json(&spec.config, &spec.origin()),
    }
}
