//! Reading GGUF files: header, metadata and tensors, validated up front so that a truncated
//! or corrupt file is reported with its name before any weight is loaded. The tensor data is
//! memory-mapped: a tensor is a view of the file's own blocks (`FileBlocks`), read only when
//! the loader repacks or dequantizes it, so loading never holds a second copy of the file.

use crate::error::{EngineError, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Device;
use memmap2::Mmap;
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An open GGUF file whose header was read and whose tensor table fits inside the file.
pub struct GgufFile {
    path: PathBuf,
    content: Content,
    map: Arc<Mmap>,
}

/// One tensor's bytes in a mapped GGUF file, as the file stores them.
#[derive(Clone)]
pub struct FileBlocks {
    map: Arc<Mmap>,
    start: usize,
    len: usize,
    pub dtype: GgmlDType,
    /// Candle's order: `[rows, columns]` for a matrix.
    pub dims: Vec<usize>,
}

impl std::fmt::Debug for FileBlocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileBlocks({:?} {:?}, {} bytes)", self.dtype, self.dims, self.len)
    }
}

impl FileBlocks {
    pub fn bytes(&self) -> &[u8] {
        &self.map[self.start..self.start + self.len]
    }

    /// Drops the mapped pages of these blocks from the process's resident memory once they were
    /// copied (repacked, dequantized): the file stays in the page cache, and a later read maps
    /// it again. Without this, loading would hold the file and its repacked copy at once.
    pub fn release(&self) {
        #[cfg(unix)]
        // SAFETY: the map is a private read-only view of a file nobody modifies: dropped pages
        // read back the same bytes.
        unsafe {
            let _ = self.map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, self.start, self.len);
        }
    }

    /// The tensor as candle's quantized tensor on `device` (a copy of the blocks).
    pub fn qtensor(&self, device: &Device) -> candle_core::Result<QTensor> {
        candle_core::quantized::ggml_file::qtensor_from_ggml(self.dtype, self.bytes(), self.dims.clone(), device)
    }
}

impl GgufFile {
    pub fn open(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(EngineError::FileNotFound(path.to_path_buf()));
        }
        let file = File::open(path).map_err(|source| EngineError::Io { path: path.to_path_buf(), source })?;
        let file_len = file.metadata().map_err(|source| EngineError::Io { path: path.to_path_buf(), source })?.len();
        let mut reader = BufReader::new(file.try_clone().map_err(|source| EngineError::Io { path: path.to_path_buf(), source })?);
        let corrupt = |reason: String| EngineError::CorruptGguf { path: path.to_path_buf(), reason };
        // candle's reader divides by this value unchecked. A header it cannot read is left for
        // it to report.
        if let Ok(true) = alignment_is_zero(&mut reader) {
            return Err(corrupt("general.alignment is 0: the tensor data cannot be aligned to it".into()));
        }
        reader.rewind().map_err(|source| EngineError::Io { path: path.to_path_buf(), source })?;
        let content = Content::read(&mut reader).map_err(|e| corrupt(e.to_string()))?;
        for (name, info) in &content.tensor_infos {
            // Checked: `Shape::elem_count` wraps (release) or panics (debug) on dimensions whose
            // product overflows, and a wrapped count can pass the size check below.
            let dims = info.shape.dims();
            let elems = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).ok_or_else(|| corrupt(format!("tensor {name} has dimensions {dims:?}, too many elements")))?;
            let block = info.ggml_dtype.block_size();
            if elems % block != 0 {
                return Err(corrupt(format!("tensor {name} has {elems} elements, not a multiple of the block size {block}")));
            }
            let bytes = (elems / block).checked_mul(info.ggml_dtype.type_size()).ok_or_else(|| corrupt(format!("tensor {name} has dimensions {dims:?}, too many bytes")))? as u64;
            let end = content.tensor_data_offset.saturating_add(info.offset).saturating_add(bytes);
            if end > file_len {
                return Err(corrupt(format!("tensor {name} ends at byte {end} but the file has {file_len} bytes (truncated download?)")));
            }
        }
        // SAFETY: model files are not modified while a model is loaded from them.
        let map = unsafe { Mmap::map(&file) }.map_err(|source| EngineError::Io { path: path.to_path_buf(), source })?;
        Ok(Self { path: path.to_path_buf(), content, map: Arc::new(map) })
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

    /// A tensor's blocks, viewed in the mapped file (`open` checked that they lie inside it).
    pub fn tensor_blocks(&self, name: &str) -> Result<FileBlocks> {
        let path = self.path.clone();
        let info = self.content.tensor_infos.get(name).ok_or_else(|| EngineError::InvalidModel { path: path.clone(), reason: format!("missing tensor {name}") })?;
        // candle views the bytes of an empty tensor (a dangling pointer) as blocks: undefined
        // behaviour, an abort in debug builds. (`open` checked that the count does not overflow.)
        if info.shape.elem_count() == 0 {
            return Err(EngineError::CorruptGguf { path, reason: format!("tensor {name} has a zero dimension: {:?}", info.shape.dims()) });
        }
        let len = info.shape.elem_count() / info.ggml_dtype.block_size() * info.ggml_dtype.type_size();
        let start = (self.content.tensor_data_offset + info.offset) as usize;
        Ok(FileBlocks { map: self.map.clone(), start, len, dtype: info.ggml_dtype, dims: info.shape.dims().to_vec() })
    }

    pub fn tensor(&self, name: &str, device: &Device) -> Result<QTensor> {
        self.tensor_blocks(name)?.qtensor(device).map_err(|e| EngineError::CorruptGguf { path: self.path.clone(), reason: format!("tensor {name}: {e}") })
    }
}

/// Whether the last `general.alignment` in a GGUF header is an integer 0 of a type candle's
/// reader divides by (u8, u16, u32, i8, i16, i32; others give the default alignment). Steps
/// over the metadata as candle reads it (lengths u32 in version 1, u64 after; keys with
/// trailing NULs stripped; the last of duplicate keys wins), seeking past values; `false` or
/// an error for a header candle's reader refuses too.
fn alignment_is_zero(reader: &mut BufReader<File>) -> std::io::Result<bool> {
    const KEY: &[u8; 17] = b"general.alignment";
    let mut walk = Walk { reader, wide: true };
    let (magic, version) = (walk.u32()?, walk.u32()?);
    if !matches!(magic, 0x46554747 | 0x47475546) || !(1..=3).contains(&version) {
        return Ok(false);
    }
    walk.wide = version != 1;
    let _tensors = walk.len()?;
    let mut zero = false;
    // Each entry takes at least 5 bytes, so a corrupt count ends at the end of the file.
    for _ in 0..walk.len()? {
        let key_len = walk.len()?;
        let is_alignment = if key_len >= KEY.len() as u64 {
            let head: [u8; 17] = walk.bytes()?;
            let rest = key_len - KEY.len() as u64;
            if &head == KEY {
                walk.zeros(rest)?
            } else {
                walk.skip(rest)?;
                false
            }
        } else {
            walk.skip(key_len)?;
            false
        };
        let value_type = walk.u32()?;
        if is_alignment {
            zero = match value_type {
                0 | 1 => walk.bytes::<1>()? == [0],
                2 | 3 => walk.bytes::<2>()? == [0; 2],
                4 | 5 => walk.bytes::<4>()? == [0; 4],
                other => {
                    walk.value(other, 0)?;
                    false
                }
            };
        } else {
            walk.value(value_type, 0)?;
        }
    }
    Ok(zero)
}

/// A cursor over GGUF metadata that reads lengths and steps over values.
struct Walk<'a> {
    reader: &'a mut BufReader<File>,
    /// Lengths are u64 (GGUF version 2 and later), not u32.
    wide: bool,
}

impl Walk<'_> {
    fn bytes<const N: usize>(&mut self) -> std::io::Result<[u8; N]> {
        let mut b = [0; N];
        self.reader.read_exact(&mut b)?;
        Ok(b)
    }

    fn u32(&mut self) -> std::io::Result<u32> {
        self.bytes().map(u32::from_le_bytes)
    }

    fn len(&mut self) -> std::io::Result<u64> {
        if self.wide {
            self.bytes().map(u64::from_le_bytes)
        } else {
            self.u32().map(u64::from)
        }
    }

    /// Reads `n` bytes: whether all are 0.
    fn zeros(&mut self, n: u64) -> std::io::Result<bool> {
        let (mut rest, mut buf, mut all) = ((&mut *self.reader).take(n), [0u8; 4096], true);
        let mut read = 0;
        loop {
            match rest.read(&mut buf)? {
                0 if read < n => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                0 => return Ok(all),
                k => {
                    all &= buf[..k].iter().all(|&b| b == 0);
                    read += k as u64;
                }
            }
        }
    }

    fn skip(&mut self, n: u64) -> std::io::Result<()> {
        let n = i64::try_from(n).map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "length out of range"))?;
        self.reader.seek_relative(n)
    }

    /// Steps over one value of GGUF value type `value_type`.
    fn value(&mut self, value_type: u32, depth: usize) -> std::io::Result<()> {
        let fixed = |t: u32| match t {
            0 | 1 | 7 => Some(1),
            2 | 3 => Some(2),
            4..=6 => Some(4),
            10..=12 => Some(8),
            _ => None,
        };
        match value_type {
            8 => {
                let n = self.len()?;
                self.skip(n)
            }
            9 if depth < 64 => {
                let element = self.u32()?;
                let n = self.len()?;
                match fixed(element) {
                    Some(size) => self.skip(n.saturating_mul(size)),
                    // Strings and arrays: each reads its length, so a corrupt count ends at the
                    // end of the file.
                    None if matches!(element, 8 | 9) => (0..n).try_for_each(|_| self.value(element, depth + 1)),
                    None => Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "unknown value type")),
                }
            }
            t => match fixed(t) {
                Some(size) => self.skip(size),
                None => Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "unknown value type or nesting too deep")),
            },
        }
    }
}

/// Whatever bytes a `.gguf` file holds, opening it and reading what a model load reads from it
/// (metadata, tensors, the tokenizer) gives a value or an error naming the file: never a
/// panic, and never an allocation sized by a count or length the file merely declares.
#[cfg(test)]
mod proptests {
    use super::*;
    use crate::tokenizer::TextTokenizer;
    use candle_core::quantized::{gguf_file, GgmlDType};
    use candle_core::{DType, Tensor};
    use proptest::prelude::*;
    use std::sync::OnceLock;

    fn config(cases: u32) -> ProptestConfig {
        ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
    }

    /// Writes `bytes` as a file, opens it and reads every metadata key (as each type), every
    /// tensor and the tokenizer; returns the open error's text.
    fn read_all(bytes: &[u8]) -> Option<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.gguf");
        std::fs::write(&path, bytes).unwrap();
        let gguf = match GgufFile::open(&path) {
            Ok(gguf) => gguf,
            Err(e) => {
                let e = e.to_string();
                assert!(e.contains("model.gguf"), "{e}");
                return Some(e);
            }
        };
        let keys: Vec<String> = gguf.content.metadata.keys().cloned().collect();
        for key in keys.iter().map(String::as_str).chain(["general.alignment", "absent"]) {
            let _ = (gguf.string(key), gguf.u32(key), gguf.f32(key), gguf.bool(key), gguf.array(key));
        }
        let names: Vec<String> = gguf.content.tensor_infos.keys().cloned().collect();
        for name in names.iter().map(String::as_str).chain(["absent"]) {
            let _ = gguf.has_tensor(name);
            if let Ok(t) = gguf.tensor(name, &Device::Cpu) {
                let _ = t.dequantize(&Device::Cpu);
            }
        }
        if let Ok(tok) = TextTokenizer::from_gguf(&gguf) {
            let ids = tok.encode("Hi hi <|im_end|>\n é").unwrap_or_default();
            let _ = (tok.decode(&ids), tok.decode(&[0, 1, 2, 7, 100, u32::MAX]), tok.bos_token(), tok.eos_token());
        }
        None
    }

    /// A small valid GGUF (v2, as candle writes it): integer, float, bool, string and nested
    /// array metadata, a tokenizer (`gpt2` byte-level BPE or `llama` SentencePiece) and three
    /// tensors of different types.
    fn valid_gguf(tokenizer: &str, extra: &[(&str, gguf_file::Value)]) -> Vec<u8> {
        use gguf_file::Value as V;
        let strings = |s: &[&str]| V::Array(s.iter().map(|t| V::String(t.to_string())).collect());
        let (tokens, types): (Vec<&str>, Vec<i32>) = if tokenizer == "gpt2" {
            (vec!["<|endoftext|>", "<|im_end|>", "H", "i", "Hi", "h", "hi", "\u{120}", "\u{120}hi", "\u{10a}"], vec![3, 3, 1, 1, 1, 1, 1, 1, 1, 1])
        } else {
            (vec!["<unk>", "<s>", "</s>", "<0x48>", "\u{2581}", "h", "i", "hi", "\u{2581}hi", "<0x0A>"], vec![2, 3, 3, 6, 1, 1, 1, 1, 1, 6])
        };
        let mut metadata = vec![
            ("general.architecture", V::String("llama".into())),
            ("general.alignment", V::U32(32)),
            ("llama.block_count", V::U32(2)),
            ("llama.context_length", V::U64(4096)),
            ("llama.rope.freq_base", V::F32(10000.0)),
            ("llama.attention.layer_norm_rms_epsilon", V::F64(1e-5)),
            ("general.nested", V::Array(vec![V::Array(vec![V::U8(1), V::U8(2)]), V::Array(vec![])])),
            ("tokenizer.ggml.model", V::String(tokenizer.into())),
            ("tokenizer.ggml.tokens", strings(&tokens)),
            ("tokenizer.ggml.token_type", V::Array(types.iter().map(|&t| V::I32(t)).collect())),
            ("tokenizer.ggml.scores", V::Array((0..tokens.len()).map(|i| V::F32(-(i as f32))).collect())),
            ("tokenizer.ggml.merges", strings(&["H i", "h i", "\u{120} hi"])),
            ("tokenizer.ggml.eos_token_id", V::U32(1)),
            ("tokenizer.ggml.bos_token_id", V::I32(0)),
            ("tokenizer.ggml.add_bos_token", V::Bool(true)),
        ];
        if tokenizer == "gpt2" {
            metadata.push(("tokenizer.ggml.pre", V::String("smollm".into())));
        }
        metadata.extend(extra.iter().cloned());
        let cpu = Device::Cpu;
        let values = |n: usize, shape: (usize, usize)| Tensor::arange(0f32, n as f32, &cpu).unwrap().reshape(shape).unwrap();
        let tensors = [
            ("token_embd.weight", QTensor::quantize(&values(64, (2, 32)), GgmlDType::F32).unwrap()),
            ("output_norm.weight", QTensor::quantize(&Tensor::ones((2, 32), DType::F32, &cpu).unwrap(), GgmlDType::Q8_0).unwrap()),
            ("blk.0.ffn_up.weight", QTensor::quantize(&values(512, (2, 256)), GgmlDType::Q4K).unwrap()),
        ];
        let mut out = std::io::Cursor::new(Vec::new());
        let metadata: Vec<(&str, &V)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
        let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (*k, v)).collect();
        gguf_file::write(&mut out, &metadata, &tensors).unwrap();
        out.into_inner()
    }

    fn valid_files() -> &'static [Vec<u8>; 2] {
        static FILES: OnceLock<[Vec<u8>; 2]> = OnceLock::new();
        FILES.get_or_init(|| [valid_gguf("gpt2", &[]), valid_gguf("llama", &[])])
    }

    /// Counts and lengths at the edges: zero, small, the reader's caps and past them, and
    /// values that overflow when multiplied or added.
    fn edge_u64() -> impl Strategy<Value = u64> {
        prop_oneof![
            prop::sample::select(vec![0, 1, 2, 3, 4, 5, 7, 17, 31, 32, 255, 256, 1 << 30, (1 << 30) + 1, u32::MAX as u64, 1 << 32, 1 << 62, i64::MAX as u64, u64::MAX - 1, u64::MAX]),
            any::<u64>(),
        ]
    }

    /// A change to a file: a byte, a little-endian u32 (value types, dtypes, dimension counts)
    /// or u64 (counts, lengths, dimensions, offsets) written over it, a cut, an insertion or a
    /// removal.
    #[derive(Debug, Clone)]
    enum Mutation {
        Byte(prop::sample::Index, u8),
        U32(prop::sample::Index, u32),
        U64(prop::sample::Index, u64),
        Truncate(prop::sample::Index),
        Insert(prop::sample::Index, Vec<u8>),
        Remove(prop::sample::Index, usize),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        let at = any::<prop::sample::Index>;
        prop_oneof![
            3 => (at(), any::<u8>()).prop_map(|(i, b)| Mutation::Byte(i, b)),
            3 => (at(), prop_oneof![0u32..40, Just(u32::MAX), any::<u32>()]).prop_map(|(i, v)| Mutation::U32(i, v)),
            4 => (at(), edge_u64()).prop_map(|(i, v)| Mutation::U64(i, v)),
            1 => at().prop_map(Mutation::Truncate),
            1 => (at(), prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(i, b)| Mutation::Insert(i, b)),
            1 => (at(), 1usize..64).prop_map(|(i, n)| Mutation::Remove(i, n)),
        ]
    }

    fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
        let overwrite = |bytes: &mut Vec<u8>, at: &prop::sample::Index, new: &[u8]| {
            if bytes.len() >= new.len() {
                let at = at.index(bytes.len() - new.len() + 1);
                bytes[at..at + new.len()].copy_from_slice(new);
            }
        };
        match m {
            Mutation::Byte(at, b) => overwrite(bytes, at, &[*b]),
            Mutation::U32(at, v) => overwrite(bytes, at, &v.to_le_bytes()),
            Mutation::U64(at, v) => overwrite(bytes, at, &v.to_le_bytes()),
            Mutation::Truncate(at) => bytes.truncate(at.index(bytes.len() + 1)),
            Mutation::Insert(at, new) => {
                let at = at.index(bytes.len() + 1);
                bytes.splice(at..at, new.iter().copied());
            }
            Mutation::Remove(at, n) => {
                let at = at.index(bytes.len() + 1);
                bytes.drain(at..(at + n).min(bytes.len()));
            }
        }
    }

    proptest! {
        #![proptest_config(config(256))]

        #[test]
        fn gguf_reader_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
            read_all(&bytes);
        }

        #[test]
        fn gguf_reader_never_panics_on_a_header_then_arbitrary_bytes(
            version in prop_oneof![4 => 1u32..=3, 1 => any::<u32>()],
            tensors in edge_u64(),
            kvs in edge_u64(),
            tail in prop::collection::vec(any::<u8>(), 0..512),
        ) {
            let mut bytes = b"GGUF".to_vec();
            bytes.extend(version.to_le_bytes());
            if version == 1 {
                bytes.extend((tensors as u32).to_le_bytes());
                bytes.extend((kvs as u32).to_le_bytes());
            } else {
                bytes.extend(tensors.to_le_bytes());
                bytes.extend(kvs.to_le_bytes());
            }
            bytes.extend(tail);
            read_all(&bytes);
        }

        #[test]
        fn gguf_reader_never_panics_on_mutations_of_a_valid_file(which in 0usize..2, mutations in prop::collection::vec(mutation(), 1..5)) {
            let mut bytes = valid_files()[which].clone();
            for m in &mutations {
                apply(&mut bytes, m);
            }
            read_all(&bytes);
        }
    }

    #[test]
    fn the_valid_files_read_whole() {
        for bytes in valid_files() {
            assert_eq!(read_all(bytes), None);
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("model.gguf");
            std::fs::write(&path, bytes).unwrap();
            let gguf = GgufFile::open(&path).unwrap();
            assert_eq!(gguf.tensor("blk.0.ffn_up.weight", &Device::Cpu).unwrap().shape().dims(), &[2, 256]);
            let tok = TextTokenizer::from_gguf(&gguf).unwrap();
            assert!(!tok.encode("hi").unwrap().is_empty());
        }
    }

    #[test]
    fn gguf_alignment_of_zero_is_an_error_not_a_division_by_zero() {
        use gguf_file::Value as V;
        // After the file's own 32 (the last of duplicate keys counts), also with the trailing
        // NULs the reader strips from keys.
        for zero in [V::U8(0), V::U16(0), V::U32(0), V::I8(0), V::I16(0), V::I32(0)] {
            for key in ["general.alignment", "general.alignment\0\0"] {
                let e = read_all(&valid_gguf("gpt2", &[(key, zero.clone())])).unwrap_or_else(|| panic!("{key:?} = {zero:?} was read"));
                assert!(e.contains("general.alignment is 0"), "{e}");
            }
        }
        // Types and values the reader does not divide by or replaces with the default, and a 0
        // that a later key overrides.
        for fine in [vec![V::I32(-1)], vec![V::U64(0)], vec![V::String("0".into())], vec![V::U8(32)], vec![V::I16(32)], vec![V::U32(0), V::U32(32)]] {
            let extra: Vec<_> = fine.into_iter().map(|v| ("general.alignment", v)).collect();
            assert_eq!(read_all(&valid_gguf("gpt2", &extra)), None, "{extra:?}");
        }
    }

    #[test]
    fn gguf_tensors_with_a_zero_dimension_are_an_error() {
        let mut bytes = valid_files()[0].clone();
        let name = b"token_embd.weight";
        let at = bytes.windows(name.len()).position(|w| w == name).unwrap() + name.len() + 4;
        bytes[at..at + 8].copy_from_slice(&0u64.to_le_bytes());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.gguf");
        std::fs::write(&path, bytes).unwrap();
        let e = GgufFile::open(&path).unwrap().tensor("token_embd.weight", &Device::Cpu).unwrap_err().to_string();
        assert!(e.contains("token_embd.weight has a zero dimension"), "{e}");
    }

    #[test]
    fn gguf_tensor_dimensions_whose_product_overflows_are_an_error() {
        // token_embd.weight is [2, 32] (stored innermost first: 32, 2); 2^63 + 32 in place of
        // 32 makes the product 2^64 + 64, which wraps to the 64 elements the data holds.
        let mut bytes = valid_files()[0].clone();
        let name = b"token_embd.weight";
        let at = bytes.windows(name.len()).position(|w| w == name).unwrap() + name.len() + 4;
        assert_eq!(bytes[at..at + 8], 32u64.to_le_bytes());
        bytes[at..at + 8].copy_from_slice(&((1u64 << 63) + 32).to_le_bytes());
        let e = read_all(&bytes).expect("an overflowing shape must not open");
        assert!(e.contains("token_embd.weight"), "{e}");
    }
}
