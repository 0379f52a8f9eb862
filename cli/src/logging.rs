//! Logging setup shared by the verbs: tracing to a file or to stderr, with the level from
//! `--log-level`. Log records of libraries using the `log` crate (fuser) are captured too.

use std::fs::OpenOptions;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing_subscriber::EnvFilter;

/// Where log records go once [`init`] has run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogTarget {
    /// Appended to this file.
    File(PathBuf),
    /// Standard error.
    Stderr,
}

impl std::fmt::Display for LogTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogTarget::File(p) => write!(f, "{}", p.display()),
            LogTarget::Stderr => f.write_str("the log on stderr"),
        }
    }
}

/// Checks a `--log-level` value (clap value parser).
pub fn parse_level(text: &str) -> Result<String, String> {
    EnvFilter::try_new(text)
        .map(|_| text.to_string())
        .map_err(|e| format!("not a log level or filter: {e}"))
}

/// Opens `file` for appending, creating its directory. `None` on failure, with the reason.
pub fn open_log_file(file: &Path) -> Result<std::fs::File, String> {
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .map_err(|e| format!("{}: {e}", file.display()))
}

/// Installs the global subscriber: records at `level` go to `file` if given and it can be
/// opened, else to stderr (a warning then says why). Returns where they go.
pub fn init(level: &str, file: Option<&Path>) -> LogTarget {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let opened = file.map(|f| (f, open_log_file(f)));
    match opened {
        Some((path, Ok(f))) => {
            let installed = builder.with_ansi(false).with_writer(Arc::new(f)).try_init();
            if installed.is_ok() {
                return LogTarget::File(path.to_path_buf());
            }
            LogTarget::Stderr
        }
        Some((_, Err(why))) => {
            let _ = builder
                .with_ansi(std::io::stderr().is_terminal())
                .with_writer(std::io::stderr)
                .try_init();
            tracing::warn!("cannot open the log file ({why}); logging to stderr");
            LogTarget::Stderr
        }
        None => {
            let _ = builder
                .with_ansi(std::io::stderr().is_terminal())
                .with_writer(std::io::stderr)
                .try_init();
            LogTarget::Stderr
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_filters_are_checked() {
        for ok in ["info", "debug", "warn,cairn_fuse=trace"] {
            assert_eq!(parse_level(ok).unwrap(), ok);
        }
        assert!(parse_level("[[").is_err());
    }

    #[test]
    fn log_files_get_their_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a/b/mnt-x.log");
        open_log_file(&file).unwrap();
        assert!(file.exists());
        let blocked = dir.path().join("a/b/mnt-x.log/inside.log");
        assert!(open_log_file(&blocked).is_err());
    }
}
