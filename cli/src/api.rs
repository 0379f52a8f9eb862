//! Plumbing between the admin verbs and `cairnd`: which daemon to talk to, with which
//! credentials, one call at a time on a small runtime, and how results and errors reach
//! the terminal (text for people, JSON with `--json`) and the exit code.
//!
//! Exit codes: 0 success; 1 the daemon refused, could not be reached, or the user said no;
//! 2 bad arguments.

use std::future::Future;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use cairn_api::{ApiError, Client, Endpoint, SOCKET_NAME};
use serde::Serialize;

/// `--json` answer of a change: `{"ok":true,"message":...}` or `{"ok":false,"error":...}`.
#[derive(Serialize)]
struct Verdict<'a> {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

impl Verdict<'_> {
    fn line(&self) -> String {
        // Serialising two strings and a bool cannot fail; an empty object is the fallback.
        let text = serde_json::to_string(self).unwrap_or_else(|_| "{}".to_string());
        format!("{text}\n")
    }
}

/// The file in the state directory holding the pool secret (sent as a bearer token on
/// configuration changes over TCP).
pub const POOL_SECRET_FILE: &str = "pool-secret";

/// What every admin verb needs from the global flags.
#[derive(Clone, Debug)]
pub struct Ctx {
    /// Where `cairnd` listens.
    pub endpoint: Endpoint,
    /// The state directory (for the pool secret).
    pub state_dir: PathBuf,
    /// `--json`.
    pub json: bool,
    /// `--yes` or `--mode=script`: never ask.
    pub assume_yes: bool,
}

impl Ctx {
    /// The context for the global flags.
    pub fn new(server: Option<&str>, state_dir: &Path, json: bool, assume_yes: bool) -> Ctx {
        Ctx {
            endpoint: resolve_endpoint(server, state_dir),
            state_dir: state_dir.to_path_buf(),
            json,
            assume_yes,
        }
    }

    /// A client for one call. `admin` calls (changes) over TCP carry the pool secret when
    /// this host has one; over the Unix socket the daemon trusts the local root user.
    pub fn client(&self, admin: bool) -> Client {
        let client = Client::new(self.endpoint.clone());
        match (&self.endpoint, admin) {
            (Endpoint::Tcp(_), true) => match read_secret(&self.state_dir) {
                Some(secret) => client.with_token(secret),
                None => client,
            },
            _ => client,
        }
    }

    /// Runs `call` with a client on a current-thread runtime.
    pub fn run<T, F, Fut>(&self, admin: bool, call: F) -> Result<T, CmdError>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CmdError::Failed(format!("cannot start a runtime: {e}")))?;
        let client = self.client(admin);
        rt.block_on(call(client)).map_err(CmdError::Api)
    }

    /// Asks `question` and waits for y/n, only when stdin is a terminal and neither
    /// `--yes` nor `--mode=script` was given; otherwise the answer is yes.
    pub fn confirm(&self, question: &str) -> bool {
        if self.assume_yes || !std::io::stdin().is_terminal() {
            return true;
        }
        // On stderr: with --json stdout carries nothing but JSON.
        let mut err = std::io::stderr();
        let _ = write!(err, "{question} Do you want to continue? (y/n) ");
        let _ = err.flush();
        let mut answer = String::new();
        if std::io::stdin().lock().read_line(&mut answer).is_err() {
            return false;
        }
        is_yes(&answer)
    }
}

/// `y` or `yes`, any case, surrounding blanks ignored.
pub fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// `--server` if given; else the local socket if it exists; else `127.0.0.1:24007`.
pub fn resolve_endpoint(server: Option<&str>, state_dir: &Path) -> Endpoint {
    if let Some(s) = server {
        return Endpoint::parse(s);
    }
    let socket = state_dir.join(SOCKET_NAME);
    if socket.exists() {
        Endpoint::Unix(socket)
    } else {
        Endpoint::Tcp(format!("127.0.0.1:{}", cairn_api::DEFAULT_PORT))
    }
}

/// The pool secret, if `<state-dir>/pool-secret` is readable and not empty.
pub fn read_secret(state_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(state_dir.join(POOL_SECRET_FILE)).ok()?;
    let secret = text.trim();
    (!secret.is_empty()).then(|| secret.to_string())
}

/// What a verb produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    /// Printed on stdout as is (a rendering, or pretty JSON).
    Print(String),
    /// A change succeeded: `text` for people; `message` goes into `{"ok":true,...}` with
    /// `--json`.
    Done {
        /// The line people read.
        text: String,
        /// The daemon's message (or `text`).
        message: String,
    },
}

impl Output {
    /// A change whose human line is `text` and whose daemon message was `message`.
    pub fn done(text: impl Into<String>, message: &str) -> Output {
        let text = text.into();
        let message = if message.trim().is_empty() {
            text.clone()
        } else {
            message.trim().to_string()
        };
        Output::Done { text, message }
    }
}

/// Why a verb failed.
#[derive(Debug)]
pub enum CmdError {
    /// The call failed (unreachable daemon, refusal, bad answer).
    Api(ApiError),
    /// A wrong argument found after parsing (exit 2).
    Usage(String),
    /// Something else; the message is shown like a daemon's.
    Failed(String),
}

impl From<ApiError> for CmdError {
    fn from(e: ApiError) -> CmdError {
        CmdError::Api(e)
    }
}

/// Pretty JSON of an API value.
pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Output, CmdError> {
    serde_json::to_string_pretty(value)
        .map(|s| Output::Print(format!("{s}\n")))
        .map_err(|e| CmdError::Failed(format!("cannot encode JSON: {e}")))
}

/// The message shown for a failed call, without the command label for an unreachable
/// daemon (that message names the daemon itself).
pub fn error_message(e: &ApiError) -> (bool, String) {
    match e {
        ApiError::Connect { .. } => (false, format!("{e}; is it running?")),
        ApiError::Timeout { .. } => (false, format!("{e}; is it overloaded or stuck?")),
        ApiError::Refused { message, .. } => (true, message.clone()),
        ApiError::Protocol { .. } => (true, e.to_string()),
    }
}

/// Where and how the outcome of a verb is printed: returns the exit code and the text for
/// stdout and stderr (separate from the printing itself so it can be tested).
pub fn outcome(label: &str, json: bool, result: Result<Output, CmdError>) -> (u8, String, String) {
    match result {
        Ok(Output::Print(text)) => (0, ensure_newline(text), String::new()),
        Ok(Output::Done { text, message }) => {
            if json {
                let v = Verdict {
                    ok: true,
                    message: Some(&message),
                    error: None,
                };
                (0, v.line(), String::new())
            } else {
                (0, ensure_newline(text), String::new())
            }
        }
        Err(CmdError::Usage(msg)) => (2, String::new(), format!("{label}: {msg}\n")),
        Err(e) => {
            let (labelled, msg) = match &e {
                CmdError::Api(api) => error_message(api),
                CmdError::Failed(m) | CmdError::Usage(m) => (true, m.clone()),
            };
            if json {
                let v = Verdict {
                    ok: false,
                    message: None,
                    error: Some(&msg),
                };
                (1, v.line(), String::new())
            } else if labelled {
                (1, String::new(), format!("{label}: failed: {msg}\n"))
            } else {
                (1, String::new(), format!("{msg}\n"))
            }
        }
    }
}

/// Prints the outcome of a verb and returns its exit code.
pub fn finish(label: &str, json: bool, result: Result<Output, CmdError>) -> ExitCode {
    let (code, out, err) = outcome(label, json, result);
    if !out.is_empty() {
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(out.as_bytes());
        let _ = stdout.flush();
    }
    if !err.is_empty() {
        let _ = std::io::stderr().write_all(err.as_bytes());
    }
    ExitCode::from(code)
}

fn ensure_newline(mut text: String) -> String {
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_defaults_to_the_local_socket_when_it_exists() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            resolve_endpoint(None, dir.path()),
            Endpoint::Tcp("127.0.0.1:24007".into())
        );
        std::fs::write(dir.path().join(SOCKET_NAME), b"").unwrap();
        assert_eq!(
            resolve_endpoint(None, dir.path()),
            Endpoint::Unix(dir.path().join(SOCKET_NAME))
        );
        assert_eq!(
            resolve_endpoint(Some("node2"), dir.path()),
            Endpoint::Tcp("node2:24007".into())
        );
        assert_eq!(
            resolve_endpoint(Some("node2:9000"), dir.path()),
            Endpoint::Tcp("node2:9000".into())
        );
        assert_eq!(
            resolve_endpoint(Some("/run/cairnd.sock"), dir.path()),
            Endpoint::Unix("/run/cairnd.sock".into())
        );
    }

    #[test]
    fn the_pool_secret_is_read_trimmed_when_present() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_secret(dir.path()), None);
        std::fs::write(dir.path().join(POOL_SECRET_FILE), "  \n").unwrap();
        assert_eq!(read_secret(dir.path()), None);
        std::fs::write(dir.path().join(POOL_SECRET_FILE), "s3cret\n").unwrap();
        assert_eq!(read_secret(dir.path()).as_deref(), Some("s3cret"));
    }

    #[test]
    fn answers() {
        for yes in ["y", "Y", "yes", " YES \n"] {
            assert!(is_yes(yes), "{yes:?}");
        }
        for no in ["", "n", "no", "yess", "\n"] {
            assert!(!is_yes(no), "{no:?}");
        }
    }

    fn refused(message: &str) -> CmdError {
        CmdError::Api(ApiError::Refused {
            status: 409,
            message: message.into(),
        })
    }

    #[test]
    fn outcomes_print_gluster_style_or_json() {
        let done = || Ok(Output::done("volume start: pacs: success", "pacs started"));
        assert_eq!(
            outcome("volume start: pacs", false, done()),
            (0, "volume start: pacs: success\n".into(), String::new())
        );
        assert_eq!(
            outcome("volume start: pacs", true, done()),
            (
                0,
                "{\"ok\":true,\"message\":\"pacs started\"}\n".into(),
                String::new()
            )
        );
        assert_eq!(
            outcome("x", true, Ok(Output::done("x: success", ""))),
            (
                0,
                "{\"ok\":true,\"message\":\"x: success\"}\n".into(),
                String::new()
            )
        );
        assert_eq!(
            outcome(
                "volume create: pacs",
                false,
                Err(refused("Brick n1:/b is already part of a volume"))
            ),
            (
                1,
                String::new(),
                "volume create: pacs: failed: Brick n1:/b is already part of a volume\n".into()
            )
        );
        let (code, out, err) = outcome("volume create: pacs", true, Err(refused("no")));
        assert_eq!((code, err.as_str()), (1, ""));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v, serde_json::json!({"ok": false, "error": "no"}));

        let unreachable = CmdError::Api(ApiError::Connect {
            endpoint: "127.0.0.1:24007".into(),
            reason: "Connection refused (os error 111)".into(),
        });
        let (code, out, err) = outcome("peer status", false, Err(unreachable));
        assert_eq!((code, out.as_str()), (1, ""));
        assert_eq!(
            err,
            "cannot reach cairnd at 127.0.0.1:24007: Connection refused (os error 111); \
             is it running?\n"
        );
        let (code, _, err) = outcome("volume create", false, Err(CmdError::Usage("bad".into())));
        assert_eq!((code, err.as_str()), (2, "volume create: bad\n"));
        assert_eq!(
            outcome("v", false, Ok(Output::Print("a".into()))),
            (0, "a\n".into(), String::new())
        );
        assert_eq!(
            outcome("v", false, Ok(Output::Print(String::new()))),
            (0, String::new(), String::new())
        );
    }
}
