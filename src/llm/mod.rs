#![doc = include_str!("../../docs/llm.md")]

mod body;
pub mod future;
mod series;
mod service;
mod sse;

pub use body::LlmResponseBody;
pub use service::Llm;

use std::borrow::Cow;
use std::sync::Arc;

use crate::labels::OTHER;
use crate::Observer;
use series::LlmPart;

/// Which end of a GenAI exchange a layer records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Side {
    /// The service's own model API (`gen_ai.server.*`).
    Server,
    /// Calls to a model provider (`gen_ai.client.*`).
    Client,
}

/// Where a token count comes from: the `usage_source` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UsageSource {
    /// Reported: the provider's `usage` object, or counts the handler set.
    Provider,
    /// Estimated: content chunks of the stream counted (one per token, as OpenAI streams
    /// them).
    Estimated,
}

impl UsageSource {
    /// The label value: `provider` or `estimated`.
    pub fn as_str(self) -> &'static str {
        match self {
            UsageSource::Provider => "provider",
            UsageSource::Estimated => "estimated",
        }
    }
}

/// The labels of one GenAI request: operation, provider, model. Put it in the request's
/// extensions (the client side, or a middleware in front of the server layer) or the
/// response's (a handler that learns the provider by routing); the response's fields win,
/// then the request's, then the layer's defaults.
///
/// ```
/// use tower_observe::llm::LlmLabels;
///
/// let labels = LlmLabels::new().provider("openai").model("gpt-4o-mini");
/// # let _ = labels;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct LlmLabels {
    pub(crate) operation: Option<Cow<'static, str>>,
    pub(crate) provider: Option<Cow<'static, str>>,
    pub(crate) model: Option<Cow<'static, str>>,
}

impl LlmLabels {
    /// No label set: the layer's defaults apply.
    pub fn new() -> Self {
        Self::default()
    }

    /// `gen_ai.operation.name`: `chat`, `text_completion`, `embeddings`, …
    pub fn operation(mut self, operation: impl Into<Cow<'static, str>>) -> Self {
        self.operation = Some(operation.into());
        self
    }

    /// `gen_ai.provider.name`: `openai`, `anthropic`, `aws.bedrock`, …
    pub fn provider(mut self, provider: impl Into<Cow<'static, str>>) -> Self {
        self.provider = Some(provider.into());
        self
    }

    /// `gen_ai.request.model`: the model asked for.
    pub fn model(mut self, model: impl Into<Cow<'static, str>>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Each field from `self`, else from `other`.
    fn or<'a>(
        &'a self,
        other: Option<&'a LlmLabels>,
    ) -> (Option<&'a str>, Option<&'a str>, Option<&'a str>) {
        fn pick<'a>(
            a: &'a Option<Cow<'static, str>>,
            b: Option<&'a Option<Cow<'static, str>>>,
        ) -> Option<&'a str> {
            a.as_deref().or_else(|| b.and_then(|b| b.as_deref()))
        }
        (
            pick(&self.operation, other.map(|o| &o.operation)),
            pick(&self.provider, other.map(|o| &o.provider)),
            pick(&self.model, other.map(|o| &o.model)),
        )
    }
}

/// Token counts a handler knows (from a provider SDK, or its own count), put in the
/// response's extensions: they replace what the layer would read from the body.
///
/// ```
/// use tower_observe::llm::LlmUsage;
///
/// let usage = LlmUsage::provided(120, 48); // as the provider reported them
/// let guess = LlmUsage::estimated(120, 48); // counted by the handler
/// # let _ = (usage, guess);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LlmUsage {
    pub(crate) input: u64,
    pub(crate) output: u64,
    pub(crate) source: UsageSource,
}

impl LlmUsage {
    /// Counts the provider reported (`usage_source="provider"`).
    pub fn provided(input_tokens: u64, output_tokens: u64) -> Self {
        Self {
            input: input_tokens,
            output: output_tokens,
            source: UsageSource::Provider,
        }
    }

    /// Counts the handler estimated (`usage_source="estimated"`).
    pub fn estimated(input_tokens: u64, output_tokens: u64) -> Self {
        Self {
            input: input_tokens,
            output: output_tokens,
            source: UsageSource::Estimated,
        }
    }
}

/// The settings of a layer, shared by its services.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) side: Side,
    pub(crate) defaults: LlmLabels,
    pub(crate) providers: Option<Box<[Box<str>]>>,
    pub(crate) models: Option<Box<[Box<str>]>>,
    pub(crate) max_json_body: usize,
    pub(crate) token_usage: bool,
}

impl Settings {
    /// The operation, provider and model of a request, allow-lists applied.
    pub(crate) fn labels<'a>(
        &'a self,
        response: Option<&'a LlmLabels>,
        request: Option<&'a LlmLabels>,
    ) -> (&'a str, &'a str, &'a str) {
        let (op, provider, model) = match response {
            Some(r) => {
                let (o, p, m) = r.or(request);
                (o, p, m)
            }
            None => request.map_or((None, None, None), |r| r.or(None)),
        };
        let allow = |value: &'a str, list: &Option<Box<[Box<str>]>>| match list {
            Some(list) if !list.iter().any(|v| **v == *value) => OTHER,
            _ => value,
        };
        let op = op
            .or(self.defaults.operation.as_deref())
            .unwrap_or(DEFAULT_OPERATION);
        let provider = provider
            .or(self.defaults.provider.as_deref())
            .unwrap_or(OTHER);
        let model = model.or(self.defaults.model.as_deref()).unwrap_or(OTHER);
        (
            op,
            allow(provider, &self.providers),
            allow(model, &self.models),
        )
    }
}

/// `gen_ai.operation.name` when nothing says otherwise.
const DEFAULT_OPERATION: &str = "chat";

/// The largest JSON response copied to read its `usage` by default (256 KiB).
pub const DEFAULT_MAX_JSON_BODY: usize = 256 * 1024;

/// Records GenAI traffic: made by [`Observer::llm_server_layer`] (the service's own model
/// API) or [`Observer::llm_client_layer`] (calls to a model provider); see [`crate::llm`].
#[derive(Debug, Clone)]
#[must_use]
pub struct LlmLayer {
    pub(crate) observer: Observer,
    pub(crate) part: Arc<LlmPart>,
    pub(crate) settings: Settings,
}

impl LlmLayer {
    /// `gen_ai.operation.name` of requests that do not say (default `chat`).
    pub fn operation(mut self, operation: impl Into<Cow<'static, str>>) -> Self {
        self.settings.defaults.operation = Some(operation.into());
        self
    }

    /// `gen_ai.provider.name` of requests that do not say (default `_OTHER`).
    pub fn provider(mut self, provider: impl Into<Cow<'static, str>>) -> Self {
        self.settings.defaults.provider = Some(provider.into());
        self
    }

    /// `gen_ai.request.model` of requests that do not say (default `_OTHER`).
    pub fn model(mut self, model: impl Into<Cow<'static, str>>) -> Self {
        self.settings.defaults.model = Some(model.into());
        self
    }

    /// The providers labelled by name; any other is `_OTHER`. Without a list, every provider
    /// is labelled, up to the observer's label limit.
    pub fn allowed_providers<I, T>(mut self, providers: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        self.settings.providers = Some(providers.into_iter().map(|p| p.as_ref().into()).collect());
        self
    }

    /// The models labelled by name; any other is `_OTHER` (an allow-list for model names
    /// taken from requests). Without a list, every model is labelled, up to the observer's
    /// label limit.
    pub fn allowed_models<I, T>(mut self, models: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        self.settings.models = Some(models.into_iter().map(|m| m.as_ref().into()).collect());
        self
    }

    /// The largest JSON (non-streamed) response copied to read its `usage` (default
    /// [`DEFAULT_MAX_JSON_BODY`]); past it the copy stops and the tokens are not recorded. The
    /// body is passed on untouched either way.
    pub fn max_json_body(mut self, bytes: usize) -> Self {
        self.settings.max_json_body = bytes;
        self
    }

    /// Whether to record `gen_ai_client_token_usage` (default `true`). A gateway that puts
    /// both layers on the same traffic turns it off on one of them, so tokens are not counted
    /// twice; `/v1/stats` counts tokens on both sides either way.
    pub fn token_usage(mut self, record: bool) -> Self {
        self.settings.token_usage = record;
        self
    }
}

impl Observer {
    /// Records the GenAI requests a service serves (`gen_ai.server.*`, token usage); see
    /// [`crate::llm`].
    ///
    /// ```
    /// let observer = tower_observe::Observer::new();
    /// let layer = observer.llm_server_layer().provider("openai");
    /// // Router::new().route("/v1/chat/completions", post(chat)).layer(layer)
    /// # let _ = layer;
    /// ```
    pub fn llm_server_layer(&self) -> LlmLayer {
        self.llm_layer(Side::Server)
    }

    /// Records the GenAI calls a service makes to a model provider (`gen_ai.client.*`);
    /// see [`crate::llm`].
    ///
    /// ```
    /// let observer = tower_observe::Observer::new();
    /// let layer = observer.llm_client_layer().provider("openai");
    /// // tower::ServiceBuilder::new().layer(layer).service(http_client)
    /// # let _ = layer;
    /// ```
    pub fn llm_client_layer(&self) -> LlmLayer {
        self.llm_layer(Side::Client)
    }

    fn llm_layer(&self, side: Side) -> LlmLayer {
        let limit = self.max_label_sets();
        LlmLayer {
            observer: self.clone(),
            part: self.part(|| LlmPart::new(limit)),
            settings: Settings {
                side,
                defaults: LlmLabels::default(),
                providers: None,
                models: None,
                max_json_body: DEFAULT_MAX_JSON_BODY,
                token_usage: true,
            },
        }
    }
}
