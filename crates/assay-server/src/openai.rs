//! OpenAI-compatible routes: chat completions, completions, models and embeddings. Field names
//! follow OpenAI's API; unknown fields are ignored and fields of the wrong type are rejected.

use crate::error::ApiError;
use crate::limits::narrow;
use crate::{ApiJson, AppState, Limits, Models};
use assay_core::{FinishReason, Generation, SamplingParams, TokenLogprob};
use assay_engine::{ChatMessage, Engine, GenEvent, LanguageModel};
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::OwnedSemaphorePermit;

/// `stop`: one string or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

/// Message content: a string, or a list of parts of which the text parts are joined.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize)]
struct ContentPart {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Message {
    role: String,
    content: Content,
}

#[derive(Debug, Deserialize, Default)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// Sampling fields shared by chat completions and completions.
#[derive(Debug, Deserialize)]
struct Sampling {
    max_tokens: Option<usize>,
    max_completion_tokens: Option<usize>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    seed: Option<u64>,
    stop: Option<Stop>,
    n: Option<usize>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ChatRequest {
    model: String,
    messages: Vec<Message>,
    #[serde(flatten)]
    sampling: Sampling,
    logprobs: Option<bool>,
    top_logprobs: Option<usize>,
}

/// `prompt`: one string or a list (each prompt gets `n` choices).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Prompt {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
pub(crate) struct CompletionRequest {
    model: String,
    prompt: Prompt,
    #[serde(flatten)]
    sampling: Sampling,
    /// Legacy API: the number of alternatives per token.
    logprobs: Option<usize>,
}

/// The two response shapes that share the generation path.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Api {
    Chat,
    Completion,
}

impl Sampling {
    /// OpenAI's defaults: temperature 1, top_p 1; at most `default_max` new tokens.
    fn params(&self, default_max: usize, logprobs: bool, top_logprobs: usize) -> SamplingParams {
        SamplingParams {
            max_tokens: self.requested_max_tokens().unwrap_or(default_max),
            temperature: self.temperature.map_or(1.0, narrow),
            top_p: self.top_p.map_or(1.0, narrow),
            seed: self.seed,
            stop: match &self.stop {
                None => Vec::new(),
                Some(Stop::One(s)) => vec![s.clone()],
                Some(Stop::Many(v)) => v.clone(),
            },
            logprobs,
            top_logprobs,
            ..SamplingParams::default()
        }
    }

    fn requested_max_tokens(&self) -> Option<usize> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    /// Checks `n` and `max_tokens` against the server's limits (a default `max_tokens` above
    /// the limit is lowered to it), then the sampling parameters and `n`.
    fn checked(&self, limits: &Limits, default_max: usize, logprobs: bool, top_logprobs: usize) -> Result<(SamplingParams, usize), ApiError> {
        let n = self.n.unwrap_or(1);
        limits.n(n)?;
        if let Some(max) = self.requested_max_tokens() {
            limits.max_tokens(max)?;
        }
        Ok((self.params(default_max.min(limits.max_tokens), logprobs, top_logprobs), n))
    }
}

/// `n` choices per prompt (the engine checks each against the context and its KV pool when
/// queueing); seeded requests give choice `i` the seed `seed + i`.
fn choices(prompts: Vec<Vec<u32>>, params: &SamplingParams, n: usize) -> Vec<(Vec<u32>, SamplingParams)> {
    let mut out = Vec::with_capacity(prompts.len() * n);
    for prompt in prompts {
        for i in 0..n {
            let params = SamplingParams { seed: params.seed.map(|s| s.wrapping_add(i as u64)), ..params.clone() };
            out.push((prompt.clone(), params));
        }
    }
    out
}

/// Runs `tokenize` on a blocking thread: a long prompt must not hold up the request threads
/// (health checks, other clients). At most one tokenization per core runs at once (more would
/// not finish sooner), which also bounds the memory they take together: tokenizing costs
/// hundreds of bytes per byte of text.
pub(crate) async fn off_request_threads<T: Send + 'static>(state: &AppState, tokenize: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    let _turn = state.0.tokenizing.acquire().await.map_err(|_| ApiError::Unavailable("shutting down"))?;
    tokio::task::spawn_blocking(tokenize).await.map_err(|e| ApiError::Internal(format!("tokenizing failed: {e}")))?
}

/// Refuses a text that cannot fit `lm`'s context whatever it says, before tokenizing it.
pub(crate) fn fits_context(lm: &LanguageModel, what: impl FnOnce() -> String, bytes: usize) -> Result<(), ApiError> {
    let max_bytes = lm.max_text_bytes();
    match bytes > max_bytes {
        true => Err(ApiError::TextOverContext { what: what(), bytes, max_bytes, context: lm.context_length(), token_bytes: lm.tokenizer.max_token_bytes() }),
        false => Ok(()),
    }
}

pub(crate) async fn chat_completions(State(state): State<AppState>, ApiJson(req): ApiJson<ChatRequest>) -> Result<Response, ApiError> {
    let models = state.models()?;
    let limits = &state.0.config.limits;
    let (engine, lm) = models.language(&req.model)?;
    if req.messages.is_empty() {
        return Err(ApiError::InvalidRequest("messages must not be empty".into()));
    }
    let logprobs = req.logprobs.unwrap_or(false);
    let (params, n) = req.sampling.checked(limits, SamplingParams::default().max_tokens, logprobs, if logprobs { req.top_logprobs.unwrap_or(0) } else { 0 })?;
    let messages: Vec<ChatMessage> = req
        .messages
        .iter()
        .map(|m| {
            let text = match &m.content {
                Content::Text(t) => t.clone(),
                Content::Parts(parts) => parts.iter().filter(|p| p.kind == "text").filter_map(|p| p.text.as_deref()).collect::<Vec<_>>().join("\n"),
            };
            ChatMessage::new(&m.role, &text)
        })
        .collect();
    let bytes = messages.iter().map(|m| m.content.len() + m.role.len()).sum();
    limits.prompt_bytes(bytes)?;
    fits_context(lm, || "the conversation".into(), bytes)?;
    let lm = Arc::clone(lm);
    let prompt = off_request_threads(&state, move || Ok(lm.chat_prompt(&messages)?)).await?;
    let choices = choices(vec![prompt], &params, n);
    respond(&state, models, engine, Api::Chat, choices, &req.model, &req.sampling).await
}

pub(crate) async fn completions(State(state): State<AppState>, ApiJson(req): ApiJson<CompletionRequest>) -> Result<Response, ApiError> {
    let models = state.models()?;
    let limits = &state.0.config.limits;
    let (engine, lm) = models.language(&req.model)?;
    let texts = texts(req.prompt, "prompt", limits)?;
    // OpenAI's legacy default is 16 new tokens.
    let (params, n) = req.sampling.checked(limits, 16, req.logprobs.is_some(), req.logprobs.unwrap_or(0))?;
    limits.items(texts.len() * n)?;
    for (i, text) in texts.iter().enumerate() {
        fits_context(lm, || format!("prompt {i}"), text.len())?;
    }
    let lm = Arc::clone(lm);
    let prompts = off_request_threads(&state, move || Ok(texts.iter().map(|t| lm.tokenizer.encode_prompt(t)).collect::<Result<Vec<_>, _>>()?)).await?;
    let choices = choices(prompts, &params, n);
    respond(&state, models, engine, Api::Completion, choices, &req.model, &req.sampling).await
}

/// A `prompt` or `input` as a list of texts: not empty, within the item and byte limits.
fn texts(prompt: Prompt, field: &str, limits: &Limits) -> Result<Vec<String>, ApiError> {
    let texts = match prompt {
        Prompt::One(p) => vec![p],
        Prompt::Many(ps) if !ps.is_empty() => ps,
        Prompt::Many(_) => return Err(ApiError::InvalidRequest(format!("{field} must not be an empty list"))),
    };
    limits.items(texts.len())?;
    limits.prompt_bytes(texts.iter().map(String::len).sum())?;
    Ok(texts)
}

async fn respond(state: &AppState, models: &Models, engine: &Engine, api: Api, choices: Vec<(Vec<u32>, SamplingParams)>, model: &str, sampling: &Sampling) -> Result<Response, ApiError> {
    let count = choices.len();
    // A stream holds its permit until it ends: open streams are bounded, not just queued.
    let permit = match sampling.stream {
        true => Some(Arc::clone(&state.0.streams).try_acquire_owned().map_err(|_| ApiError::TooManyStreams { limit: state.0.config.limits.streams })?),
        false => None,
    };
    let events = engine.generate(choices, models.client_request())?;
    let head = Head::new(api, model);
    if let Some(permit) = permit {
        let include_usage = sampling.stream_options.as_ref().is_some_and(|o| o.include_usage);
        Ok(stream(head, events, count, include_usage, permit).into_response())
    } else {
        Ok(Json(head.collect(events, count).await?).into_response())
    }
}

/// Fields every response object of one request shares.
#[derive(Clone)]
struct Head {
    api: Api,
    id: String,
    created: u64,
    model: String,
}

impl Head {
    fn new(api: Api, model: &str) -> Self {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let prefix = if api == Api::Chat { "chatcmpl" } else { "cmpl" };
        Self { api, id: format!("{prefix}-{:x}", now.as_nanos()), created: now.as_secs(), model: model.to_string() }
    }

    fn object(&self, chunk: bool) -> &'static str {
        match (self.api, chunk) {
            (Api::Chat, false) => "chat.completion",
            (Api::Chat, true) => "chat.completion.chunk",
            (Api::Completion, _) => "text_completion",
        }
    }

    fn wrap(&self, chunk: bool, choices: Vec<Value>, usage: Option<Value>) -> Value {
        let mut v = json!({"id": self.id, "object": self.object(chunk), "created": self.created, "model": self.model, "choices": choices});
        if let Some(u) = usage {
            v["usage"] = u;
        }
        v
    }

    fn choice(&self, index: usize, g: &Generation) -> Value {
        let reason = finish_reason(g.finish_reason);
        match self.api {
            Api::Chat => json!({"index": index, "message": {"role": "assistant", "content": g.text}, "finish_reason": reason,
                "logprobs": g.logprobs.as_ref().map(|l| chat_logprobs(l))}),
            Api::Completion => json!({"index": index, "text": g.text, "finish_reason": reason, "logprobs": g.logprobs.as_ref().map(|l| completion_logprobs(l, 0))}),
        }
    }

    /// A streamed piece with the log-probabilities of the tokens sampled since the previous
    /// piece; `offset` is where this piece starts in the choice's text (completions report
    /// text offsets).
    fn text_delta(&self, index: usize, piece: &str, logprobs: &[TokenLogprob], offset: usize) -> Value {
        let has = !logprobs.is_empty();
        match self.api {
            Api::Chat => json!({"index": index, "delta": {"content": piece}, "finish_reason": null, "logprobs": has.then(|| chat_logprobs(logprobs))}),
            Api::Completion => json!({"index": index, "text": piece, "finish_reason": null, "logprobs": has.then(|| completion_logprobs(logprobs, offset))}),
        }
    }

    /// The last chunk of a streamed choice: its log-probabilities went out with the pieces.
    fn finish_delta(&self, index: usize, g: &Generation) -> Value {
        let reason = finish_reason(g.finish_reason);
        match self.api {
            Api::Chat => json!({"index": index, "delta": {}, "finish_reason": reason, "logprobs": null}),
            Api::Completion => json!({"index": index, "text": "", "finish_reason": reason, "logprobs": null}),
        }
    }

    /// Waits for every choice and builds the response object.
    async fn collect(&self, mut events: UnboundedReceiver<GenEvent>, count: usize) -> Result<Value, ApiError> {
        let mut done: Vec<Option<Generation>> = vec![None; count];
        while done.iter().any(Option::is_none) {
            match events.recv().await {
                Some(GenEvent::Text { .. }) => {}
                Some(GenEvent::Finished { index, generation }) => done[index] = Some(generation),
                Some(GenEvent::Failed(e)) => return Err(e.into()),
                None => return Err(ApiError::Internal("the engine dropped the request".into())),
            }
        }
        let done: Vec<Generation> = done.into_iter().flatten().collect();
        let choices = done.iter().enumerate().map(|(i, g)| self.choice(i, g)).collect();
        Ok(self.wrap(false, choices, Some(usage(&done))))
    }
}

fn finish_reason(r: FinishReason) -> &'static str {
    match r {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}

/// Usage of a request: each distinct prompt counts once per choice, as OpenAI counts `n`.
fn usage(done: &[Generation]) -> Value {
    let prompt: usize = done.iter().map(|g| g.prompt_tokens).sum();
    let completion: usize = done.iter().map(|g| g.token_ids.len()).sum();
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

fn chat_logprobs(lps: &[TokenLogprob]) -> Value {
    let entry = |token: &str, logprob: f32| json!({"token": token, "logprob": logprob, "bytes": token.as_bytes()});
    let content: Vec<Value> = lps
        .iter()
        .map(|lp| {
            let mut e = entry(&lp.token, lp.logprob);
            e["top_logprobs"] = lp.top.iter().map(|t| entry(&t.token, t.logprob)).collect();
            e
        })
        .collect();
    json!({"content": content})
}

/// Completion log-probabilities of tokens whose text starts at byte `start` of the choice.
fn completion_logprobs(lps: &[TokenLogprob], start: usize) -> Value {
    let mut offset = start;
    let offsets: Vec<usize> = lps
        .iter()
        .map(|lp| {
            let at = offset;
            offset += lp.token.len();
            at
        })
        .collect();
    json!({
        "tokens": lps.iter().map(|lp| &lp.token).collect::<Vec<_>>(),
        "token_logprobs": lps.iter().map(|lp| lp.logprob).collect::<Vec<_>>(),
        "top_logprobs": lps.iter().map(|lp| lp.top.iter().map(|t| (t.token.clone(), json!(t.logprob))).collect::<serde_json::Map<_, _>>()).collect::<Vec<_>>(),
        "text_offset": offsets,
    })
}

/// Server-sent events: a role chunk per chat choice, text deltas as they come, a finish chunk
/// per choice, the usage chunk when asked for, then `data: [DONE]`. A failure after the stream
/// started is sent as an error event. The events are forwarded by a task, so a client that
/// disconnects drops the receiver and the engine cancels the request.
fn stream(head: Head, mut events: UnboundedReceiver<GenEvent>, count: usize, include_usage: bool, permit: OwnedSemaphorePermit) -> impl IntoResponse {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Event, Infallible>>(64);
    tokio::spawn(async move {
        let _permit = permit;
        let data = |v: Value| Ok(Event::default().data(v.to_string()));
        if head.api == Api::Chat {
            for index in 0..count {
                let role = json!({"index": index, "delta": {"role": "assistant", "content": ""}, "finish_reason": null, "logprobs": null});
                if tx.send(data(head.wrap(true, vec![role], None))).await.is_err() {
                    return;
                }
            }
        }
        let mut done = Vec::with_capacity(count);
        let mut streamed = vec![0usize; count];
        while done.len() < count {
            let chunk = match events.recv().await {
                Some(GenEvent::Text { index, text, logprobs }) => {
                    let delta = head.text_delta(index, &text, &logprobs, streamed[index]);
                    streamed[index] += text.len();
                    head.wrap(true, vec![delta], None)
                }
                Some(GenEvent::Finished { index, generation }) => {
                    let chunk = head.wrap(true, vec![head.finish_delta(index, &generation)], None);
                    done.push(generation);
                    chunk
                }
                Some(GenEvent::Failed(e)) => ApiError::from(e).body(),
                None => ApiError::Internal("the engine dropped the request".into()).body(),
            };
            let failed = chunk.get("error").is_some();
            if tx.send(data(chunk)).await.is_err() || failed {
                return;
            }
        }
        if include_usage && tx.send(data(head.wrap(true, vec![], Some(usage(&done))))).await.is_err() {
            return;
        }
        let _ = tx.send(Ok(Event::default().data("[DONE]"))).await;
    });
    Sse::new(tokio_stream::wrappers::ReceiverStream::new(rx)).keep_alive(KeepAlive::default())
}

pub(crate) async fn models(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let data: Vec<Value> = state.models()?.names().into_iter().map(|id| json!({"id": id, "object": "model", "created": 0, "owned_by": "assay"})).collect();
    Ok(Json(json!({"object": "list", "data": data})))
}

#[derive(Debug, Deserialize)]
pub(crate) struct EmbeddingRequest {
    model: String,
    input: Prompt,
    encoding_format: Option<String>,
}

pub(crate) async fn embeddings(State(state): State<AppState>, ApiJson(req): ApiJson<EmbeddingRequest>) -> Result<Json<Value>, ApiError> {
    let models = state.models()?;
    let embedder = models.embedder(&req.model)?;
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => return Err(ApiError::InvalidRequest(format!("encoding_format must be 'float' or 'base64', got '{other}'"))),
    };
    let texts = texts(req.input, "input", &state.0.config.limits)?;
    let assay_engine::Embeddings { vectors, tokens, truncated, window } = embedder.embed(texts)?.await.map_err(|_| ApiError::Internal("the engine dropped the request".into()))??;
    // As OpenAI does: an input past the model's window is an error, not silently cut.
    if let Some(first) = truncated.first() {
        return Err(ApiError::InvalidRequest(format!("input {first} is longer than {}'s window of {window} tokens ({} inputs are); shorten or split it", req.model, truncated.len())));
    }
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(index, v)| {
            let embedding = if base64 { json!(base64::engine::general_purpose::STANDARD.encode(v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>())) } else { json!(v) };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    Ok(Json(json!({"object": "list", "data": data, "model": req.model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampling(v: Value) -> Sampling {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn openai_defaults_and_stop_forms() {
        let s = sampling(json!({}));
        let p = s.params(16, false, 0);
        assert_eq!((p.max_tokens, p.temperature, p.top_p), (16, 1.0, 1.0));
        assert_eq!(sampling(json!({"stop": "\n"})).params(16, false, 0).stop, vec!["\n"]);
        assert_eq!(
            sampling(json!({"stop": ["a", "b"], "max_tokens": 3, "max_completion_tokens": 5})).params(16, false, 0),
            SamplingParams { max_tokens: 5, temperature: 1.0, stop: vec!["a".into(), "b".into()], ..SamplingParams::default() }
        );
        assert!(serde_json::from_value::<Sampling>(json!({"stop": 3})).is_err());
        let limits = Limits::default();
        assert!(sampling(json!({"n": 0})).checked(&limits, 16, false, 0).is_err() && sampling(json!({"n": 17})).checked(&limits, 16, false, 0).is_err());
        assert_eq!(sampling(json!({"unknown": true})).checked(&limits, 16, false, 0).unwrap().1, 1);
        assert!(sampling(json!({"max_tokens": 1_000_000_000})).checked(&limits, 16, false, 0).is_err());
        assert_eq!(sampling(json!({})).checked(&Limits { max_tokens: 8, ..limits }, 16, false, 0).unwrap().0.max_tokens, 8);
    }

    #[test]
    fn completion_logprobs_offsets_follow_the_tokens() {
        let lp = |t: &str| TokenLogprob { token_id: 0, token: t.into(), logprob: -0.5, top: vec![] };
        let v = completion_logprobs(&[lp("He"), lp("llo"), lp(" world")], 0);
        assert_eq!(v["text_offset"], json!([0, 2, 5]));
        assert_eq!(v["tokens"], json!(["He", "llo", " world"]));
    }
}
