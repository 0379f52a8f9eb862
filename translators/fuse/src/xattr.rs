//! Extended attributes at the FUSE edge: which names applications may use, and the
//! kernel's size protocol.
//!
//! Only the `user.` namespace reaches the volume. Everything else (`trusted.`, where the
//! bricks keep gfids and replication state; `security.`; `system.` ACLs) is refused here
//! without a round trip: reads answer `ENODATA` (the kernel asks for `security.capability`
//! before every write), writes and removals answer `EOPNOTSUPP`.

use cairn_translators::Xdata;
use fuser::Errno;

/// The only namespace applications may use.
pub(crate) const USER_PREFIX: &str = "user.";

/// True for names in the `user.` namespace (with something after the prefix).
pub(crate) fn is_user(name: &[u8]) -> bool {
    name.len() > USER_PREFIX.len() && name.starts_with(USER_PREFIX.as_bytes())
}

/// The errno for reading a name outside the `user.` namespace.
pub(crate) const FOREIGN_GET: Errno = Errno::NO_XATTR;

/// The errno for setting or removing a name outside the `user.` namespace.
pub(crate) const FOREIGN_SET: Errno = Errno::EOPNOTSUPP;

/// What to answer a `getxattr`/`listxattr` whose value is `value` and whose buffer is
/// `size` bytes (0: the caller asks for the length).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SizedReply<'a> {
    /// Reply with the length only.
    Size(u32),
    /// Reply with the bytes.
    Data(&'a [u8]),
}

/// Applies the size protocol: size 0 asks for the length, a buffer too small is `ERANGE`.
pub(crate) fn sized(value: &[u8], size: u32) -> Result<SizedReply<'_>, Errno> {
    let len = u32::try_from(value.len()).map_err(|_| Errno::E2BIG)?;
    if size == 0 {
        Ok(SizedReply::Size(len))
    } else if len > size {
        Err(Errno::ERANGE)
    } else {
        Ok(SizedReply::Data(value))
    }
}

/// The `listxattr` answer: the `user.` names of `all`, each followed by a NUL.
pub(crate) fn name_list(all: &Xdata) -> Vec<u8> {
    let mut out = Vec::new();
    for name in all.0.keys().filter(|n| is_user(n.as_bytes())) {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_user_namespace_passes() {
        assert!(is_user(b"user.dicom.study"));
        for name in [
            &b"user."[..],
            b"user",
            b"trusted.cairn.gfid",
            b"security.capability",
            b"system.posix_acl_access",
            b"USER.x",
            b"",
        ] {
            assert!(!is_user(name), "{:?}", String::from_utf8_lossy(name));
        }
        assert_eq!(FOREIGN_GET.code(), libc::ENODATA);
        assert_eq!(FOREIGN_SET.code(), libc::EOPNOTSUPP);
    }

    #[test]
    fn the_size_protocol_is_honoured() {
        assert_eq!(sized(b"abc", 0), Ok(SizedReply::Size(3)));
        assert_eq!(sized(b"abc", 3), Ok(SizedReply::Data(b"abc")));
        assert_eq!(sized(b"abc", 100), Ok(SizedReply::Data(b"abc")));
        assert_eq!(sized(b"abc", 2), Err(Errno::ERANGE));
        assert_eq!(sized(b"", 0), Ok(SizedReply::Size(0)));
    }

    #[test]
    fn the_list_holds_user_names_nul_terminated() {
        let mut x = Xdata::new();
        x.set("user.a", b"1".to_vec());
        x.set("trusted.cairn.gfid", vec![0; 16]);
        x.set("user.bb", Vec::new());
        x.set("security.selinux", b"ctx".to_vec());
        assert_eq!(name_list(&x), b"user.a\0user.bb\0");
        assert!(name_list(&Xdata::new()).is_empty());
    }
}
