//! Annotation templates: the part of Prometheus' template language alerts use, so one
//! annotation reads the same from the in-process engine and from Prometheus.
//!
//! `{{ $value }}`, `{{ $labels.name }}`, and the pipes `humanize`, `humanizePercentage`,
//! `humanizeDuration`, e.g. `{{ $value | humanizePercentage }}`.

use std::fmt::Write as _;

use super::promql::Labels;

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Value(Vec<Pipe>),
    Label(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Pipe {
    Humanize,
    Percentage,
    Duration,
}

/// A parsed annotation template.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Template(Vec<Piece>);

impl Template {
    /// Parses `text`; the error says what is wrong.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| "a `{{` is not closed by `}}`".to_owned())?;
            let action = after[..close]
                .trim()
                .trim_start_matches('-')
                .trim_end_matches('-')
                .trim();
            pieces.push(parse_action(action)?);
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        Ok(Self(pieces))
    }

    /// The text, with `value` and `labels` filled in.
    pub(crate) fn render(&self, value: f64, labels: &Labels) -> String {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Label(name) => out.push_str(labels.get(name).map_or("", String::as_str)),
                Piece::Value(pipes) => match pipes.last() {
                    None => out.push_str(&go_float(value)),
                    Some(Pipe::Humanize) => out.push_str(&humanize(value)),
                    Some(Pipe::Percentage) => {
                        let _ = write!(out, "{}%", format_g4(value * 100.0));
                    }
                    Some(Pipe::Duration) => out.push_str(&humanize_duration(value)),
                },
            }
        }
        out
    }
}

fn parse_action(action: &str) -> Result<Piece, String> {
    let mut parts = action.split('|').map(str::trim);
    let head = parts.next().unwrap_or_default();
    let pipes = parts
        .map(|p| match p {
            "humanize" => Ok(Pipe::Humanize),
            "humanizePercentage" => Ok(Pipe::Percentage),
            "humanizeDuration" => Ok(Pipe::Duration),
            other => Err(format!(
                "unknown function {other:?} (humanize, humanizePercentage, humanizeDuration)"
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if head == "$value" || head == ".Value" {
        return Ok(Piece::Value(pipes));
    }
    let label = head
        .strip_prefix("$labels.")
        .or_else(|| head.strip_prefix(".Labels."));
    match label {
        Some(name) if !name.is_empty() && pipes.is_empty() => Ok(Piece::Label(name.to_owned())),
        Some(_) => Err(format!("{head:?}: labels take no functions")),
        None => Err(format!("{head:?} is not `$value` or `$labels.<name>`")),
    }
}

/// A float as Go's `%v` prints it (shortest representation; exponent outside 1e-4..1e21).
fn go_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let abs = v.abs();
    if abs != 0.0 && !(1e-4..1e21).contains(&abs) {
        let s = format!("{v:e}");
        // Go writes the exponent with a sign and at least two digits.
        match s.split_once('e') {
            Some((m, e)) => {
                let (sign, digits) = match e.strip_prefix('-') {
                    Some(d) => ('-', d),
                    None => ('+', e),
                };
                format!("{m}e{sign}{digits:0>2}")
            }
            None => s,
        }
    } else {
        format!("{v}")
    }
}

/// Go's `%.4g`: four significant digits, trailing zeros removed.
pub(crate) fn format_g4(v: f64) -> String {
    if !v.is_finite() {
        return go_float(v);
    }
    if v == 0.0 {
        return "0".into();
    }
    let sci = format!("{v:.3e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..4).contains(&exp) {
        let m = trim_zeros(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{m}e{sign}{:02}", exp.abs());
    }
    let decimals = (3 - exp).max(0) as usize;
    trim_zeros(&format!("{v:.decimals$}"))
}

fn trim_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s.to_owned()
    }
}

/// Prometheus' `humanize`: SI prefixes and four significant digits.
fn humanize(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format_g4(v);
    }
    let abs = v.abs();
    if abs >= 1.0 {
        let mut x = v;
        for prefix in ["", "k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if x.abs() < 1000.0 || prefix == "Y" {
                return format!("{}{prefix}", format_g4(x));
            }
            x /= 1000.0;
        }
    }
    let mut x = v;
    for prefix in ["", "m", "u", "n", "p", "f", "a", "z", "y"] {
        if x.abs() >= 1.0 || prefix == "y" {
            return format!("{}{prefix}", format_g4(x));
        }
        x *= 1000.0;
    }
    format_g4(v)
}

/// Prometheus' `humanizeDuration` of seconds: `1d 2h 3m 4s`, or `123.4ms` below a second.
fn humanize_duration(v: f64) -> String {
    if !v.is_finite() {
        return format_g4(v);
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        let total = v.abs();
        let seconds = total as u64;
        let (days, hours, minutes) = (seconds / 86_400, seconds / 3600 % 24, seconds / 60 % 60);
        let secs = total - (seconds - seconds % 60) as f64;
        let mut out = String::from(sign);
        if days > 0 {
            let _ = write!(out, "{days}d {hours}h {minutes}m {}s", secs as u64);
        } else if hours > 0 {
            let _ = write!(out, "{hours}h {minutes}m {}s", secs as u64);
        } else if minutes > 0 {
            let _ = write!(out, "{minutes}m {}s", secs as u64);
        } else {
            let _ = write!(out, "{}s", format_g4(secs));
        }
        return out;
    }
    if v == 0.0 {
        return "0s".into();
    }
    let mut x = v;
    for prefix in ["", "m", "u", "n", "p", "f", "a", "z", "y"] {
        if x.abs() >= 1.0 || prefix == "y" {
            return format!("{}{prefix}s", format_g4(x));
        }
        x *= 1000.0;
    }
    format_g4(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_prometheus() {
        let mut labels = Labels::new();
        labels.insert("http_route".into(), "/a".into());
        let t = Template::parse(
            "{{ $labels.http_route }}: {{ $value | humanizePercentage }} ({{$value}})",
        )
        .unwrap();
        assert_eq!(
            t.render(0.13043478260869565, &labels),
            "/a: 13.04% (0.13043478260869565)"
        );
        assert_eq!(format_g4(50.0), "50");
        assert_eq!(format_g4(123456.0), "1.235e+05");
        assert_eq!(format_g4(0.000012), "1.2e-05");
        assert_eq!(humanize(1234.0), "1.234k");
        assert_eq!(humanize(0.5), "500m");
        assert_eq!(humanize_duration(0.25), "250ms");
        assert_eq!(humanize_duration(1.5), "1.5s");
        assert_eq!(humanize_duration(3725.0), "1h 2m 5s");
        assert_eq!(go_float(1e-5), "1e-05");
    }

    #[test]
    fn bad_templates_say_why() {
        assert!(Template::parse("{{ $value ").is_err());
        assert!(Template::parse("{{ $value | shout }}")
            .unwrap_err()
            .contains("shout"));
        assert!(Template::parse("{{ .Foo }}").is_err());
    }
}
