//! Where logs go and how they look, as the ngrok agent's `log`,
//! `log_level` and `log_format` say: stdout, stderr, a file, or nowhere;
//! logfmt, JSON or terminal lines.

use std::fmt;
use std::io::IsTerminal;
use std::path::PathBuf;

use gangway_config::agent_file::{AgentFile, LogFormat};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Logging flags, as ngrok's agent spells them; every command takes them.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct LogArgs {
    /// Where logs go: `stdout`, `stderr`, `false` or a file path
    /// [default: stderr; none while the console UI is on].
    #[arg(long, global = true, value_name = "DEST")]
    pub log: Option<String>,
    /// `crit`, `error`, `warn`, `info`, `debug`, or a tracing filter such as
    /// `gangway_edge=debug` [default: info].
    #[arg(long, global = true, env = "GANGWAY_LOG", value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// `logfmt`, `json` or `term` [default: term].
    #[arg(long, global = true, value_name = "FORMAT")]
    pub log_format: Option<String>,
}

/// Where log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Stdout,
    Stderr,
    File(PathBuf),
    Off,
}

impl Destination {
    /// `stdout`, `stderr`, `false` (none) or a file path.
    pub fn parse(s: &str) -> Destination {
        match s.trim() {
            "stdout" => Destination::Stdout,
            "stderr" => Destination::Stderr,
            "false" | "" => Destination::Off,
            path => Destination::File(PathBuf::from(path)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Logfmt,
    Json,
    Term,
}

impl Format {
    pub fn parse(s: &str) -> Result<Format, String> {
        match s.trim() {
            "logfmt" => Ok(Format::Logfmt),
            "json" => Ok(Format::Json),
            "term" => Ok(Format::Term),
            other => Err(format!(
                "log format {other:?} is not one of logfmt, json, term"
            )),
        }
    }
}

/// ngrok's level names (`crit`, `warn`, ...) or any tracing filter
/// (`info`, `gangway_edge=debug`).
fn filter(level: &str) -> tracing_subscriber::EnvFilter {
    let level = match level.trim() {
        "crit" => "error",
        other => other,
    };
    tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
}

impl From<LogFormat> for Format {
    fn from(f: LogFormat) -> Format {
        match f {
            LogFormat::Logfmt => Format::Logfmt,
            LogFormat::Json => Format::Json,
            LogFormat::Term => Format::Term,
        }
    }
}

/// Sets logging up from the flags, then the agent's config file (`None`
/// for the server), then the defaults: info on stderr, or nothing while
/// the console UI owns stdout (which it keeps even when asked for).
pub fn init_from(logs: &LogArgs, file: Option<&AgentFile>, console: bool) -> Result<(), String> {
    let dest = logs
        .log
        .as_deref()
        .or(file.and_then(|f| f.log.as_deref()))
        .map(Destination::parse)
        .unwrap_or(if console {
            Destination::Off
        } else {
            Destination::Stderr
        });
    let dest = if console && dest == Destination::Stdout {
        Destination::Off
    } else {
        dest
    };
    let level = logs
        .log_level
        .as_deref()
        .or(file.and_then(|f| f.log_level.as_deref()))
        .unwrap_or("info");
    let format = match logs.log_format.as_deref() {
        Some(f) => Format::parse(f)?,
        None => file
            .and_then(|f| f.log_format)
            .map(Format::from)
            .unwrap_or(Format::Term),
    };
    init(&dest, level, format)
}

/// Installs the global subscriber. A file that cannot be opened is an
/// error; everything else has a fallback.
pub fn init(dest: &Destination, level: &str, format: Format) -> Result<(), String> {
    let writer = match dest {
        Destination::Off => return Ok(()),
        Destination::Stdout => tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stdout),
        Destination::Stderr => tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr),
        Destination::File(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("log file {}: {e}", path.display()))?;
            tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::sync::Mutex::new(file))
        }
    };
    let ansi = match dest {
        Destination::Stdout => std::io::stdout().is_terminal(),
        Destination::Stderr => std::io::stderr().is_terminal(),
        _ => false,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(level))
        .with_writer(writer);
    let _ = match format {
        Format::Term => builder.with_ansi(ansi).try_init(),
        Format::Json => builder.json().try_init(),
        Format::Logfmt => builder.event_format(Logfmt).try_init(),
    };
    Ok(())
}

/// `t=... lvl=info obj=gangway_agent::run msg="..." key=value`.
struct Logfmt;

impl<S, N> FormatEvent<S, N> for Logfmt
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let lvl = match *meta.level() {
            Level::ERROR => "eror",
            Level::WARN => "warn",
            Level::INFO => "info",
            Level::DEBUG => "dbug",
            Level::TRACE => "trce",
        };
        let now = chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, false);
        write!(w, "t={now} lvl={lvl} obj={}", meta.target())?;
        let mut fields = LogfmtFields(String::new());
        event.record(&mut fields);
        writeln!(w, "{}", fields.0)
    }
}

struct LogfmtFields(String);

impl LogfmtFields {
    fn push(&mut self, key: &str, value: &str) {
        let key = if key == "message" { "msg" } else { key };
        let plain = !value.is_empty()
            && value
                .chars()
                .all(|c| !c.is_whitespace() && c != '"' && c != '=' && !c.is_control());
        if plain {
            self.0.push_str(&format!(" {key}={value}"));
        } else {
            self.0.push_str(&format!(" {key}={value:?}"));
        }
    }
}

impl tracing::field::Visit for LogfmtFields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.push(field.name(), value);
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        self.push(field.name(), &format!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_and_formats_parse_like_ngroks() {
        assert_eq!(Destination::parse("stdout"), Destination::Stdout);
        assert_eq!(Destination::parse("false"), Destination::Off);
        assert_eq!(
            Destination::parse("/tmp/a.log"),
            Destination::File("/tmp/a.log".into())
        );
        assert_eq!(Format::parse("json"), Ok(Format::Json));
        assert!(Format::parse("xml").unwrap_err().contains("logfmt"));
    }

    #[test]
    fn logfmt_quotes_only_what_needs_it() {
        let mut f = LogfmtFields(String::new());
        f.push("message", "tunnel started");
        f.push("url", "https://a.example");
        f.push("empty", "");
        assert_eq!(
            f.0,
            " msg=\"tunnel started\" url=https://a.example empty=\"\""
        );
    }
}
