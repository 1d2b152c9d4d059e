//! Where the daemons' log lines go and how they look: stderr, filtered by `PORTCULLIS_LOG`
//! (`info` by default), as text for people or as JSON Lines for journald and log shippers.
//!
//! Colour only where someone is looking: a log written to a file or to journald is read by
//! tools that show escape sequences as garbage (`^[[32m INFO^[[0m`), and `NO_COLOR` (any
//! value but empty, <https://no-color.org>) turns it off even on a terminal.

use std::io::IsTerminal as _;

use clap::{Args, ValueEnum};

/// The log format a daemon writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One line of text per event: time, level, module, message.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message` and the event's
    /// other fields, for journald, Loki, Elasticsearch and the like.
    Json,
}

/// The daemons' logging flags.
#[derive(Debug, Clone, Args)]
pub struct LogOpts {
    /// How log lines are written to stderr: `text` (coloured only on a terminal, never with
    /// NO_COLOR set) or `json` (one object a line, with level and message fields). The level
    /// comes from PORTCULLIS_LOG (default info; e.g. `PORTCULLIS_LOG=debug` or
    /// `PORTCULLIS_LOG=info,portcullis_gateway=debug`).
    #[arg(
        long,
        value_enum,
        env = "PORTCULLIS_LOG_FORMAT",
        default_value_t = LogFormat::Text,
        value_name = "FORMAT"
    )]
    pub log_format: LogFormat,
}

/// Log to stderr in `format`, at `PORTCULLIS_LOG`'s levels or `default_level`.
pub fn init(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PORTCULLIS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // `try_init`: a second call (tests, the quickstart) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(colour(
                std::io::stderr().is_terminal(),
                std::env::var_os("NO_COLOR").as_deref(),
            ))
            .try_init(),
        LogFormat::Json => builder
            .json()
            // `message` at the top level beside `level`, as shippers expect; spans carry
            // nothing the daemons log.
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
}

/// Whether text logs are coloured: on a terminal, unless `NO_COLOR` is set to something.
fn colour(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(colour(true, None));
        assert!(
            colour(true, Some(OsStr::new(""))),
            "an empty NO_COLOR is unset"
        );
        assert!(!colour(true, Some(OsStr::new("1"))));
        assert!(!colour(false, None), "a file or journald gets no escapes");
    }
}
