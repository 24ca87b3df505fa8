//! Reading GGUF files: header, metadata and tensors, validated up front so that a truncated
//! or corrupt file is reported with its name before any weight is loaded.

use crate::error::{EngineError, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::QTensor;
use candle_core::Device;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

/// An open GGUF file whose header was read and whose tensor table fits inside the file.
pub struct GgufFile {
    path: PathBuf,
    content: Content,
    reader: BufReader<File>,
}

impl GgufFile {
    pub fn open(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(EngineError::FileNotFound(path.to_path_buf()));
        }
        let file = File::open(path).map_err(|source| EngineError::Io { path: path.to_path_buf(), source })?;
        let file_len = file.metadata().map_err(|source| EngineError::Io { path: path.to_path_buf(), source })?.len();
        let mut reader = BufReader::new(file);
        let corrupt = |reason: String| EngineError::CorruptGguf { path: path.to_path_buf(), reason };
        let content = Content::read(&mut reader).map_err(|e| corrupt(e.to_string()))?;
        for (name, info) in &content.tensor_infos {
            let elems = info.shape.elem_count();
            let block = info.ggml_dtype.block_size();
            if elems % block != 0 {
                return Err(corrupt(format!("tensor {name} has {elems} elements, not a multiple of the block size {block}")));
            }
            let bytes = (elems / block * info.ggml_dtype.type_size()) as u64;
            let end = content.tensor_data_offset.saturating_add(info.offset).saturating_add(bytes);
            if end > file_len {
                return Err(corrupt(format!("tensor {name} ends at byte {end} but the file has {file_len} bytes (truncated download?)")));
            }
        }
        Ok(Self { path: path.to_path_buf(), content, reader })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn metadata(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    fn missing(&self, key: &str) -> EngineError {
        EngineError::MissingMetadata { path: self.path.clone(), key: key.to_string() }
    }

    fn wrong_type(&self, key: &str, e: candle_core::Error) -> EngineError {
        EngineError::InvalidModel { path: self.path.clone(), reason: format!("metadata {key}: {e}") }
    }

    pub fn string(&self, key: &str) -> Result<&str> {
        let v = self.metadata(key).ok_or_else(|| self.missing(key))?;
        v.to_string().map(String::as_str).map_err(|e| self.wrong_type(key, e))
    }

    pub fn u32(&self, key: &str) -> Result<u32> {
        let v = self.metadata(key).ok_or_else(|| self.missing(key))?;
        // Writers disagree on integer widths; accept any that fits.
        v.to_u32().or_else(|_| v.to_i32().map(|x| x as u32)).or_else(|_| v.to_u64().map(|x| x as u32)).map_err(|e| self.wrong_type(key, e))
    }

    pub fn f32(&self, key: &str) -> Result<f32> {
        let v = self.metadata(key).ok_or_else(|| self.missing(key))?;
        v.to_f32().or_else(|_| v.to_f64().map(|x| x as f32)).map_err(|e| self.wrong_type(key, e))
    }

    pub fn bool(&self, key: &str) -> Result<bool> {
        let v = self.metadata(key).ok_or_else(|| self.missing(key))?;
        v.to_bool().map_err(|e| self.wrong_type(key, e))
    }

    pub fn array(&self, key: &str) -> Result<&Vec<Value>> {
        let v = self.metadata(key).ok_or_else(|| self.missing(key))?;
        v.to_vec().map_err(|e| self.wrong_type(key, e))
    }

    pub fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    pub fn tensor(&mut self, name: &str, device: &Device) -> Result<QTensor> {
        let path = self.path.clone();
        let info = self.content.tensor_infos.get(name).ok_or_else(|| EngineError::InvalidModel { path: path.clone(), reason: format!("missing tensor {name}") })?;
        info.read(&mut self.reader, self.content.tensor_data_offset, device).map_err(|e| EngineError::CorruptGguf { path, reason: format!("tensor {name}: {e}") })
    }
}
