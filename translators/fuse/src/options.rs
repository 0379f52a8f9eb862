//! Mount options: what the FUSE edge tells the kernel and how long the kernel may cache.
//!
//! [`MountOptions`] is filled with defaults, then from a `-o` style list
//! ([`MountOptions::parse_list`]) given on the command line or in fstab.

use std::time::Duration;

/// Everything that can be tuned about one FUSE mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountOptions {
    /// How long the kernel may cache a name → inode binding (`entry-timeout`). Default 1 s.
    pub entry_timeout: Duration,
    /// How long the kernel may cache attributes (`attribute-timeout`). Default 1 s.
    pub attr_timeout: Duration,
    /// How long the kernel may cache "no such name" (`negative-timeout`). Default 0: every
    /// miss goes to the volume, so a file created by another client is seen at once.
    pub negative_timeout: Duration,
    /// Threads reading kernel requests (`fuse-threads`), each with its own cloned
    /// `/dev/fuse` descriptor. Default 4.
    pub threads: usize,
    /// Requests the kernel may have in flight in the background (read-ahead, async
    /// reads) (`max-background`). Default 64; the congestion threshold is 3/4 of it.
    pub max_background: u16,
    /// Largest write request the kernel sends, in bytes (`max-write`). Default 1 MiB.
    pub max_write: u32,
    /// Mount read-only (`ro`; `rw` undoes it). Default false.
    pub read_only: bool,
    /// The source name shown by `mount` and `df`, e.g. `cairn:pacs`. The file system type
    /// is always `fuse.cairn`.
    pub fsname: String,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            entry_timeout: Duration::from_secs(1),
            attr_timeout: Duration::from_secs(1),
            negative_timeout: Duration::ZERO,
            threads: 4,
            max_background: 64,
            max_write: 1024 * 1024,
            read_only: false,
            fsname: "cairn".to_string(),
        }
    }
}

/// The keys [`MountOptions::parse_list`] understands, for error messages.
pub const KNOWN_KEYS: &[&str] = &[
    "entry-timeout=SECS",
    "attribute-timeout=SECS",
    "negative-timeout=SECS",
    "fuse-threads=N",
    "max-background=N",
    "max-write=SIZE",
    "ro",
    "rw",
];

/// Longest cache timeout accepted (one day): longer values are almost surely a unit mistake.
const MAX_TIMEOUT_SECS: f64 = 86_400.0;
/// Most reader threads accepted.
const MAX_THREADS: usize = 64;
/// Smallest and largest `max-write` (the kernel minimum, and what `fuser` can buffer).
const MIN_WRITE: u64 = 4096;
const MAX_WRITE: u64 = 16 * 1024 * 1024;

impl MountOptions {
    /// True when `key` (the part of an item before `=`) is one [`parse_list`](Self::parse_list)
    /// understands: front ends that accept other options too (`mount.cairn`) sort items with it.
    pub fn knows(key: &str) -> bool {
        KNOWN_KEYS.iter().any(|k| k.split('=').next() == Some(key))
    }

    /// Applies a comma-separated `-o` style list such as
    /// `entry-timeout=1,attribute-timeout=0.5,fuse-threads=8,max-write=1MB,ro`.
    ///
    /// Timeouts are seconds (a decimal number, optionally suffixed `s` or `ms`); sizes are
    /// bytes with an optional binary suffix (`K`/`KB`/`KiB`, `M`/`MB`/`MiB`: all powers of
    /// 1024). Later items override earlier ones. On error `self` is left unchanged and the
    /// message names the item and, for unknown keys, lists the known ones.
    pub fn parse_list(&mut self, list: &str) -> Result<(), String> {
        let mut next = self.clone();
        next.apply_list(list)?;
        *self = next;
        Ok(())
    }

    fn apply_list(&mut self, list: &str) -> Result<(), String> {
        for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (key, value) = match item.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim())),
                None => (item, None),
            };
            let need =
                || value.ok_or_else(|| format!("mount option '{key}' needs a value ({key}=...)"));
            let bad = |why: String| format!("mount option '{item}': {why}");
            match key {
                "entry-timeout" => self.entry_timeout = parse_timeout(need()?).map_err(bad)?,
                "attribute-timeout" => self.attr_timeout = parse_timeout(need()?).map_err(bad)?,
                "negative-timeout" => {
                    self.negative_timeout = parse_timeout(need()?).map_err(bad)?
                }
                "fuse-threads" => {
                    self.threads = parse_int(need()?, 1, MAX_THREADS as u64).map_err(bad)? as usize
                }
                "max-background" => {
                    self.max_background =
                        parse_int(need()?, 1, u64::from(u16::MAX)).map_err(bad)? as u16
                }
                "max-write" => {
                    self.max_write = parse_size(need()?, MIN_WRITE, MAX_WRITE).map_err(bad)? as u32
                }
                "ro" | "rw" => {
                    if value.is_some() {
                        return Err(format!("mount option '{key}' takes no value"));
                    }
                    self.read_only = key == "ro";
                }
                _ => {
                    return Err(format!(
                        "unknown mount option '{key}' (known: {})",
                        KNOWN_KEYS.join(", ")
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Seconds as a decimal number, or with an `s` / `ms` suffix.
fn parse_timeout(text: &str) -> Result<Duration, String> {
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else {
        (text, 1.0)
    };
    let secs = number
        .trim()
        .parse::<f64>()
        .map_err(|_| format!("'{text}' is not a number of seconds"))?
        * scale;
    if !secs.is_finite() || !(0.0..=MAX_TIMEOUT_SECS).contains(&secs) {
        return Err(format!(
            "'{text}' is out of range (0 to {MAX_TIMEOUT_SECS} seconds)"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A decimal integer within `min..=max`.
fn parse_int(text: &str, min: u64, max: u64) -> Result<u64, String> {
    let n = text
        .parse::<u64>()
        .map_err(|_| format!("'{text}' is not a whole number"))?;
    if !(min..=max).contains(&n) {
        return Err(format!("{n} is out of range ({min} to {max})"));
    }
    Ok(n)
}

/// Bytes with an optional binary suffix, within `min..=max`.
fn parse_size(text: &str, min: u64, max: u64) -> Result<u64, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(split);
    let unit: u64 = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        other => return Err(format!("unknown size unit '{other}' (use K, M or none)")),
    };
    let n = digits
        .parse::<u64>()
        .map_err(|_| format!("'{text}' is not a size"))?
        .checked_mul(unit)
        .ok_or_else(|| format!("'{text}' is too large"))?;
    if !(min..=max).contains(&n) {
        return Err(format!("{n} bytes is out of range ({min} to {max} bytes)"));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_as_documented() {
        let o = MountOptions::default();
        assert_eq!(o.entry_timeout, Duration::from_secs(1));
        assert_eq!(o.attr_timeout, Duration::from_secs(1));
        assert_eq!(o.negative_timeout, Duration::ZERO);
        assert_eq!(o.threads, 4);
        assert_eq!(o.max_background, 64);
        assert_eq!(o.max_write, 1 << 20);
        assert!(!o.read_only);
    }

    #[test]
    fn a_full_list_parses() {
        let mut o = MountOptions::default();
        o.parse_list(
            "entry-timeout=2,attribute-timeout=0.5,negative-timeout=0,fuse-threads=8,\
             max-background=128,max-write=512K,ro",
        )
        .unwrap();
        assert_eq!(o.entry_timeout, Duration::from_secs(2));
        assert_eq!(o.attr_timeout, Duration::from_millis(500));
        assert_eq!(o.negative_timeout, Duration::ZERO);
        assert_eq!(o.threads, 8);
        assert_eq!(o.max_background, 128);
        assert_eq!(o.max_write, 512 * 1024);
        assert!(o.read_only);
        o.parse_list("rw, max-write=1MB ,,attribute-timeout=250ms")
            .unwrap();
        assert!(!o.read_only, "later items override earlier ones");
        assert_eq!(o.max_write, 1 << 20);
        assert_eq!(o.attr_timeout, Duration::from_millis(250));
        o.parse_list("").unwrap();
        o.parse_list("entry-timeout=3s,max-write=65536").unwrap();
        assert_eq!(o.entry_timeout, Duration::from_secs(3));
        assert_eq!(o.max_write, 65536);
    }

    #[test]
    fn known_keys_are_recognised_without_their_values() {
        for k in [
            "entry-timeout",
            "attribute-timeout",
            "negative-timeout",
            "fuse-threads",
            "max-background",
            "max-write",
            "ro",
            "rw",
        ] {
            assert!(MountOptions::knows(k), "{k}");
        }
        for k in ["", "noatime", "entry-timeout=1", "backup-volfile-servers"] {
            assert!(!MountOptions::knows(k), "{k}");
        }
    }

    #[test]
    fn bad_items_are_refused_with_a_clear_message() {
        let err = |list: &str| MountOptions::default().parse_list(list).unwrap_err();
        let mut o = MountOptions::default();
        assert!(o.parse_list("ro,fuse-threads=0").is_err());
        assert_eq!(o, MountOptions::default(), "a failed list changes nothing");
        let e = err("noatime");
        assert!(e.contains("unknown mount option 'noatime'"), "{e}");
        assert!(
            e.contains("entry-timeout") && e.contains("max-write"),
            "{e}"
        );
        assert!(err("entry-timeout").contains("needs a value"));
        assert!(err("entry-timeout=soon").contains("not a number"));
        assert!(err("attribute-timeout=-1").contains("out of range"));
        assert!(err("negative-timeout=NaN").contains("out of range"));
        assert!(err("fuse-threads=0").contains("out of range"));
        assert!(err("fuse-threads=1000").contains("out of range"));
        assert!(err("max-background=70000").contains("out of range"));
        assert!(err("max-write=1GB").contains("unknown size unit"));
        assert!(err("max-write=1K").contains("out of range"));
        assert!(err("max-write=64M").contains("out of range"));
        assert!(err("ro=1").contains("takes no value"));
    }
}
