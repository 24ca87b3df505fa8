//! Chat templates: the model's own Jinja template (GGUF `tokenizer.chat_template` or
//! `tokenizer_config.json`) rendered with minijinja, or a per-family fallback.

use crate::error::{EngineError, Result};
use serde::{Deserialize, Serialize};

/// One chat message, as in OpenAI's API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: &str, content: &str) -> Self {
        Self { role: role.to_string(), content: content.to_string() }
    }
}

/// Known prompt formats used when a model ships no template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallbackFormat {
    /// `<|im_start|>role\n...<|im_end|>\n` (SmolLM2, Qwen).
    ChatMl,
    /// `<|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|>` (Llama 3).
    Llama3,
    /// `[INST] ... [/INST]` (Llama 2, Mistral).
    Inst,
    /// `<start_of_turn>user\n...<end_of_turn>\n` with the system prompt folded into the first
    /// user turn (Gemma).
    Gemma,
}

const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
const LLAMA3: &str = "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";
const INST: &str = "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'system' %}{{ '<<SYS>>\n' + message['content'] + '\n<</SYS>>\n\n' }}{% else %}{{ ' ' + message['content'] + eos_token }}{% endif %}{% endfor %}";

const GEMMA: &str = "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set first_user_prefix = messages[0]['content'] + '\n\n' %}{% set loop_messages = messages[1:] %}{% else %}{% set first_user_prefix = '' %}{% set loop_messages = messages %}{% endif %}{% for message in loop_messages %}{% if message['role'] == 'assistant' %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}";

/// A compiled chat template plus the special tokens it may refer to.
pub struct ChatTemplate {
    env: minijinja::Environment<'static>,
    bos_token: String,
    eos_token: String,
    model: String,
}

impl ChatTemplate {
    /// Compiles `source`, the model's Jinja template.
    pub fn new(model: &str, source: &str, bos_token: Option<String>, eos_token: Option<String>) -> Result<Self> {
        let mut env = minijinja::Environment::new();
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> std::result::Result<String, minijinja::Error> { Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg)) });
        env.add_template_owned("chat", source.to_string()).map_err(|e| EngineError::ChatTemplate { model: model.to_string(), reason: e.to_string() })?;
        Ok(Self { env, bos_token: bos_token.unwrap_or_default(), eos_token: eos_token.unwrap_or_default(), model: model.to_string() })
    }

    pub fn fallback(model: &str, format: FallbackFormat, bos_token: Option<String>, eos_token: Option<String>) -> Result<Self> {
        let source = match format {
            FallbackFormat::ChatMl => CHATML,
            FallbackFormat::Llama3 => LLAMA3,
            FallbackFormat::Inst => INST,
            FallbackFormat::Gemma => GEMMA,
        };
        Self::new(model, source, bos_token, eos_token)
    }

    /// The prompt text for `messages`, ending with the assistant's turn opener when
    /// `add_generation_prompt` is set.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let tmpl = self.env.get_template("chat").map_err(|e| self.error(e))?;
        tmpl.render(minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        })
        .map_err(|e| self.error(e))
    }

    fn error(&self, e: minijinja::Error) -> EngineError {
        EngineError::ChatTemplate { model: self.model.clone(), reason: e.to_string() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_fallback_renders_turns_and_generation_prompt() {
        let t = ChatTemplate::fallback("m", FallbackFormat::ChatMl, None, None).unwrap();
        let out = t.render(&[ChatMessage::new("system", "Be brief."), ChatMessage::new("user", "Hi")], true).unwrap();
        assert_eq!(out, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn gemma_fallback_folds_the_system_prompt_into_the_first_user_turn() {
        let t = ChatTemplate::fallback("m", FallbackFormat::Gemma, Some("<bos>".into()), None).unwrap();
        let out = t.render(&[ChatMessage::new("system", "Be brief."), ChatMessage::new("user", "Hi"), ChatMessage::new("assistant", "Hello"), ChatMessage::new("user", "Bye")], true).unwrap();
        assert_eq!(out, "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello<end_of_turn>\n<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n");
    }

    #[test]
    fn python_string_methods_and_raise_exception_work() {
        let src = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('first must be user') }}{% endif %}{{ messages[0]['content'].strip() }}";
        let t = ChatTemplate::new("m", src, None, None).unwrap();
        assert_eq!(t.render(&[ChatMessage::new("user", "  x ")], false).unwrap(), "x");
        let err = t.render(&[ChatMessage::new("system", "x")], false).unwrap_err().to_string();
        assert!(err.contains("first must be user"), "{err}");
    }

    #[test]
    fn broken_template_is_a_clear_error() {
        let err = ChatTemplate::new("m", "{% for %}", None, None).err().unwrap().to_string();
        assert!(err.starts_with("chat template of m"), "{err}");
    }
}
