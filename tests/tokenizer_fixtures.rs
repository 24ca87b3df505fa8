//! SmolLM2's tokenizer rebuilt from GGUF metadata gives llama.cpp's ids on hard strings
//! (fixtures made by `tests/fixtures/make_tokenizer_fixtures.py` with llama-cpp-python), and
//! decoding the ids gives the text back.

mod common;

use assay_engine::gguf::GgufFile;
use assay_engine::TextTokenizer;
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    text: String,
    ids: Vec<u32>,
}

#[test]
fn ids_equal_llama_cpp_and_round_trip() {
    let fixtures: Vec<Fixture> = serde_json::from_str(include_str!("fixtures/smollm2_tokens.json")).unwrap();
    assert!(fixtures.len() >= 10, "need at least ten fixture strings");
    let tok = TextTokenizer::from_gguf(&GgufFile::open(&common::smollm2_path()).unwrap()).unwrap();
    for f in &fixtures {
        assert_eq!(tok.encode(&f.text).unwrap(), f.ids, "ids of {:?}", f.text);
        assert_eq!(tok.decode(&f.ids).unwrap(), f.text, "round trip of {:?}", f.text);
    }
}

#[test]
fn chat_markup_is_special_and_stop_tokens_are_known() {
    let tok = TextTokenizer::from_gguf(&GgufFile::open(&common::smollm2_path()).unwrap()).unwrap();
    let im_start = tok.token_to_id("<|im_start|>").unwrap();
    let im_end = tok.token_to_id("<|im_end|>").unwrap();
    assert_eq!(tok.encode("<|im_start|>").unwrap(), vec![im_start]);
    assert!(tok.is_stop(im_end));
}
