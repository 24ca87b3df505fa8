//! The one place where failures become HTTP statuses and OpenAI-shaped error bodies:
//! `{"error": {"message", "type", "code"}}`.

use assay_engine::EngineError;
use assay_pipeline::PipelineError;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Every way a request can fail, each with its status, OpenAI error type and code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("the request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("the request body does not match the schema: {0}")]
    WrongTypes(String),
    #[error("request body larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the request holds {bytes} bytes of text to tokenize, over this server's limit of {limit} (--limit-prompt-bytes)")]
    PromptTooLarge { bytes: usize, limit: usize },
    #[error("the request body did not arrive within {0} s")]
    BodyTimeout(u64),
    #[error("{limit} streamed responses are open, this server's limit (--limit-streams); retry later")]
    TooManyStreams { limit: usize },
    #[error("the prompt has {tokens} tokens; this model's context is {limit} tokens, which must also hold at least one generated token")]
    ContextLength { tokens: usize, limit: usize },
    #[error("{what} is {bytes} bytes; at most {max_bytes} bytes can fit this model's context of {context} tokens (no token of it stands for more than {token_bytes} bytes)")]
    TextOverContext { what: String, bytes: usize, max_bytes: usize, context: usize, token_bytes: usize },
    #[error("{0}")]
    RecordNotFound(String),
    /// The record exists already, or the change would repeat the current state.
    #[error("{0}")]
    Conflict(String),
    #[error("the model '{name}' does not exist here; loaded: {loaded}")]
    ModelNotFound { name: String, loaded: String },
    #[error("no {what} model is loaded; start the server with {flag}")]
    RoleNotLoaded { what: &'static str, flag: &'static str },
    #[error("missing or invalid API key: send 'Authorization: Bearer <key>'")]
    Unauthorized,
    /// A state-changing request sent by a page of another origin (CSRF).
    #[error("cross-origin request refused: {0}")]
    CrossOrigin(String),
    #[error("no route for {0}")]
    RouteNotFound(String),
    #[error("the queue of model '{model}' is full ({limit} requests waiting or running); retry later")]
    Overloaded { model: String, limit: usize, retry_after_s: u64 },
    #[error("the server is {0}; retry later")]
    Unavailable(&'static str),
    #[error("the request did not finish within {0} s")]
    Timeout(u64),
    /// A server the work was sent on to (a project role's `base_url`) refused or failed it.
    #[error("{0}")]
    Upstream(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest(_) | Self::MalformedJson(_) | Self::WrongTypes(_) | Self::ContextLength { .. } | Self::TextOverContext { .. } => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge { .. } | Self::PromptTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            // A role with no model loaded: what the request names is not here, as for a model.
            Self::ModelNotFound { .. } | Self::RouteNotFound(_) | Self::RecordNotFound(_) | Self::RoleNotLoaded { .. } => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::CrossOrigin(_) => StatusCode::FORBIDDEN,
            Self::Overloaded { .. } | Self::TooManyStreams { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Upstream(_) => StatusCode::BAD_GATEWAY,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// OpenAI's `type` and `code` fields.
    fn kind(&self) -> (&'static str, &'static str) {
        match self {
            Self::InvalidRequest(_) => ("invalid_request_error", "invalid_value"),
            Self::MalformedJson(_) => ("invalid_request_error", "invalid_json"),
            Self::WrongTypes(_) => ("invalid_request_error", "invalid_type"),
            Self::PayloadTooLarge { .. } => ("invalid_request_error", "payload_too_large"),
            Self::PromptTooLarge { .. } => ("invalid_request_error", "prompt_too_large"),
            Self::BodyTimeout(_) => ("invalid_request_error", "body_timeout"),
            Self::TooManyStreams { .. } => ("rate_limit_error", "too_many_streams"),
            Self::ContextLength { .. } | Self::TextOverContext { .. } => ("invalid_request_error", "context_length_exceeded"),
            Self::ModelNotFound { .. } => ("invalid_request_error", "model_not_found"),
            Self::RecordNotFound(_) => ("invalid_request_error", "not_found"),
            Self::Conflict(_) => ("invalid_request_error", "conflict"),
            Self::RoleNotLoaded { .. } => ("invalid_request_error", "model_not_loaded"),
            Self::Unauthorized => ("authentication_error", "invalid_api_key"),
            Self::CrossOrigin(_) => ("permission_error", "cross_origin"),
            Self::RouteNotFound(_) => ("invalid_request_error", "unknown_url"),
            Self::Overloaded { .. } => ("rate_limit_error", "queue_full"),
            Self::Unavailable(_) => ("server_error", "unavailable"),
            Self::Timeout(_) => ("server_error", "timeout"),
            Self::Upstream(_) => ("server_error", "upstream_error"),
            Self::Internal(_) => ("server_error", "internal_error"),
        }
    }

    /// The JSON body, also sent as an SSE event when a stream fails after it started.
    pub fn body(&self) -> serde_json::Value {
        let (kind, code) = self.kind();
        serde_json::json!({"error": {"message": self.to_string(), "type": kind, "code": code}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status().is_server_error() {
            tracing::warn!("{self}");
        }
        let mut response = (self.status(), axum::Json(self.body())).into_response();
        match self {
            Self::Overloaded { retry_after_s, .. } => {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
            }
            Self::TooManyStreams { .. } => {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(1));
            }
            _ => {}
        }
        response
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::ContextOverflow { tokens, limit, .. } => Self::ContextLength { tokens, limit },
            EngineError::InvalidParams(_)
            | EngineError::InvalidInput(_)
            | EngineError::EmptyPrompt
            | EngineError::ItemTooLong { .. }
            | EngineError::ChatTemplate { .. }
            | EngineError::ExceedsKvCache { .. }
            | EngineError::Unsupported { .. }
            | EngineError::Tokenizer { .. } => Self::InvalidRequest(e.to_string()),
            EngineError::Overloaded { model, limit } => Self::Overloaded { model, limit, retry_after_s: 1 },
            EngineError::Timeout { seconds } => Self::Timeout(seconds),
            EngineError::EngineStopped(_) => Self::Unavailable("shutting down"),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<assay_store::StoreError> for ApiError {
    fn from(e: assay_store::StoreError) -> Self {
        match e {
            assay_store::StoreError::NotFound { .. } | assay_store::StoreError::NoneYet(_) => Self::RecordNotFound(e.to_string()),
            assay_store::StoreError::Invalid(_) => Self::InvalidRequest(e.to_string()),
            assay_store::StoreError::Conflict(_) => Self::Conflict(e.to_string()),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<assay_core::InputError> for ApiError {
    fn from(e: assay_core::InputError) -> Self {
        Self::InvalidRequest(e.to_string())
    }
}

impl From<PipelineError> for ApiError {
    fn from(e: PipelineError) -> Self {
        match e {
            PipelineError::Store(e) => e.into(),
            PipelineError::Engine(e) => e.into(),
            PipelineError::Invalid(_) | PipelineError::Input(_) | PipelineError::Config(_) => Self::InvalidRequest(e.to_string()),
            PipelineError::Remote { .. } => Self::Upstream(e.to_string()),
            PipelineError::Busy(_) => Self::Conflict(e.to_string()),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::InvalidRequest(format!("in the URL: {}", rejection.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::InvalidRequest(format!("in the query string: {}", rejection.body_text()))
    }
}

impl ApiError {
    /// A rejected JSON body; `limit` is the configured body size limit.
    pub fn from_json_rejection(rejection: JsonRejection, limit: usize) -> Self {
        match rejection {
            JsonRejection::JsonSyntaxError(e) => Self::MalformedJson(e.body_text()),
            JsonRejection::JsonDataError(e) => Self::WrongTypes(e.body_text()),
            JsonRejection::MissingJsonContentType(_) => Self::InvalidRequest("expected 'Content-Type: application/json'".into()),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge { limit },
            other => Self::InvalidRequest(other.body_text()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_the_openai_shape_and_its_status() {
        let cases = [
            (ApiError::ContextLength { tokens: 9000, limit: 8192 }, 400, "context_length_exceeded"),
            (ApiError::ModelNotFound { name: "x".into(), loaded: "smollm2".into() }, 404, "model_not_found"),
            (ApiError::Unauthorized, 401, "invalid_api_key"),
            (ApiError::Overloaded { model: "m".into(), limit: 4, retry_after_s: 1 }, 429, "queue_full"),
            (ApiError::Unavailable("loading models"), 503, "unavailable"),
            (ApiError::Conflict("exists".into()), 409, "conflict"),
            (ApiError::Upstream("http://x/v1: HTTP 500".into()), 502, "upstream_error"),
        ];
        for (e, status, code) in cases {
            assert_eq!(e.status().as_u16(), status, "{e}");
            let body = e.body();
            assert_eq!(body["error"]["code"], code);
            assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()) && body["error"]["type"].is_string());
        }
        assert!(ApiError::ContextLength { tokens: 9000, limit: 8192 }.to_string().contains("8192"));
    }

    #[test]
    fn engine_errors_map_to_client_or_server_errors() {
        let overflow = ApiError::from(EngineError::ContextOverflow { tokens: 10, reserved: 1, limit: 8 });
        assert!(matches!(overflow, ApiError::ContextLength { tokens: 10, limit: 8 }));
        assert_eq!(ApiError::from(EngineError::EmptyPrompt).status(), StatusCode::BAD_REQUEST);
        assert_eq!(ApiError::from(EngineError::InvalidDevice("x".into())).status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn pipeline_errors_map_to_their_statuses() {
        let cases = [
            (PipelineError::Invalid("no items".into()), 400),
            (PipelineError::Config("bad role".into()), 400),
            (PipelineError::Store(assay_store::StoreError::NotFound { what: "project 'x'".into() }), 404),
            (PipelineError::Store(assay_store::StoreError::Conflict("exists".into())), 409),
            (PipelineError::Remote { url: "http://x/v1".into(), message: "HTTP 500".into() }, 502),
            (PipelineError::Busy("run 1 is being worked on".into()), 409),
            (PipelineError::Io { what: "model".into(), source: std::io::Error::other("boom") }, 500),
        ];
        for (e, status) in cases {
            assert_eq!(ApiError::from(e).status().as_u16(), status);
        }
    }

    #[test]
    fn overload_sends_retry_after() {
        let r = ApiError::Overloaded { model: "m".into(), limit: 4, retry_after_s: 1 }.into_response();
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
    }
}
