//! Logs as runc writes them: one line per event to `--log FILE` (else stderr), as
//! logrus text (`time="…" level=error msg="…"`) or JSON
//! (`{"level":"error","msg":"…","time":"…"}`). containerd's runc shim reads the last
//! `error` line of the JSON log to explain a failed command, so errors must get there.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use chrono::{SecondsFormat, Utc};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Writes each event as one line in runc's format.
pub struct RuncLog {
    format: LogFormat,
    out: Mutex<Box<dyn Write + Send>>,
}

#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.rest, " {}={}", field.name(), value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.rest, " {}={:?}", field.name(), value);
        }
    }
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// One log line (without the newline).
pub fn format_line(format: LogFormat, level: &Level, msg: &str, time: &str) -> String {
    let level = level_name(level);
    match format {
        LogFormat::Json => serde_json::json!({"level": level, "msg": msg, "time": time}).to_string(),
        LogFormat::Text => {
            format!("time={} level={level} msg={}", serde_json::Value::from(time), serde_json::Value::from(msg))
        }
    }
}

impl<S: Subscriber> Layer<S> for RuncLog {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let msg = format!("{}{}", fields.message, fields.rest);
        let time = Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true);
        let line = format_line(self.format, event.metadata().level(), &msg, &time);
        if let Ok(mut out) = self.out.lock() {
            // A log that cannot be written must not fail the command it describes.
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }
}

/// Installs the global subscriber. Without `--debug`: this runtime's warnings and
/// every crate's errors; with it: everything down to debug.
pub fn init(log: Option<&Path>, format: LogFormat, debug: bool) -> std::io::Result<()> {
    let out: Box<dyn Write + Send> = match log {
        Some(path) => Box::new(std::fs::OpenOptions::new().create(true).append(true).open(path)?),
        None => Box::new(std::io::stderr()),
    };
    let filter = if debug {
        Targets::new().with_default(Level::DEBUG)
    } else {
        Targets::new()
            .with_default(Level::ERROR)
            .with_target("openshell_runtime", Level::WARN)
            .with_target("openshell_sandbox", Level::WARN)
    };
    let layer = RuncLog { format, out: Mutex::new(out) };
    // Only fails if a subscriber is already set, which main never does twice.
    let _ = tracing_subscriber::registry().with(layer.with_filter(filter)).try_init();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_are_what_containerd_parses() {
        let line = format_line(LogFormat::Json, &Level::ERROR, "bad \"policy\"\nline 2", "2024-01-02T03:04:05Z");
        let v: serde_json::Value = serde_json::from_str(&line).expect("json");
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "bad \"policy\"\nline 2");
        assert_eq!(v["time"], "2024-01-02T03:04:05Z");
        assert!(!line.contains('\n'), "one line per event");
    }

    #[test]
    fn text_lines_are_logrus_style() {
        let line = format_line(LogFormat::Text, &Level::WARN, "x y", "2024-01-02T03:04:05Z");
        assert_eq!(line, r#"time="2024-01-02T03:04:05Z" level=warning msg="x y""#);
    }
}
