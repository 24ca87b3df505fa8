//! Sentence embeddings: a BERT encoder (all-MiniLM-L6-v2 by default) through
//! candle-transformers, batched with padding to the longest text of the batch (the shipped
//! tokenizer.json pads every input to 128 tokens; we turn that off), mean-pooled over real
//! tokens and L2-normalised, as sentence-transformers does.

use crate::error::{EngineError, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use std::path::Path;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

/// A loaded sentence-embedding model.
pub struct Embedder {
    pub name: String,
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    dim: usize,
}

impl Embedder {
    /// Loads a folder with `config.json`, `model.safetensors` and `tokenizer.json`.
    pub fn load(name: &str, dir: &Path, device: &Device) -> Result<Self> {
        let file = |f: &str| {
            let p = dir.join(f);
            if p.is_file() {
                Ok(p)
            } else {
                Err(EngineError::FileNotFound(p))
            }
        };
        let cfg_path = file("config.json")?;
        let invalid = |path: &Path, e: &dyn std::fmt::Display| EngineError::InvalidModel { path: path.to_path_buf(), reason: e.to_string() };
        let cfg_text = std::fs::read_to_string(&cfg_path).map_err(|e| invalid(&cfg_path, &e))?;
        let config: Config = serde_json::from_str(&cfg_text).map_err(|e| invalid(&cfg_path, &e))?;
        let weights = file("model.safetensors")?;
        // SAFETY: the mapped file is not modified while the model lives (read-only model files).
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, device) }.map_err(|e| invalid(&weights, &e))?;
        let model = BertModel::load(vb, &config).map_err(|e| invalid(&weights, &e))?;
        let tok_path = file("tokenizer.json")?;
        let mut tokenizer = Tokenizer::from_file(&tok_path).map_err(|e| EngineError::Tokenizer { model: name.into(), reason: e.to_string() })?;
        let max_length = sentence_max_length(dir).unwrap_or(config.max_position_embeddings);
        tokenizer.with_padding(Some(PaddingParams { strategy: PaddingStrategy::BatchLongest, ..Default::default() }));
        tokenizer.with_truncation(Some(TruncationParams { max_length, ..Default::default() })).map_err(|e| EngineError::Tokenizer { model: name.into(), reason: e.to_string() })?;
        Ok(Self { name: name.to_string(), model, tokenizer, device: device.clone(), dim: config.hidden_size })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// What embedding `texts` costs and loses, in one tokenizing pass: the tokens each is
    /// embedded from (after truncation), summed (a request's usage), and the positions of the
    /// texts longer than the model's window (which `embed` truncates).
    pub fn usage(&self, texts: &[&str]) -> Result<(usize, Vec<usize>)> {
        let tok_err = |e: tokenizers::Error| EngineError::Tokenizer { model: self.name.clone(), reason: e.to_string() };
        let (mut tokens, mut truncated) = (0, Vec::new());
        for (i, t) in texts.iter().enumerate() {
            let encoding = self.tokenizer.encode(*t, true).map_err(tok_err)?;
            tokens += encoding.get_ids().len();
            if !encoding.get_overflowing().is_empty() {
                truncated.push(i);
            }
        }
        Ok((tokens, truncated))
    }

    /// Tokens of the model's window.
    pub fn window(&self) -> usize {
        self.tokenizer.get_truncation().map_or(usize::MAX, |t| t.max_length)
    }

    /// One unit-length vector per text, in order. Texts longer than the model's window are
    /// truncated, as in sentence-transformers.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let tok_err = |e: tokenizers::Error| EngineError::Tokenizer { model: self.name.clone(), reason: e.to_string() };
        let encodings = self.tokenizer.encode_batch(texts.to_vec(), true).map_err(tok_err)?;
        let rows = |f: &dyn Fn(&tokenizers::Encoding) -> Vec<u32>| -> Result<Tensor> {
            let data: Vec<Vec<u32>> = encodings.iter().map(f).collect();
            Ok(Tensor::new(data, &self.device)?)
        };
        let ids = rows(&|e| e.get_ids().to_vec())?;
        let type_ids = rows(&|e| e.get_type_ids().to_vec())?;
        let mask = rows(&|e| e.get_attention_mask().to_vec())?;
        let hidden = self.model.forward(&ids, &type_ids, Some(&mask))?;
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?;
        let mean = summed.broadcast_div(&counts)?;
        let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f32::MAX)?;
        Ok(mean.broadcast_div(&norm)?.to_vec2()?)
    }
}

/// `max_seq_length` from sentence-transformers' `sentence_bert_config.json`.
fn sentence_max_length(dir: &Path) -> Option<usize> {
    let text = std::fs::read_to_string(dir.join("sentence_bert_config.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["max_seq_length"].as_u64().map(|n| n as usize)
}

/// Cosine similarity of two unit vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
