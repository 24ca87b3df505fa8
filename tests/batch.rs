//! Continuous batching end to end with the real SmolLM2: a sequence's output does not depend
//! on what else shares the batch, late arrivals join running batches, long prompts are
//! prefilled in chunks while others keep decoding, and cancellation frees a slot.

mod common;

use assay_core::{FinishReason, Generation, SamplingParams};
use assay_engine::{BatchConfig, BatchGenerator, ChatMessage, SeqId, SequenceEvent};
use std::collections::HashMap;

fn chat(p: &str) -> Vec<u32> {
    common::smollm2().chat_prompt(&[ChatMessage::new("user", p)]).unwrap()
}

fn sampled(seed: u64, max_tokens: usize) -> SamplingParams {
    SamplingParams { temperature: 0.9, top_p: 0.95, seed: Some(seed), logprobs: true, ..SamplingParams::greedy(max_tokens) }
}

/// Text and log-probabilities streamed for each sequence so far.
type Streamed = HashMap<SeqId, (String, Vec<assay_core::TokenLogprob>)>;

/// Steps `batch` until every sequence has finished, adding to what was `streamed` before;
/// returns the generations and the text pieces streamed for each. The log-probabilities
/// streamed with the pieces are each generated token's, once, in order.
fn run_to_end(batch: &mut BatchGenerator, mut streamed: Streamed) -> HashMap<SeqId, (Generation, String)> {
    let mut done = HashMap::new();
    while !batch.is_empty() {
        for (id, event) in batch.step().unwrap() {
            match event {
                SequenceEvent::Text { text, logprobs } => {
                    let s = streamed.entry(id).or_default();
                    s.0.push_str(&text);
                    s.1.extend(logprobs);
                }
                SequenceEvent::Finished(g) => {
                    let (text, logprobs) = streamed.remove(&id).unwrap_or_default();
                    assert_eq!(logprobs, g.logprobs.clone().unwrap_or_default(), "streamed log-probabilities of sequence {id}");
                    done.insert(id, (g, text));
                }
            }
        }
    }
    done
}

fn alone(prompt: &[u32], params: &SamplingParams) -> Generation {
    let mut batch = BatchGenerator::new(common::smollm2(), BatchConfig::batched());
    let id = batch.add(prompt.to_vec(), params.clone()).unwrap();
    run_to_end(&mut batch, Streamed::new()).remove(&id).unwrap().0
}

#[test]
fn thirty_two_seeded_sequences_in_one_batch_equal_each_run_alone() {
    let lm = common::smollm2();
    let topics = ["the sea", "bread", "a lighthouse", "winter", "iron deficiency", "a red fox", "the moon", "tea"];
    let requests: Vec<(Vec<u32>, SamplingParams)> = (0..32).map(|i| (chat(&format!("Write one sentence about {}.", topics[i % topics.len()])), sampled(i as u64, 12))).collect();
    let mut batch = BatchGenerator::new(lm, BatchConfig::batched());
    // Half join at once, the rest while the first half is decoding.
    let mut ids: Vec<SeqId> = requests[..16].iter().map(|(p, s)| batch.add(p.clone(), s.clone()).unwrap()).collect();
    let mut early = Streamed::new();
    for _ in 0..3 {
        for (id, event) in batch.step().unwrap() {
            if let SequenceEvent::Text { text, logprobs } = event {
                let s = early.entry(id).or_default();
                s.0.push_str(&text);
                s.1.extend(logprobs);
            }
        }
    }
    ids.extend(requests[16..].iter().map(|(p, s)| batch.add(p.clone(), s.clone()).unwrap()));
    let mut together = run_to_end(&mut batch, early);
    for ((prompt, params), id) in requests.iter().zip(&ids) {
        let (g, streamed) = together.remove(id).unwrap();
        let want = alone(prompt, params);
        assert_eq!(g, want, "sequence {id} differs in the batch");
        assert_eq!(streamed, g.text, "streamed pieces add up to the text");
        assert_eq!(g.logprobs.as_ref().unwrap().len(), g.token_ids.len());
    }
}

#[test]
fn a_long_prompt_is_prefilled_in_chunks_while_others_keep_decoding() {
    let lm = common::smollm2();
    let mut batch = BatchGenerator::new(lm, BatchConfig::batched());
    let short = batch.add(chat("Count from one to twenty."), SamplingParams::greedy(20)).unwrap();
    batch.step().unwrap();
    let long_prompt = chat(&"Tell me about the history of the lighthouse. ".repeat(200));
    assert!(long_prompt.len() > 3 * 512, "{} tokens", long_prompt.len());
    let long = batch.add(long_prompt.clone(), SamplingParams::greedy(4)).unwrap();
    // The short sequence samples a token in every step while the long prompt is prefilled.
    let mut steps_until_long_speaks = 0;
    let mut short_tokens = 0;
    let mut short_done = false;
    loop {
        let events = batch.step().unwrap();
        steps_until_long_speaks += 1;
        short_tokens += events.iter().filter(|(id, _)| *id == short).count().min(1);
        short_done |= events.iter().any(|(id, e)| *id == short && matches!(e, SequenceEvent::Finished(_)));
        if events.iter().any(|(id, _)| *id == long) || short_done {
            break;
        }
    }
    assert!(steps_until_long_speaks >= long_prompt.len().div_ceil(512), "prefill took {steps_until_long_speaks} steps");
    assert!(short_done || short_tokens >= steps_until_long_speaks - 1, "short sequence stalled: {short_tokens} events in {steps_until_long_speaks} steps");
    let rest = run_to_end(&mut batch, Streamed::new());
    assert_eq!(rest[&long].0, alone(&long_prompt, &SamplingParams::greedy(4)));
}

#[test]
fn cancel_returns_the_partial_output_and_stops_stream_at_stop_strings() {
    let lm = common::smollm2();
    let mut batch = BatchGenerator::new(lm, BatchConfig::batched());
    let counting = chat("Count from one to fifty, separated by commas.");
    let free = alone(&counting, &SamplingParams::greedy(24));
    // A stop string taken from the middle of the free text: the stopped run is its prefix.
    let stop = free.text[free.text.len() / 2..].chars().take(3).collect::<String>();
    let cut = batch.add(counting.clone(), SamplingParams { stop: vec![stop.clone()], logprobs: true, ..SamplingParams::greedy(24) }).unwrap();
    let cancelled = batch.add(counting.clone(), SamplingParams::greedy(24)).unwrap();
    let zero = batch.add(counting.clone(), SamplingParams::greedy(0)).unwrap();
    let mut early = Streamed::new();
    let mut empty = None;
    for _ in 0..4 {
        for (id, event) in batch.step().unwrap() {
            match event {
                SequenceEvent::Text { text, logprobs } if id == cut => {
                    let s = early.entry(id).or_default();
                    s.0.push_str(&text);
                    s.1.extend(logprobs);
                }
                SequenceEvent::Finished(g) if id == zero => empty = Some(g),
                _ => {}
            }
        }
    }
    let partial = batch.cancel(cancelled).unwrap();
    assert!(partial.token_ids.len() == 4 && free.token_ids.starts_with(&partial.token_ids), "{partial:?}");
    assert!(batch.cancel(cancelled).is_none());
    let mut done = run_to_end(&mut batch, early);
    let (stopped, streamed) = done.remove(&cut).unwrap();
    assert_eq!(stopped.finish_reason, FinishReason::Stop);
    assert_eq!(stopped.text, free.text[..free.text.find(&stop).unwrap()]);
    assert_eq!(streamed, stopped.text);
    let empty = empty.expect("max_tokens 0 finishes in the first step");
    assert!(empty.token_ids.is_empty() && empty.finish_reason == FinishReason::Length);
}
