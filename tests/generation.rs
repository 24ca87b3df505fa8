//! Generation end to end through the engine with the real SmolLM2 file: chunked prefill,
//! sampling controls, stop handling, streaming, log-probabilities and refusals do what they
//! promise, whatever the model happens to say.

mod common;

use assay_core::{FinishReason, Generation, SamplingParams};
use assay_engine::{ChatMessage, Engine, EngineConfig, EngineError, EngineModel};

/// Chat prompt ids.
fn chat(p: &str) -> Vec<u32> {
    common::smollm2().chat_prompt(&[ChatMessage::new("user", p)]).unwrap()
}

fn generate(engine: &Engine, prompt: &[u32], params: &SamplingParams, on_text: &mut dyn FnMut(&str) -> bool) -> Result<Option<Generation>, EngineError> {
    engine.generate_blocking(prompt.to_vec(), params.clone(), on_text)
}

fn engine() -> &'static Engine {
    static E: std::sync::OnceLock<Engine> = std::sync::OnceLock::new();
    E.get_or_init(|| common::smollm2_engine(512))
}

#[test]
fn prefill_in_small_steps_equals_one_pass_and_the_first_logits_equal_the_model_alone() {
    let ids = chat("Name a primary colour and explain it in one sentence.");
    let params = SamplingParams { logprobs: true, top_logprobs: 5, ..SamplingParams::greedy(6) };
    let whole = generate(engine(), &ids, &params, &mut |_| true).unwrap().unwrap();
    // Seven tokens per step: the prompt is prefilled in many chunks.
    let small = Engine::start(EngineModel::Language(common::smollm2().clone()), EngineConfig { step_tokens: 7, ..EngineConfig::batched(64 << 20) }).unwrap();
    let pieces = generate(&small, &ids, &params, &mut |_| true).unwrap().unwrap();
    assert_eq!(pieces, whole, "chunking does not change a row's arithmetic");
    assert!(small.stats().scheduler.steps as usize >= ids.len() / 7, "{:?}", small.stats());
    // The engine's first log-probabilities are the model's own on the whole prompt.
    let logits = common::smollm2().logits_along(&ids, ids.len()).unwrap();
    let last = logits.last().unwrap();
    let lse = assay_engine::sampling::log_sum_exp(last);
    let first = &whole.logprobs.as_ref().unwrap()[0];
    assert_eq!(first.token_id, assay_engine::sampling::argmax(last));
    assert!((first.logprob - (last[first.token_id as usize] - lse)).abs() < 1e-6);
}

#[test]
fn streaming_pieces_add_up_to_the_text_and_max_tokens_is_respected() {
    let lm = common::smollm2();
    let mut pieces = String::new();
    let out = generate(engine(), &chat("Tell me a story about a lighthouse."), &SamplingParams::greedy(12), &mut |p| {
        pieces.push_str(p);
        true
    })
    .unwrap()
    .unwrap();
    assert_eq!(pieces, out.text);
    assert!(out.token_ids.len() <= 12);
    if out.finish_reason == FinishReason::Length {
        assert_eq!(out.token_ids.len(), 12);
    }
    assert_eq!(out.text, lm.tokenizer.decode(&out.token_ids).unwrap().replace("<|im_end|>", ""));
}

#[test]
fn stop_strings_cut_the_text_before_them() {
    let ids = chat("Write one sentence about the sea.");
    let free = generate(engine(), &ids, &SamplingParams::greedy(24), &mut |_| true).unwrap().unwrap();
    // Stop at a piece of what greedy decoding says anyway, wherever it falls in the tokens.
    let words: Vec<&str> = free.text.split(' ').collect();
    assert!(words.len() > 3, "need a few words to cut: {:?}", free.text);
    let stop = format!(" {}", words[2]);
    let params = SamplingParams { stop: vec![stop.clone()], ..SamplingParams::greedy(24) };
    let mut streamed = String::new();
    let cut = generate(engine(), &ids, &params, &mut |p| {
        streamed.push_str(p);
        true
    })
    .unwrap()
    .unwrap();
    let expected = &free.text[..free.text.find(&stop).unwrap()];
    assert_eq!(cut.text, expected);
    assert_eq!(streamed, expected, "nothing after the stop string is streamed");
    assert_eq!(cut.finish_reason, FinishReason::Stop);
}

#[test]
fn seeded_sampling_is_reproducible_and_logprobs_are_consistent() {
    let ids = chat("Give me a name for a cat.");
    let params = SamplingParams { temperature: 0.9, top_p: 0.95, top_k: 40, seed: Some(42), repetition_penalty: 1.1, logprobs: true, top_logprobs: 3, ..SamplingParams::greedy(16) };
    let a = generate(engine(), &ids, &params, &mut |_| true).unwrap().unwrap();
    let b = generate(engine(), &ids, &params, &mut |_| true).unwrap().unwrap();
    assert_eq!(a.token_ids, b.token_ids);
    let lps = a.logprobs.as_ref().unwrap();
    assert_eq!(lps.len(), a.token_ids.len());
    for lp in lps {
        assert!(lp.logprob <= 0.0);
        assert_eq!(lp.top.len(), 3);
        assert!(lp.top.windows(2).all(|w| w[0].logprob >= w[1].logprob));
        assert!(lp.logprob <= lp.top[0].logprob + 1e-6);
    }
    // Greedy picks the most likely token at every step.
    let greedy = generate(engine(), &ids, &SamplingParams { logprobs: true, top_logprobs: 1, ..SamplingParams::greedy(8) }, &mut |_| true).unwrap().unwrap();
    for lp in greedy.logprobs.unwrap() {
        assert_eq!(lp.token_id, lp.top[0].token_id);
    }
}

#[test]
fn cancelling_from_the_callback_ends_generation_and_frees_its_blocks() {
    let e = common::smollm2_engine(64);
    let mut calls = 0;
    let out = generate(&e, &chat("Count from one to fifty."), &SamplingParams::greedy(64), &mut |_| {
        calls += 1;
        false
    })
    .unwrap();
    assert_eq!((calls, out), (1, None));
    // Once the engine has seen it, only the prefix tree holds blocks.
    generate(&e, &chat("hi"), &SamplingParams::greedy(1), &mut |_| true).unwrap();
    let s = e.stats().scheduler;
    assert_eq!((s.running, s.pool.used), (0, s.cached_blocks), "{s:?}");
}

#[test]
fn over_long_empty_and_unfitting_prompts_are_clear_errors() {
    let lm = common::smollm2();
    let limit = lm.context_length();
    let long = vec![lm.tokenizer.encode("word").unwrap()[0]; limit];
    match generate(engine(), &long, &SamplingParams::greedy(4), &mut |_| true) {
        Err(EngineError::ContextOverflow { tokens, limit: l, .. }) => assert_eq!((tokens, l), (limit, limit)),
        other => panic!("expected a context overflow, got {other:?}"),
    }
    assert!(matches!(generate(engine(), &[], &SamplingParams::greedy(4), &mut |_| true), Err(EngineError::EmptyPrompt)));
    let bad = SamplingParams { top_p: 2.0, ..SamplingParams::greedy(4) };
    assert!(matches!(generate(engine(), &chat("hi"), &bad, &mut |_| true), Err(EngineError::InvalidParams(_))));
    assert!(matches!(generate(engine(), &[u32::MAX], &SamplingParams::greedy(4), &mut |_| true), Err(EngineError::Tokenizer { .. })));
    // A pool of 4 MiB holds two blocks (64 tokens) of SmolLM2: more can never fit.
    let tiny = common::smollm2_engine(4);
    let err = generate(&tiny, &chat("hi"), &SamplingParams::greedy(4000), &mut |_| true).unwrap_err().to_string();
    assert!(err.contains("do not fit the KV cache of 64 tokens") && err.contains("--kv-cache-mb"), "{err}");
}
