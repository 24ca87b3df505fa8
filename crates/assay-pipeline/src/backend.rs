//! Where the pipeline's models run. Every role (generator, annotator, judge, embedder, check
//! writer) talks to a `Backend`: the local engine (`LocalBackend`), or any OpenAI-compatible
//! server by base URL (`HttpBackend`: another `assay serve`, vLLM, llama.cpp's server). The
//! pipeline only ever sees `Role`s, so it cannot tell them apart.

use crate::config::RoleModel;
use crate::error::{PipelineError, Result};
use assay_core::{Check, JudgeItem, JudgeOptions, Judgment, SamplingParams};
use assay_engine::judge::Labels;
use assay_engine::{ChatMessage, Embedder, Engine, EngineConfig, EngineModel, LanguageModel, ModelFiles, ModelResolver};
use assay_store::ConfigOrigin;
use candle_core::Device;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One chat turn to answer.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    /// Text the answer is made to begin with where the backend allows it (a JSON opening
    /// keeps small models in format); the returned text then starts with it.
    pub answer_prefix: String,
    pub params: SamplingParams,
}

impl ChatRequest {
    /// The token ids a local model continues: the chat-templated messages, then the answer
    /// prefix.
    pub fn prompt_ids(&self, lm: &LanguageModel) -> assay_engine::Result<Vec<u32>> {
        let mut ids = lm.chat_prompt(&self.messages)?;
        ids.extend(lm.tokenizer.encode(&self.answer_prefix)?);
        Ok(ids)
    }
}

/// One request's answer, or why it has none. A failed request does not fail its batch: the
/// pipeline records and counts it.
pub type Completion = std::result::Result<String, String>;

/// A place models run. `model` names the model within the backend.
pub trait Backend: Send + Sync {
    /// Answers every request (in order); `progress` gets the number answered so far.
    fn chat(&self, model: &str, requests: &[ChatRequest], progress: &mut dyn FnMut(usize)) -> Result<Vec<Completion>>;
    /// Every check of every item, per item in check order; `progress` gets judgments done.
    fn judge(&self, model: &str, items: &[JudgeItem], checks: &[Check], options: &JudgeOptions, progress: &mut dyn FnMut(usize)) -> Result<Vec<Vec<Judgment>>>;
    /// One embedding per text.
    fn embed(&self, model: &str, texts: &[String]) -> Result<Vec<Vec<f32>>>;
}

/// A role bound to its backend and model.
#[derive(Clone)]
pub struct Role {
    backend: Arc<dyn Backend>,
    model: RoleModel,
}

impl Role {
    pub fn describe(&self) -> String {
        self.model.describe()
    }

    pub fn chat(&self, requests: &[ChatRequest], progress: &mut dyn FnMut(usize)) -> Result<Vec<Completion>> {
        self.backend.chat(&self.model.model, requests, progress)
    }

    pub fn judge(&self, items: &[JudgeItem], checks: &[Check], options: &JudgeOptions, progress: &mut dyn FnMut(usize)) -> Result<Vec<Vec<Judgment>>> {
        self.backend.judge(&self.model.model, items, checks, options, progress)
    }

    pub fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        self.backend.embed(&self.model.model, texts)
    }
}

/// A server the operator lets configurations set over HTTP call: a URL prefix, and the one
/// environment variable whose value may be sent to it as the API key (`URL_PREFIX[=VAR]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedBackend {
    pub prefix: String,
    pub key_env: Option<String>,
}

impl std::str::FromStr for AllowedBackend {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (prefix, key_env) = match s.split_once('=') {
            Some((p, v)) => (p.trim(), Some(v.trim().to_string())),
            None => (s.trim(), None),
        };
        if !(prefix.starts_with("http://") || prefix.starts_with("https://")) || prefix.contains(['?', '#', '@']) {
            return Err(format!("'{prefix}' is not an http(s) URL prefix without query, fragment or credentials"));
        }
        if key_env.as_deref().is_some_and(|v| v.is_empty() || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')) {
            return Err(format!("'{s}': the key variable must be an environment variable name"));
        }
        Ok(Self { prefix: prefix.trim_end_matches('/').to_string(), key_env })
    }
}

/// What configurations set over HTTP may reach (see `Backends::role`); the operator's own
/// configurations (set with the CLI) are not limited by it.
#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    pub allowed: Vec<AllowedBackend>,
}

impl OutboundPolicy {
    /// Checks a role chosen over HTTP: a local model by plain name only (no path, so no file of
    /// the machine is opened), a server only under an allowed prefix, and as its key only the
    /// variable allowed for that prefix.
    pub fn check(&self, model: &RoleModel) -> Result<()> {
        let refuse = |why: String| Err(PipelineError::Config(format!("{why} (the configuration was set over HTTP; see --allow-backend)")));
        let Some(url) = &model.base_url else {
            let name = &model.model;
            if name.contains(['/', '\\']) || name.starts_with('.') || name.to_ascii_lowercase().ends_with(".gguf") {
                return refuse(format!("model '{name}' is a path; a configuration set over HTTP may name models only"));
            }
            return Ok(());
        };
        if url.contains(['?', '#', '@', '\\']) || url.contains("/..") || url.to_ascii_lowercase().contains("%2e") {
            return refuse(format!("base_url {url} has a query, fragment, credentials or a parent segment"));
        }
        let under = |a: &&AllowedBackend| url == &a.prefix || url.strip_prefix(&a.prefix).is_some_and(|rest| rest.starts_with('/'));
        let Some(allowed) = self.allowed.iter().find(under) else {
            return refuse(format!("calls to {url} are off: the operator allows servers with --allow-backend"));
        };
        match &model.api_key_env {
            Some(var) if allowed.key_env.as_deref() != Some(var.as_str()) => refuse(format!("the key variable {var} is not the one allowed for {}", allowed.prefix)),
            _ => Ok(()),
        }
    }
}

/// Binds roles to backends: local models to the one local backend (which loads each model
/// once), URLs to HTTP clients, within the operator's outbound policy.
#[derive(Clone)]
pub struct Backends {
    local: Arc<dyn Backend>,
    policy: Arc<OutboundPolicy>,
}

impl Backends {
    pub fn new(local: Arc<dyn Backend>) -> Self {
        Self { local, policy: Arc::default() }
    }

    /// The same backends, calling out only as `policy` allows configurations set over HTTP.
    pub fn with_policy(self, policy: OutboundPolicy) -> Self {
        Self { policy: Arc::new(policy), ..self }
    }

    pub fn role(&self, model: &RoleModel) -> Result<Role> {
        if model.origin == ConfigOrigin::Http {
            self.policy.check(model)?;
        }
        let backend: Arc<dyn Backend> = match &model.base_url {
            None => self.local.clone(),
            Some(url) => {
                let key = match &model.api_key_env {
                    Some(var) => Some(std::env::var(var).map_err(|_| PipelineError::Config(format!("the API key variable {var} for {url} is not set")))?),
                    None => None,
                };
                Arc::new(HttpBackend::new(url, key))
            }
        };
        Ok(Role { backend, model: model.clone() })
    }
}

/// Models on this machine, each loaded on first use into an engine of its own and kept.
pub struct LocalBackend {
    resolver: ModelResolver,
    device: Device,
    config: EngineConfig,
    engines: Mutex<HashMap<String, Engine>>,
}

impl LocalBackend {
    pub fn new(resolver: ModelResolver, device: Device, config: EngineConfig) -> Self {
        Self { resolver, device, config, engines: Mutex::default() }
    }

    /// The engine of `spec`, loading it as a language model, or as an embedder when `embeds`.
    fn engine(&self, spec: &str, embeds: bool) -> Result<Engine> {
        let mut engines = self.engines.lock().expect("engine table poisoned");
        if let Some(e) = engines.get(spec) {
            return Ok(e.clone());
        }
        let files = self.resolver.resolve(spec)?;
        let model = if embeds {
            let ModelFiles::Checkpoint(dir) = &files else {
                return Err(PipelineError::Config(format!("{} is not a checkpoint folder; embedding models are", files.path().display())));
            };
            EngineModel::Embedding(Box::new(Embedder::load(spec, dir, &self.device)?))
        } else {
            EngineModel::Language(Arc::new(LanguageModel::load(spec, &files, &self.device)?))
        };
        let engine = Engine::start(model, self.config)?;
        engines.insert(spec.to_string(), engine.clone());
        Ok(engine)
    }
}

impl Backend for LocalBackend {
    fn chat(&self, model: &str, requests: &[ChatRequest], progress: &mut dyn FnMut(usize)) -> Result<Vec<Completion>> {
        let engine = self.engine(model, false)?;
        let lm = engine.language_model().ok_or_else(|| PipelineError::Config(format!("{model} is loaded as an embedding model; it cannot chat")))?;
        let prompts = requests.iter().map(|r| Ok((r.prompt_ids(lm)?, r.params.clone()))).collect::<assay_engine::Result<Vec<_>>>()?;
        let answers = engine.generate_many_blocking(prompts, progress)?;
        Ok(requests.iter().zip(answers).map(|(r, a)| a.map(|g| format!("{}{}", r.answer_prefix, g.text)).map_err(|e| e.to_string())).collect())
    }

    fn judge(&self, model: &str, items: &[JudgeItem], checks: &[Check], options: &JudgeOptions, progress: &mut dyn FnMut(usize)) -> Result<Vec<Vec<Judgment>>> {
        let engine = self.engine(model, false)?;
        Ok(engine.judge_blocking(items, checks.to_vec(), &Labels::default(), options.clone(), progress)?)
    }

    fn embed(&self, model: &str, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        Ok(self.engine(model, true)?.embed_blocking(texts.to_vec())?.vectors)
    }
}

/// Requests in flight at once against a server, so that it can batch them.
const HTTP_CONCURRENCY: usize = 8;

/// An OpenAI-compatible server: `/chat/completions` and `/embeddings` under its base URL;
/// judging uses `/judge`, which only `assay serve` offers.
pub struct HttpBackend {
    base_url: String,
    api_key: Option<String>,
    agent: ureq::Agent,
}

impl HttpBackend {
    pub fn new(base_url: &str, api_key: Option<String>) -> Self {
        // No redirects: a POST must not turn into a GET somewhere else.
        let agent = ureq::AgentBuilder::new().redirects(0).timeout_connect(std::time::Duration::from_secs(10)).timeout(std::time::Duration::from_secs(1800)).build();
        Self { base_url: base_url.trim_end_matches('/').to_string(), api_key, agent }
    }

    fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let url = format!("{}/{path}", self.base_url);
        let mut request = self.agent.post(&url);
        if let Some(key) = &self.api_key {
            request = request.set("Authorization", &format!("Bearer {key}"));
        }
        let remote = |message: String| PipelineError::Remote { url: url.clone(), message };
        // What the server answers is never repeated in errors (they are stored and shown):
        // only its status.
        match request.send_json(body) {
            Ok(response) if response.status() >= 300 => Err(remote(format!("HTTP {} (redirects are not followed)", response.status()))),
            Ok(response) => response.into_json().map_err(|_| remote("the answer is not JSON".into())),
            Err(ureq::Error::Status(code, _)) => Err(remote(format!("HTTP {code}"))),
            Err(ureq::Error::Transport(t)) => Err(remote(format!("cannot reach the server ({})", t.kind()))),
        }
    }

    fn chat_one(&self, model: &str, request: &ChatRequest) -> Completion {
        let mut messages = request.messages.clone();
        if !request.answer_prefix.is_empty() {
            // A chat API cannot be made to continue a given answer: ask for the opening instead.
            if let Some(last) = messages.last_mut() {
                last.content.push_str(&format!("\n\nBegin your answer with: {}", request.answer_prefix));
            }
        }
        let p = &request.params;
        let mut body = json!({"model": model, "messages": messages, "max_tokens": p.max_tokens, "temperature": p.temperature, "top_p": p.top_p});
        if let Some(seed) = p.seed {
            body["seed"] = json!(seed);
        }
        if !p.stop.is_empty() {
            body["stop"] = json!(p.stop);
        }
        let answer = self.post("chat/completions", &body).map_err(|e| e.to_string())?;
        answer["choices"][0]["message"]["content"].as_str().map(str::to_string).ok_or_else(|| "the answer has no choices[0].message.content".to_string())
    }
}

impl Backend for HttpBackend {
    fn chat(&self, model: &str, requests: &[ChatRequest], progress: &mut dyn FnMut(usize)) -> Result<Vec<Completion>> {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let (sender, answers) = std::sync::mpsc::channel();
        let mut out: Vec<Option<Completion>> = vec![None; requests.len()];
        std::thread::scope(|scope| {
            for _ in 0..HTTP_CONCURRENCY.min(requests.len()) {
                let sender = sender.clone();
                let next = &next;
                scope.spawn(move || loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(request) = requests.get(i) else { break };
                    if sender.send((i, self.chat_one(model, request))).is_err() {
                        break;
                    }
                });
            }
            drop(sender);
            for (done, (i, answer)) in answers.iter().enumerate() {
                out[i] = Some(answer);
                progress(done + 1);
            }
        });
        Ok(out.into_iter().map(|a| a.expect("every request is answered")).collect())
    }

    fn judge(&self, model: &str, items: &[JudgeItem], checks: &[Check], options: &JudgeOptions, progress: &mut dyn FnMut(usize)) -> Result<Vec<Vec<Judgment>>> {
        let mut body = json!({"model": model, "checks": checks, "items": items});
        if let (Value::Object(fields), Ok(Value::Object(extra))) = (&mut body, serde_json::to_value(options)) {
            fields.extend(extra);
        }
        let answer = self.post("judge", &body)?;
        let results = answer["results"]
            .as_array()
            .filter(|r| r.len() == items.len())
            .ok_or_else(|| PipelineError::Remote { url: format!("{}/judge", self.base_url), message: format!("expected {} results, got {}", items.len(), answer["results"]) })?;
        let judgments = results
            .iter()
            .map(|r| serde_json::from_value::<Vec<Judgment>>(r["judgments"].clone()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|_| PipelineError::Remote { url: format!("{}/judge", self.base_url), message: "the judgments are not in assay's format".into() })?;
        progress(items.len() * checks.len());
        Ok(judgments)
    }

    fn embed(&self, model: &str, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let answer = self.post("embeddings", &json!({"model": model, "input": texts}))?;
        let bad = |message: String| PipelineError::Remote { url: format!("{}/embeddings", self.base_url), message };
        let data = answer["data"].as_array().filter(|d| d.len() == texts.len()).ok_or_else(|| bad(format!("expected {} embeddings", texts.len())))?;
        let mut vectors = vec![Vec::new(); texts.len()];
        for (position, d) in data.iter().enumerate() {
            let index = d["index"].as_u64().map(|i| i as usize).unwrap_or(position);
            let vector: Vec<f32> = serde_json::from_value(d["embedding"].clone()).map_err(|_| bad(format!("embedding {index} is not a list of numbers")))?;
            *vectors.get_mut(index).ok_or_else(|| bad(format!("embedding index {index} out of range")))? = vector;
        }
        Ok(vectors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn over_http(model: &str, base_url: Option<&str>, key: Option<&str>) -> RoleModel {
        RoleModel { model: model.into(), base_url: base_url.map(str::to_string), api_key_env: key.map(str::to_string), origin: ConfigOrigin::Http }
    }

    #[test]
    fn configurations_set_over_http_call_only_what_the_operator_allows() {
        let policy = OutboundPolicy { allowed: vec!["http://gpu-box:8000/v1=VLLM_KEY".parse().unwrap(), "https://judge.example/v1/".parse().unwrap()] };
        let ok = |m: RoleModel| policy.check(&m).unwrap();
        let refused = |m: RoleModel| policy.check(&m).unwrap_err().to_string();
        ok(over_http("smollm2", None, None));
        ok(over_http("m", Some("http://gpu-box:8000/v1"), Some("VLLM_KEY")));
        ok(over_http("m", Some("https://judge.example/v1/x"), None));
        for (model, why) in [
            (over_http("/etc/passwd", None, None), "is a path"),
            (over_http("../x.gguf", None, None), "is a path"),
            (over_http("m", Some("http://127.0.0.1:9/internal"), None), "calls to http://127.0.0.1:9/internal are off"),
            (over_http("m", Some("http://gpu-box:8000/v1?x="), None), "query"),
            (over_http("m", Some("http://gpu-box:8000/v10"), None), "are off"),
            (over_http("m", Some("http://gpu-box:8000/v1/../admin"), None), "parent segment"),
            (over_http("m", Some("http://gpu-box:8000/v1"), Some("HOME")), "HOME is not the one allowed"),
            (over_http("m", Some("https://judge.example/v1"), Some("VLLM_KEY")), "VLLM_KEY is not the one allowed"),
        ] {
            let err = refused(model);
            assert!(err.contains(why) && err.contains("--allow-backend"), "{err}");
        }
        // The operator's own configuration is not limited; no default policy allows any server.
        let backends = Backends::new(Arc::new(HttpBackend::new("http://unused", None)));
        let mut theirs = over_http("m", Some("http://127.0.0.1:9/v1"), None);
        assert!(backends.role(&theirs).is_err());
        theirs.origin = ConfigOrigin::Operator;
        assert!(backends.role(&theirs).is_ok());
        assert!("ftp://x".parse::<AllowedBackend>().is_err() && "http://x=a b".parse::<AllowedBackend>().is_err());
    }
}
