//! Slack incoming webhooks: a fallback `text` and Block Kit `blocks`.

use serde_json::{json, Value};

use super::format::{summary, title, value_text};
use super::http::{agent, post_json, root_setters, PrivateRoots, Target};
use super::{settings_setters, Deliver, DeliverContext, SendError, Settings};
use crate::alerts::{AlertEvent, EventStatus, Severity};

/// Posts each notification to a Slack incoming webhook: a header with the status, the summary
/// and description, the value and severity, links, and the trace IDs of recent failed
/// requests. `text` carries the same in one line, for notifications and old clients.
///
/// User text is escaped as Slack asks (`&`, `<`, `>`). The webhook URL is a secret: only
/// `https://hooks.slack.com:443` is ever shown.
///
/// ```
/// use tower_observe::alerts::notify::{Channel, Slack};
///
/// let channel: Channel = Slack::new("https://hooks.slack.com/services/T000/B000/XXXX")
///     .name("ops-slack")
///     .into();
/// assert_eq!(channel.kind(), "slack");
/// assert!(!format!("{channel:?}").contains("XXXX"));
/// ```
#[derive(Debug, Clone)]
pub struct Slack {
    pub(crate) settings: Settings,
    target: Target,
    roots: PrivateRoots,
}

impl Slack {
    /// A channel posting to the incoming webhook `webhook_url`.
    pub fn new(webhook_url: impl Into<String>) -> Self {
        Slack {
            settings: Settings::default(),
            target: Target::new(webhook_url.into()),
            roots: PrivateRoots::default(),
        }
    }

    root_setters!(
        "for `https://`, instead of Mozilla's roots (the channel talks to one server, whose root \
         is all it needs),"
    );

    settings_setters!();

    /// The field that cannot be used, and why.
    pub(crate) fn validate(&self) -> Result<(), (&'static str, String)> {
        self.target.check().map_err(|e| ("webhook_url", e))?;
        super::http::check_tls(&self.target, &self.roots)
    }

    pub(crate) fn into_deliver(self, _ctx: &DeliverContext<'_>) -> SlackDeliver {
        SlackDeliver {
            agent: agent(&self.settings, &self.target, &self.roots),
            target: self.target,
        }
    }
}

pub(crate) struct SlackDeliver {
    agent: Result<ureq::Agent, SendError>,
    target: Target,
}

impl Deliver for SlackDeliver {
    fn send(&mut self, event: &AlertEvent) -> Result<(), SendError> {
        let body = serde_json::to_vec(&message(event))
            .map_err(|_| SendError::permanent("could not encode the message"))?;
        post_json(&self.agent, &self.target, &[], &body)
    }
}

/// Escapes user text for Slack: `&`, `<` and `>` only.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// A `<url|title>` link; `|` cannot be escaped in either part, so it is encoded in the URL
/// and replaced in the title.
fn link(title: &str, url: &str) -> String {
    format!(
        "<{}|{}>",
        escape(url).replace('|', "%7C"),
        escape(title).replace('|', "¦")
    )
}

/// Cuts `text` to at most `max` characters, ending with `…` when cut.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn emoji(event: &AlertEvent) -> &'static str {
    match (event.status, event.severity) {
        (EventStatus::Resolved, _) => ":white_check_mark:",
        (EventStatus::Firing, Severity::Critical) => ":rotating_light:",
        (EventStatus::Firing, Severity::Warning) => ":warning:",
        (EventStatus::Firing, Severity::Info) => ":information_source:",
    }
}

/// The message: `text` and `blocks`.
pub(crate) fn message(event: &AlertEvent) -> Value {
    let summary = summary(event);
    let text = format!("{} {}: {}", emoji(event), title(event), summary);
    let mut main = format!("*{}*", escape(&summary));
    if let Some(description) = event
        .annotations
        .get("description")
        .filter(|d| !d.is_empty())
    {
        main.push('\n');
        main.push_str(&escape(description));
    }
    let mut blocks = vec![
        json!({
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": cut(&format!("{} {}", emoji(event), title(event)), 150),
                "emoji": true,
            },
        }),
        json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": cut(&main, 3000)},
            "fields": [
                {"type": "mrkdwn", "text": format!("*Status*\n{}", event.status.as_str())},
                {"type": "mrkdwn", "text": format!("*Severity*\n{}", event.severity.as_str())},
                {"type": "mrkdwn", "text": format!("*Value*\n{}", value_text(event))},
                {"type": "mrkdwn", "text": format!("*Alert*\n{}", cut(&escape(&event.rule), 1900))},
            ],
        }),
    ];
    let mut links: Vec<String> = event.links.iter().map(|(t, u)| link(t, u)).collect();
    if !event.generator_url.is_empty()
        && !event.links.iter().any(|(_, u)| *u == event.generator_url)
    {
        links.push(link("Source", &event.generator_url));
    }
    if !links.is_empty() {
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": cut(&format!("*Links*\n{}", links.join(" · ")), 3000)},
        }));
    }
    if !event.failed_requests.is_empty() {
        let ids: Vec<String> = event
            .failed_requests
            .iter()
            .take(10)
            .map(|r| match &r.view_url {
                Some(url) => format!("<{}|`{}`>", escape(url), escape(&r.trace_id)),
                None => format!("`{}`", escape(&r.trace_id)),
            })
            .collect();
        blocks.push(json!({
            "type": "context",
            "elements": [{
                "type": "mrkdwn",
                "text": cut(&format!("Recent failed requests (trace IDs): {}", ids.join(" ")), 3000),
            }],
        }));
    }
    json!({ "text": cut(&escape(&text), 3000), "blocks": blocks })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_slack_escapes_user_text() {
        assert_eq!(escape("a < b && c > d"), "a &lt; b &amp;&amp; c &gt; d");
        assert_eq!(
            link("x|y", "https://e.com/?a=1&b=<2>|"),
            "<https://e.com/?a=1&amp;b=&lt;2&gt;%7C|x¦y>"
        );
        assert_eq!(cut("abcdef", 4), "abc…");
    }

    #[test]
    fn notify_slack_debug_is_redacted() {
        let slack = Slack::new("https://hooks.slack.com/services/T0/B0/very-secret");
        let shown = format!("{slack:?}");
        assert!(
            !shown.contains("very-secret") && shown.contains("hooks.slack.com"),
            "{shown}"
        );
    }
}
