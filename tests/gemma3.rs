//! The real Gemma 3 270M GGUF (`models/fetch` gets it): its SentencePiece tokenizer rebuilt from
//! the file's metadata gives llama.cpp's ids, and the gemma3 architecture computes what
//! llama.cpp computes on the same file (fixtures made by
//! `tests/fixtures/make_gemma3_fixtures.py` with llama-cpp-python).
//!
//! llama.cpp multiplies the file's quantized blocks by 8-bit activations and keeps the KV cache
//! in f16; we compute in f32 on the dequantized weights, so logits differ by a little (the test
//! prints how much). Along llama.cpp's greedy trajectory every clear choice (top-two margin
//! above `MARGIN`) must be the same token, and free-running greedy decoding through our engine
//! must follow llama.cpp's tokens up to the first near tie.

mod common;

use assay_core::SamplingParams;
use assay_engine::gguf::GgufFile;
use assay_engine::sampling::argmax;
use assay_engine::{Engine, EngineConfig, EngineModel, LanguageModel, ModelFiles, TextTokenizer};
use candle_core::Device;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;

/// Largest |logit difference| from llama.cpp allowed for its five most likely tokens, and the
/// top-two margin above which a greedy choice counts as clear.
const LOGIT_TOLERANCE: f32 = 1.5;
const MARGIN: f32 = 1.0;

#[derive(Deserialize)]
struct Fixtures {
    tokens: Vec<TokenFixture>,
    greedy: Vec<GreedyFixture>,
}

#[derive(Deserialize)]
struct TokenFixture {
    text: String,
    ids: Vec<u32>,
}

#[derive(Deserialize)]
struct GreedyFixture {
    prompt: String,
    ids: Vec<u32>,
    greedy: Vec<u32>,
    /// Per step, llama.cpp's five most likely (token, logit).
    top: Vec<Vec<(u32, f32)>>,
}

fn fixtures() -> Fixtures {
    serde_json::from_str(include_str!("fixtures/gemma3.json")).unwrap()
}

fn gemma3_path() -> PathBuf {
    let p = common::repo_root().join("models/local/gemma3/gemma-3-270m-q4_k_m.gguf");
    assert!(p.exists(), "{} is missing: run models/fetch first", p.display());
    p
}

fn gemma3() -> &'static Arc<LanguageModel> {
    static LM: std::sync::OnceLock<Arc<LanguageModel>> = std::sync::OnceLock::new();
    LM.get_or_init(|| Arc::new(LanguageModel::load("gemma3", &ModelFiles::Gguf(gemma3_path()), &Device::Cpu).unwrap()))
}

#[test]
fn sentencepiece_ids_equal_llama_cpp_and_round_trip() {
    let tok = TextTokenizer::from_gguf(&GgufFile::open(&gemma3_path()).unwrap()).unwrap();
    let f = fixtures();
    assert!(f.tokens.len() >= 20, "need the hard strings");
    for t in &f.tokens {
        assert_eq!(tok.encode(&t.text).unwrap(), t.ids, "ids of {:?}", t.text);
        assert_eq!(tok.decode(&t.ids).unwrap(), t.text, "round trip of {:?}", t.text);
    }
    let end_of_turn = tok.token_to_id("<end_of_turn>").unwrap();
    assert!(tok.is_stop(end_of_turn), "a chat turn ends generation");
    assert_eq!(tok.bos_token().as_deref(), Some("<bos>"));
}

#[test]
fn logits_and_greedy_tokens_follow_llama_cpp() {
    let lm = gemma3();
    let engine = Engine::start(EngineModel::Language(lm.clone()), EngineConfig::batched(64 << 20)).unwrap();
    for g in fixtures().greedy {
        assert_eq!(lm.tokenizer.encode_prompt(&g.prompt).unwrap(), g.ids, "prompt ids of {:?}", g.prompt);
        // Along llama.cpp's trajectory: the prompt in one pass, then one token at a time.
        let tokens: Vec<u32> = g.ids.iter().chain(&g.greedy[..g.greedy.len() - 1]).copied().collect();
        let ours = lm.logits_along(&tokens, g.ids.len()).unwrap().split_off(g.ids.len() - 1);
        let (mut worst, mut clear) = (0f32, 0);
        for (step, (row, top)) in ours.iter().zip(&g.top).enumerate() {
            for &(id, logit) in top {
                worst = worst.max((row[id as usize] - logit).abs());
            }
            if top[0].1 - top[1].1 > MARGIN {
                clear += 1;
                assert_eq!(argmax(row), top[0].0, "{:?} step {step}: a clear greedy choice differs", g.prompt);
            }
        }
        assert!(worst <= LOGIT_TOLERANCE, "{:?}: max |logit - llama.cpp| {worst}", g.prompt);
        // Free-running greedy through the engine: llama.cpp's tokens up to the first near tie.
        let params = SamplingParams { ignore_eos: true, ..SamplingParams::greedy(g.greedy.len()) };
        let free = engine.generate_blocking(g.ids.clone(), params, &mut |_| true).unwrap().unwrap().token_ids;
        let parted = free.iter().zip(&g.greedy).position(|(a, b)| a != b);
        if let Some(step) = parted {
            let margin = g.top[step][0].1 - g.top[step][1].1;
            assert!(margin <= MARGIN, "{:?}: parted from llama.cpp at step {step} where its margin was {margin}", g.prompt);
        }
        println!("{:?}: max |logit - llama.cpp| {worst:.3}, {clear}/{} clear choices equal, greedy equal for {} of {} tokens", g.prompt, g.top.len(), parted.unwrap_or(free.len()), g.greedy.len());
    }
}

#[test]
fn the_chat_template_is_gemmas() {
    let lm = gemma3();
    let ids = lm.chat_prompt(&[assay_engine::ChatMessage::new("system", "Be brief."), assay_engine::ChatMessage::new("user", "Hi")]).unwrap();
    assert_eq!(lm.tokenizer.decode(&ids).unwrap(), "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n");
}
