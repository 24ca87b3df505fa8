//! `assay generate`: stream a completion to stdout.

use crate::options::{GenerateArgs, GlobalOptions};
use anyhow::{Context, Result};
use assay_core::SamplingParams;
use assay_engine::ChatMessage;
use std::io::Write;

pub fn run(global: &GlobalOptions, args: &GenerateArgs) -> Result<()> {
    let params = SamplingParams {
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        top_p: args.top_p,
        top_k: args.top_k,
        seed: args.seed,
        repetition_penalty: args.repetition_penalty,
        stop: args.stop.clone(),
        logprobs: args.logprobs.is_some(),
        top_logprobs: args.logprobs.unwrap_or(0),
        ignore_eos: false,
    };
    params.validate()?;
    // One sequence: the quantized path for its single decode row is fastest.
    let (engine, lm) = super::start_engine(global, &args.model, super::engine_config(global))?;
    let prompt = if args.raw {
        lm.tokenizer.encode_prompt(&args.prompt)?
    } else {
        let mut messages = Vec::new();
        if let Some(system) = &args.system {
            messages.push(ChatMessage::new("system", system));
        }
        messages.push(ChatMessage::new("user", &args.prompt));
        lm.chat_prompt(&messages)?
    };
    let mut stdout = std::io::stdout().lock();
    let started = std::time::Instant::now();
    let out = engine
        .generate_blocking(prompt, params, &mut |piece| {
            // A closed stdout (e.g. `| head`) cancels generation instead of failing later.
            stdout.write_all(piece.as_bytes()).and_then(|_| stdout.flush()).is_ok()
        })
        .context("generation failed")?;
    let Some(out) = out else {
        eprintln!("[cancelled: stdout closed]");
        return Ok(());
    };
    writeln!(stdout)?;
    let secs = started.elapsed().as_secs_f64();
    if let Some(lps) = &out.logprobs {
        for lp in lps {
            let alts: Vec<String> = lp.top.iter().map(|t| format!("{:?} {:.3}", t.token, t.logprob)).collect();
            eprintln!("{:>8.4}  {:?}  [{}]", lp.logprob, lp.token, alts.join(", "));
        }
    }
    eprintln!("[{} prompt tokens, {} generated, finish: {:?}, {:.1} tok/s]", out.prompt_tokens, out.token_ids.len(), out.finish_reason, out.token_ids.len() as f64 / secs);
    Ok(())
}
