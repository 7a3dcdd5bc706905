//! What every importer produces: a draft of a Candor config, each service as the keys it
//! maps to with the source line it came from, and a warning for each key of the source that
//! does not map. `write.rs` renders it as `candor.toml`.

use std::path::PathBuf;

/// The formats `candor import` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Procfile,
    Supervisord,
    Pm2,
    ProcessCompose,
    Compose,
    Systemd,
}

/// A Candor config being written from another tool's.
#[derive(Clone, Debug, Default)]
pub struct Draft {
    /// The file read (named in every comment and warning).
    pub source: PathBuf,
    /// Comments for the top of the output (without `# `).
    pub header: Vec<String>,
    /// `[daemon]` keys, if any map.
    pub daemon: Vec<(String, serde_json::Value)>,
    pub services: Vec<DraftService>,
    /// Keys of the source that do not map, in the order met.
    pub warnings: Vec<Warning>,
}

/// One `[services.NAME]` section.
#[derive(Clone, Debug, Default)]
pub struct DraftService {
    pub name: String,
    /// The source line the service was defined at (1-based), named in a comment above it.
    pub line: usize,
    /// Comments written above the section (without `# `): what was guessed, why `sh -c`.
    pub comments: Vec<String>,
    /// The section's keys in order, each a Candor key and its value (a JSON value rendered as
    /// TOML: strings, numbers, booleans, arrays, and objects as inline tables).
    pub keys: Vec<(String, serde_json::Value)>,
}

/// A key that does not map: printed as `warning: FILE:LINE: TEXT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    pub line: usize,
    /// "key `numprocs_start` is not supported (why); what to do".
    pub text: String,
}

impl Draft {
    pub fn warn(&mut self, line: usize, text: impl Into<String>) {
        self.warnings.push(Warning {
            line,
            text: text.into(),
        });
    }
}

impl DraftService {
    pub fn new(name: impl Into<String>, line: usize) -> Self {
        Self {
            name: name.into(),
            line,
            ..Self::default()
        }
    }

    pub fn set(&mut self, key: &str, value: impl Into<serde_json::Value>) {
        self.keys.push((key.to_string(), value.into()));
    }
}
