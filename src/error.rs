//! The library's one error type. Every variant says what was wrong and where, so the
//! binary can print it as is and exit non-zero.

use std::path::PathBuf;

/// An error and its causes, each said once: a cause whose text the message already holds
/// (an OS error printed beside its path by the error above it) is not repeated.
pub fn describe_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A record in an input file is malformed: names the file, line (1-based) and field.
    #[error("{}:{line}: field `{field}`: {message}", path.display())]
    Record {
        path: PathBuf,
        line: usize,
        field: String,
        message: String,
    },

    /// A whole input is unusable (empty corpus, unknown split, ...).
    #[error("{}: {message}", path.display())]
    Input { path: PathBuf, message: String },

    /// A task spec is invalid.
    #[error("task spec {}: {message}", path.display())]
    Spec { path: PathBuf, message: String },

    /// A model directory or reference is unusable.
    #[error("model {location}: {message}")]
    Model { location: String, message: String },

    /// The command line asked for something that cannot be done.
    #[error("{0}")]
    Usage(String),

    /// The Hugging Face hub (or its offline cache) could not provide a file.
    #[error("hub {repo}: {message}")]
    Hub { repo: String, message: String },

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// A chat prompt for a model that has no chat template; the command that hit it
    /// names its own flag for plain-text prompts (`hint`).
    #[error("model {model}: no chat template (neither tokenizer_config.json nor the GGUF has one){hint}")]
    NoChatTemplate { model: String, hint: String },

    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),

    #[error("{context}: {source}")]
    Polars {
        context: String,
        #[source]
        source: polars::error::PolarsError,
    },

    /// A remote endpoint failed (after the retries the policy allows).
    #[error("{0}")]
    Remote(String),

    /// A helper process (e.g. the onnxruntime reference in `bench-embed`) failed.
    #[error("{0}")]
    External(String),

    /// A metric rejected its input (or could not score it).
    #[error("{0}")]
    Metric(#[from] crate::metrics::MetricError),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn record(
        path: impl Into<PathBuf>,
        line: usize,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::Record {
            path: path.into(),
            line,
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn input(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Input {
            path: path.into(),
            message: message.into(),
        }
    }

    pub fn model(location: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Model {
            location: location.into(),
            message: message.into(),
        }
    }

    /// Names the flag that sends plain-text prompts, for a model without a chat template.
    pub fn with_completion_flag(self, flag: &str) -> Self {
        match self {
            Error::NoChatTemplate { model, .. } => Error::NoChatTemplate {
                model,
                hint: format!(": send the prompt as plain text with {flag}"),
            },
            other => other,
        }
    }

    /// Exit code for the binary: 2 for bad input or usage (the user can fix it),
    /// 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Record { .. }
            | Error::Input { .. }
            | Error::Spec { .. }
            | Error::Model { .. }
            | Error::Usage(_)
            | Error::Hub { .. }
            | Error::Tokenizer(_)
            | Error::NoChatTemplate { .. } => 2,
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => 2,
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::InvalidData => 2,
            // Bad data or settings handed to a metric; a numerical breakdown is not.
            Error::Metric(e) => match e {
                crate::metrics::MetricError::NumericalFailure { .. } => 1,
                _ => 2,
            },
            _ => 1,
        }
    }
}
