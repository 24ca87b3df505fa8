//! Continuous batching through the engine with the real SmolLM2: a sequence's output does not
//! depend on what else shares its steps, nor on being preempted and recomputed when the KV pool
//! runs out; long prompts are prefilled in chunks while others keep decoding; a cancelled
//! request frees its blocks.

mod common;

use assay_core::{Generation, SamplingParams};
use assay_engine::{ChatMessage, Engine, EngineConfig, EngineModel, GenEvent, RequestOptions};

fn chat(p: &str) -> Vec<u32> {
    common::smollm2().chat_prompt(&[ChatMessage::new("user", p)]).unwrap()
}

/// Seeded sampling of exactly `max_tokens` tokens (so that every sequence grows).
fn sampled(seed: u64, max_tokens: usize) -> SamplingParams {
    SamplingParams { temperature: 0.9, top_p: 0.95, seed: Some(seed), logprobs: true, ignore_eos: true, ..SamplingParams::greedy(max_tokens) }
}

/// Every choice's streamed text and generation; the log-probabilities streamed with the
/// pieces are each generated token's, once, in order.
fn collect(mut events: tokio::sync::mpsc::UnboundedReceiver<GenEvent>, n: usize) -> Vec<(String, Generation)> {
    let mut streamed = vec![(String::new(), Vec::new()); n];
    let mut done: Vec<Option<Generation>> = vec![None; n];
    while done.iter().any(Option::is_none) {
        match events.blocking_recv().expect("the engine answers") {
            GenEvent::Text { index, text, logprobs } => {
                streamed[index].0.push_str(&text);
                streamed[index].1.extend(logprobs);
            }
            GenEvent::Finished { index, generation } => done[index] = Some(generation),
            GenEvent::Failed(e) => panic!("{e}"),
        }
    }
    streamed
        .into_iter()
        .zip(done)
        .map(|((text, lps), g)| {
            let g = g.unwrap();
            assert_eq!(lps, g.logprobs.clone().unwrap_or_default(), "streamed log-probabilities");
            (text, g)
        })
        .collect()
}

#[test]
fn sixty_four_seeded_generations_through_a_pool_for_eight_equal_each_run_alone() {
    let topics = ["the sea", "bread", "a lighthouse", "winter", "iron deficiency", "a red fox", "the moon", "tea"];
    let requests: Vec<(Vec<u32>, SamplingParams)> =
        (0..64).map(|i| (chat(&format!("Write one short, plain and friendly sentence about {}, with no list.", topics[i % topics.len()])), sampled(i as u64, 24))).collect();
    // Each sequence starts in two blocks (the chat template's first block, which they all
    // share, and one of its own) and grows into a third while it decodes: 17 blocks hold
    // eight of them at once. More are admitted than fit once grown, so some are preempted.
    for (p, _) in &requests {
        assert!(p.len() < 64 && p.len() + 24 > 64, "{} prompt tokens", p.len());
    }
    let block_bytes = common::smollm2().model.kv_layout().bytes_per_block();
    let small = Engine::start(EngineModel::Language(common::smollm2().clone()), EngineConfig::batched(17 * block_bytes)).unwrap();
    let together = collect(small.generate(requests.clone(), RequestOptions::default()).unwrap(), requests.len());
    let stats = small.stats().scheduler;
    assert!(stats.preemptions > 0, "the pool was meant to run short: {stats:?}");
    let alone = common::smollm2_engine(256);
    for ((prompt, params), (streamed, g)) in requests.into_iter().zip(together) {
        let want = alone.generate_blocking(prompt, params, &mut |_| true).unwrap().unwrap();
        assert_eq!(g, want, "a sequence differs in the batch");
        assert_eq!(streamed, g.text, "streamed pieces add up to the text");
        assert_eq!(g.logprobs.as_ref().unwrap().len(), g.token_ids.len());
    }
    println!("64 sequences through 17 blocks: {} preemptions, {} steps", stats.preemptions, stats.steps);
}

#[test]
fn a_long_prompt_is_prefilled_in_chunks_while_others_keep_decoding() {
    let engine = Engine::start(EngineModel::Language(common::smollm2().clone()), EngineConfig { step_tokens: 128, ..EngineConfig::batched(256 << 20) }).unwrap();
    let short = engine.generate(vec![(chat("Count from one to twenty."), SamplingParams { ignore_eos: true, ..SamplingParams::greedy(8) })], RequestOptions::default()).unwrap();
    let long_prompt = chat(&"Tell me about the history of the lighthouse. ".repeat(120));
    assert!(long_prompt.len() > 8 * 128, "{} tokens", long_prompt.len());
    let steps_before = engine.stats().scheduler.steps;
    let long = engine.generate(vec![(long_prompt.clone(), SamplingParams::greedy(2))], RequestOptions::default()).unwrap();
    let long_done = collect(long, 1).remove(0).1;
    let steps = engine.stats().scheduler.steps - steps_before;
    assert!(steps as usize >= long_prompt.len() / 128, "prefilled in {steps} steps");
    // The short sequence needed 8 steps; had decoding stalled during the long prefill, it
    // would still be running.
    let mut short = short;
    let mut finished = false;
    while let Ok(event) = short.try_recv() {
        finished |= matches!(event, GenEvent::Finished { .. });
    }
    assert!(finished, "the short sequence kept decoding while the long prompt was prefilled");
    let alone = common::smollm2_engine(256).generate_blocking(long_prompt, SamplingParams::greedy(2), &mut |_| true).unwrap().unwrap();
    assert_eq!(long_done, alone);
}

#[test]
fn dropping_a_request_cancels_it_and_frees_its_blocks() {
    let engine = common::smollm2_engine(64);
    let counting = chat("Count from one to fifty, separated by commas.");
    let mut cancelled = engine.generate(vec![(counting.clone(), SamplingParams::greedy(200))], RequestOptions::default()).unwrap();
    // Wait for a first piece, then walk away.
    assert!(matches!(cancelled.blocking_recv(), Some(GenEvent::Text { .. })));
    drop(cancelled);
    let other = engine.generate_blocking(counting.clone(), SamplingParams::greedy(4), &mut |_| true).unwrap().unwrap();
    assert_eq!(other.token_ids.len(), 4);
    // The engine publishes its stats after the step that finished the request, and once more
    // when it has reaped it: wait for that, a busy machine may run this thread first.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while engine.stats().requests != 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let s = engine.stats().scheduler;
    assert_eq!((s.running, s.waiting, s.pool.used), (0, 0, s.cached_blocks), "{s:?}");
    assert_eq!(engine.stats().requests, 0);
}
