//! `FopError`: every failure of a file operation is an errno plus a message.
//!
//! Translators never panic and never invent their own error enums for fops: whatever goes
//! wrong becomes a `FopError`, and the access edges (FUSE today, NFS later) map the errno to
//! their own status once, at the boundary.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The result of one file operation.
pub type FopResult<T> = Result<T, FopError>;

/// An errno with a human message saying what failed and where.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FopError {
    /// A Linux errno value (`libc::ENOENT`, ...).
    pub errno: i32,
    /// What went wrong, for logs and for people. Never parsed by code.
    pub msg: String,
}

impl FopError {
    /// An error with an errno and a message.
    pub fn new(errno: i32, msg: impl Into<String>) -> Self {
        FopError {
            errno,
            msg: msg.into(),
        }
    }

    /// Wraps an I/O error, keeping its errno (EIO when it has none) and adding context.
    pub fn io(err: &std::io::Error, context: impl fmt::Display) -> Self {
        FopError::new(
            err.raw_os_error().unwrap_or(libc::EIO),
            format!("{context}: {err}"),
        )
    }

    /// Wraps a raw errno returned by a syscall, with context.
    pub fn errno(errno: i32, context: impl fmt::Display) -> Self {
        let err = std::io::Error::from_raw_os_error(errno);
        FopError::new(errno, format!("{context}: {err}"))
    }

    /// `ENOTCONN`: the operation cannot reach its brick.
    pub fn not_connected(msg: impl Into<String>) -> Self {
        FopError::new(libc::ENOTCONN, msg)
    }

    /// `EINVAL` with a message.
    pub fn invalid(msg: impl Into<String>) -> Self {
        FopError::new(libc::EINVAL, msg)
    }

    /// `EIO` with a message.
    pub fn eio(msg: impl Into<String>) -> Self {
        FopError::new(libc::EIO, msg)
    }

    /// `ENOSYS`: the operation is not implemented by this translator.
    pub fn unsupported(msg: impl Into<String>) -> Self {
        FopError::new(libc::ENOSYS, msg)
    }

    /// Adds context in front of the message, keeping the errno.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.msg = format!("{context}: {}", self.msg);
        self
    }

    /// The symbolic name of the errno (`"ENOENT"`), or `"E<number>"` for unknown values.
    pub fn errno_name(&self) -> String {
        errno_name(self.errno)
    }
}

impl fmt::Debug for FopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.errno_name(), self.msg)
    }
}

impl fmt::Display for FopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.msg, self.errno_name())
    }
}

impl std::error::Error for FopError {}

impl From<std::io::Error> for FopError {
    fn from(err: std::io::Error) -> Self {
        FopError::new(err.raw_os_error().unwrap_or(libc::EIO), err.to_string())
    }
}

macro_rules! errno_table {
    ($($name:ident),* $(,)?) => {
        /// Errno names Cairn's options and logs understand.
        pub const ERRNO_NAMES: &[&str] = &[$(stringify!($name)),*];
        const ERRNO_VALUES: &[i32] = &[$(libc::$name),*];
    };
}

errno_table!(
    EPERM,
    ENOENT,
    EIO,
    EBADF,
    EAGAIN,
    ENOMEM,
    EACCES,
    EBUSY,
    EEXIST,
    EXDEV,
    ENOTDIR,
    EISDIR,
    EINVAL,
    EFBIG,
    ENOSPC,
    EROFS,
    EMLINK,
    ERANGE,
    EDEADLK,
    ENAMETOOLONG,
    ENOSYS,
    ENOTEMPTY,
    ELOOP,
    ENODATA,
    EOVERFLOW,
    EILSEQ,
    ENOTSUP,
    ETIMEDOUT,
    ECONNREFUSED,
    ENOTCONN,
    ESTALE,
    EDQUOT,
    ECANCELED,
    ENXIO,
    E2BIG,
    EPROTO,
);

/// The symbolic name of an errno value.
pub fn errno_name(errno: i32) -> String {
    ERRNO_VALUES
        .iter()
        .position(|v| *v == errno)
        .and_then(|i| ERRNO_NAMES.get(i))
        .map(|n| (*n).to_string())
        .unwrap_or_else(|| format!("E{errno}"))
}

/// Parses an errno name (`"ENOSPC"`, case-insensitive) or a decimal number.
pub fn errno_from_name(name: &str) -> Option<i32> {
    let upper = name.trim().to_ascii_uppercase();
    if let Some(i) = ERRNO_NAMES.iter().position(|n| *n == upper) {
        return ERRNO_VALUES.get(i).copied();
    }
    upper.parse::<i32>().ok().filter(|v| *v > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_names_round_trip() {
        for name in ERRNO_NAMES {
            let v = errno_from_name(name).unwrap();
            assert_eq!(errno_name(v), *name);
        }
        assert_eq!(errno_from_name("enospc"), Some(libc::ENOSPC));
        assert_eq!(errno_from_name("5"), Some(5));
        assert_eq!(errno_from_name("-1"), None);
        assert_eq!(errno_from_name("EBOGUS"), None);
        assert_eq!(errno_name(9999), "E9999");
    }

    #[test]
    fn io_errors_keep_their_errno() {
        let e = FopError::io(&std::io::Error::from_raw_os_error(libc::ENOSPC), "write /x");
        assert_eq!(e.errno, libc::ENOSPC);
        assert!(e.msg.starts_with("write /x: "));
        let e = FopError::io(&std::io::Error::other("no errno"), "x");
        assert_eq!(e.errno, libc::EIO);
        assert_eq!(e.clone().context("outer").msg, format!("outer: {}", e.msg));
    }
}
