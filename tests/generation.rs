//! Generation end to end with the real SmolLM2 file: the flat batch, caches, sampling
//! controls, stop handling, streaming and log-probabilities do what they promise, whatever
//! the model happens to say.

mod common;

use assay_core::{FinishReason, SamplingParams};
use assay_engine::generate::prefill;
use assay_engine::{generate, ChatMessage, EngineError, LogitsAt, SequenceChunk};
use candle_core::Tensor;

/// Chat prompt ids (the template is the same for both SmolLM2 instances).
fn chat(p: &str) -> Vec<u32> {
    common::smollm2().chat_prompt(&[ChatMessage::new("user", p)]).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar().unwrap()
}

#[test]
fn a_flat_batch_equals_each_sequence_alone() {
    let lm = common::smollm2_dense();
    let prompts: Vec<Vec<u32>> = ["The sea", "Patients with iron deficiency often report", "1, 2, 3,"]
        .iter()
        .map(|p| lm.tokenizer.encode(p).unwrap())
        .collect();
    let alone: Vec<Tensor> = prompts.iter().map(|p| lm.model.logits_of(p).unwrap()).collect();
    let mut caches: Vec<_> = prompts.iter().map(|p| lm.model.new_cache(p.len()).unwrap()).collect();
    let mut chunks: Vec<SequenceChunk> = caches
        .iter_mut()
        .zip(&prompts)
        .map(|(cache, p)| SequenceChunk { cache, tokens: p, logits: LogitsAt::Last })
        .collect();
    let batched = lm.model.forward(&mut chunks).unwrap();
    for (b, a) in batched.iter().zip(&alone) {
        let b = b.as_ref().unwrap().squeeze(0).unwrap();
        // f32 throughout; only summation order can differ (measured: ~1e-4).
        assert!(max_abs_diff(&b, a) < 1e-3, "batched logits differ by {}", max_abs_diff(&b, a));
    }
}

#[test]
fn prefill_in_pieces_equals_one_pass_and_decode_continues_the_cache() {
    let lm = common::smollm2_dense();
    let ids = chat("Name a primary colour and explain it in one sentence.");
    let whole = lm.model.logits_of(&ids).unwrap();
    let mut cache = lm.model.new_cache(ids.len()).unwrap();
    let (a, b) = ids.split_at(ids.len() / 2);
    for (piece, logits) in [(a, LogitsAt::None), (b, LogitsAt::Last)] {
        let mut chunk = [SequenceChunk { cache: &mut cache, tokens: piece, logits }];
        let out = lm.model.forward(&mut chunk).unwrap().pop().unwrap();
        if let Some(out) = out {
            assert!(max_abs_diff(&out.squeeze(0).unwrap(), &whole) < 1e-3);
        }
    }
    assert_eq!(cache.len(), ids.len());
    // Token by token (the decode shape) reaches the same state.
    let mut cache = lm.model.new_cache(1).unwrap();
    let mut last = None;
    for t in &ids {
        last = lm.model.forward(&mut [SequenceChunk { cache: &mut cache, tokens: std::slice::from_ref(t), logits: LogitsAt::Last }]).unwrap().pop().flatten();
    }
    assert!(max_abs_diff(&last.unwrap().squeeze(0).unwrap(), &whole) < 1e-3);
    // Logits for every row of a chunk: the last row equals the one-pass logits.
    let mut cache = lm.model.new_cache(ids.len()).unwrap();
    let all = lm.model.forward(&mut [SequenceChunk { cache: &mut cache, tokens: &ids, logits: LogitsAt::All }]).unwrap().pop().flatten().unwrap();
    assert_eq!(all.dims(), &[ids.len(), lm.model.config().vocab_size]);
    assert!(max_abs_diff(&all.get(ids.len() - 1).unwrap(), &whole) < 1e-3);
}

#[test]
fn streaming_pieces_add_up_to_the_text_and_max_tokens_is_respected() {
    let lm = common::smollm2();
    let mut pieces = String::new();
    let out = generate(lm, &chat("Tell me a story about a lighthouse."), &SamplingParams::greedy(12), &mut |p| {
        pieces.push_str(p);
        true
    })
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
    let lm = common::smollm2();
    let ids = chat("Write one sentence about the sea.");
    let free = generate(lm, &ids, &SamplingParams::greedy(24), &mut |_| true).unwrap();
    // Stop at a piece of what greedy decoding says anyway, wherever it falls in the tokens.
    let words: Vec<&str> = free.text.split(' ').collect();
    assert!(words.len() > 3, "need a few words to cut: {:?}", free.text);
    let stop = format!(" {}", words[2]);
    let params = SamplingParams { stop: vec![stop.clone()], ..SamplingParams::greedy(24) };
    let mut streamed = String::new();
    let cut = generate(lm, &ids, &params, &mut |p| {
        streamed.push_str(p);
        true
    })
    .unwrap();
    let expected = &free.text[..free.text.find(&stop).unwrap()];
    assert_eq!(cut.text, expected);
    assert_eq!(streamed, expected, "nothing after the stop string is streamed");
    assert_eq!(cut.finish_reason, FinishReason::Stop);
}

#[test]
fn seeded_sampling_is_reproducible_and_logprobs_are_consistent() {
    let lm = common::smollm2();
    let ids = chat("Give me a name for a cat.");
    let params = SamplingParams {
        temperature: 0.9,
        top_p: 0.95,
        top_k: 40,
        seed: Some(42),
        repetition_penalty: 1.1,
        logprobs: true,
        top_logprobs: 3,
        ..SamplingParams::greedy(16)
    };
    let a = generate(lm, &ids, &params, &mut |_| true).unwrap();
    let b = generate(lm, &ids, &params, &mut |_| true).unwrap();
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
    let greedy = generate(lm, &ids, &SamplingParams { logprobs: true, top_logprobs: 1, ..SamplingParams::greedy(8) }, &mut |_| true).unwrap();
    for lp in greedy.logprobs.unwrap() {
        assert_eq!(lp.token_id, lp.top[0].token_id);
    }
}

#[test]
fn cancelling_from_the_callback_ends_generation() {
    let lm = common::smollm2();
    let mut calls = 0;
    let out = generate(lm, &chat("Count from one to fifty."), &SamplingParams::greedy(64), &mut |_| {
        calls += 1;
        false
    })
    .unwrap();
    assert_eq!(calls, 1);
    assert!(out.token_ids.len() < 64);
}

#[test]
fn over_long_and_empty_prompts_are_clear_errors() {
    let lm = common::smollm2();
    let limit = lm.context_length();
    let long = vec![lm.tokenizer.encode("word").unwrap()[0]; limit];
    match generate(lm, &long, &SamplingParams::greedy(4), &mut |_| true) {
        Err(EngineError::ContextOverflow { tokens, limit: l, .. }) => assert_eq!((tokens, l), (limit, limit)),
        other => panic!("expected a context overflow, got {:?}", other.map(|g| g.text)),
    }
    assert!(matches!(generate(lm, &[], &SamplingParams::greedy(4), &mut |_| true), Err(EngineError::EmptyPrompt)));
    assert!(matches!(prefill(lm, &[], 4), Err(EngineError::EmptyPrompt)));
    let bad = SamplingParams { top_p: 2.0, ..SamplingParams::greedy(4) };
    assert!(matches!(generate(lm, &chat("hi"), &bad, &mut |_| true), Err(EngineError::InvalidParams(_))));
}

#[test]
fn branches_of_a_shared_prefix_equal_full_sequences() {
    let lm = common::smollm2_dense();
    let tok = |s: &str| lm.tokenizer.encode(s).unwrap();
    let prefix = chat("Summarise: the patient has iron deficiency anemia and reports fatigue.");
    let suffixes = [tok("Does the summary mention fatigue? Answer:"), tok("Is it short?"), tok(" Yes")];
    let mut prefix_cache = lm.model.new_cache(prefix.len()).unwrap();
    lm.model.forward(&mut [SequenceChunk { cache: &mut prefix_cache, tokens: &prefix, logits: LogitsAt::None }]).unwrap();
    let shared = std::sync::Arc::new(prefix_cache);
    let mut branches: Vec<_> = suffixes.iter().map(|s| assay_engine::KvCache::branch(&shared, s.len() + 1).unwrap()).collect();
    let mut chunks: Vec<SequenceChunk> = branches.iter_mut().zip(&suffixes).map(|(cache, s)| SequenceChunk { cache, tokens: s, logits: LogitsAt::All }).collect();
    let packed = lm.model.forward(&mut chunks).unwrap();
    for (s, got) in suffixes.iter().zip(&packed) {
        let full: Vec<u32> = prefix.iter().chain(s).copied().collect();
        let mut cache = lm.model.new_cache(full.len()).unwrap();
        let want = lm.model.forward(&mut [SequenceChunk { cache: &mut cache, tokens: &full, logits: LogitsAt::All }]).unwrap().pop().flatten().unwrap();
        let want = want.narrow(0, prefix.len(), s.len()).unwrap();
        assert!(max_abs_diff(got.as_ref().unwrap(), &want) < 1e-3, "branch differs by {}", max_abs_diff(got.as_ref().unwrap(), &want));
    }
    // A branch keeps decoding on top of the shared prefix.
    let next = [tok(" no")[0]];
    let step = lm.model.forward(&mut [SequenceChunk { cache: &mut branches[1], tokens: &next, logits: LogitsAt::Last }]).unwrap().pop().flatten().unwrap();
    let full: Vec<u32> = prefix.iter().chain(&suffixes[1]).chain(&next).copied().collect();
    assert!(max_abs_diff(&step.squeeze(0).unwrap(), &lm.model.logits_of(&full).unwrap()) < 1e-3);
    assert_eq!(shared.len(), prefix.len(), "branches never write into the shared prefix");
}
