//! Typed translator options.
//!
//! A translator type declares its options as a static slice of [`OptionSpec`]s: key, kind
//! (with range), default and one line of documentation. [`parse_options`] turns the text
//! values of a volfile node into an [`Options`] map of typed [`OptionValue`]s, filling in
//! defaults and rejecting unknown keys, so a translator never parses text itself. The same
//! declarations produce the option reference ([`crate::render_reference`]).

use std::collections::BTreeMap;
use std::time::Duration;

/// The type (and allowed range) of one option.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OptionKind {
    /// `true`/`false`, `on`/`off`, `yes`/`no`, `enable`/`disable`, `1`/`0`; case-insensitive.
    Bool,
    /// A decimal integer within `min..=max`.
    Int {
        /// Smallest allowed value.
        min: i64,
        /// Largest allowed value.
        max: i64,
    },
    /// A byte count within `min..=max`: a number with an optional unit `B`, `K`/`KB`/`KiB`,
    /// `M`/`MB`/`MiB`, `G`/`GB`/`GiB`, `T`/`TB`/`TiB` (all powers of 1024; case-insensitive).
    Size {
        /// Smallest allowed size in bytes.
        min: u64,
        /// Largest allowed size in bytes.
        max: u64,
    },
    /// A duration within `min_ms..=max_ms` milliseconds: a number with an optional unit
    /// `ms`, `s`, `m`, `h` or `d`; a bare number means seconds.
    Duration {
        /// Shortest allowed duration in milliseconds.
        min_ms: u64,
        /// Longest allowed duration in milliseconds.
        max_ms: u64,
    },
    /// A percentage in `0..=100`, written `5`, `5%` or `2.5%`.
    Percent,
    /// Any text, kept exactly as written.
    Str,
    /// Exactly one of the listed names (case-sensitive); stored as [`OptionValue::Str`].
    Enum(&'static [&'static str]),
    /// A comma-separated list, items trimmed; when the slice is non-empty every item must be
    /// one of its names. An empty text is an empty list.
    List(&'static [&'static str]),
    /// A network address `host:port` or `[ipv6]:port`, port `1..=65535`; stored as
    /// [`OptionValue::Str`].
    Addr,
    /// An address to listen on: like [`OptionKind::Addr`], but port 0 ("any free port") is
    /// allowed; stored as [`OptionValue::Str`].
    ListenAddr,
    /// An absolute path; stored as [`OptionValue::Str`].
    Path,
}

/// The declaration of one option of a translator type.
#[derive(Debug, Clone, Copy)]
pub struct OptionSpec {
    /// The key as written in volfiles, e.g. `remote-port`.
    pub key: &'static str,
    /// Type and allowed range.
    pub kind: OptionKind,
    /// The default in text form, parsed with the same rules as a given value; `None` means
    /// the option is required. For an optional text without a default use `Some("")` with
    /// [`OptionKind::Str`] and read it with [`Options::opt_str`].
    pub default: Option<&'static str>,
    /// One line for the option reference.
    pub doc: &'static str,
}

/// A typed option value.
#[derive(Debug, Clone, PartialEq)]
pub enum OptionValue {
    /// From [`OptionKind::Bool`].
    Bool(bool),
    /// From [`OptionKind::Int`].
    Int(i64),
    /// From [`OptionKind::Size`], in bytes.
    Size(u64),
    /// From [`OptionKind::Duration`].
    Duration(Duration),
    /// From [`OptionKind::Percent`], in `0.0..=100.0`.
    Percent(f64),
    /// From [`OptionKind::Str`], [`OptionKind::Enum`], [`OptionKind::Addr`] and
    /// [`OptionKind::Path`].
    Str(String),
    /// From [`OptionKind::List`].
    List(Vec<String>),
}

impl OptionValue {
    /// A short name of the variant, for error messages.
    fn kind_name(&self) -> &'static str {
        match self {
            OptionValue::Bool(_) => "a boolean",
            OptionValue::Int(_) => "an integer",
            OptionValue::Size(_) => "a size",
            OptionValue::Duration(_) => "a duration",
            OptionValue::Percent(_) => "a percentage",
            OptionValue::Str(_) => "a string",
            OptionValue::List(_) => "a list",
        }
    }
}

/// The typed options of one node, keyed by option key.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Options {
    values: BTreeMap<String, OptionValue>,
}

/// A problem with one option: unknown key, missing value, bad value or wrong accessor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("option '{key}': {message}")]
pub struct OptionError {
    /// The option key.
    pub key: String,
    /// What is wrong, and what would be allowed.
    pub message: String,
}

impl OptionError {
    fn new(key: &str, message: impl Into<String>) -> Self {
        OptionError {
            key: key.to_string(),
            message: message.into(),
        }
    }
}

const KIB: u64 = 1024;
const SIZE_UNITS: [(&str, u64); 4] = [
    ("TB", KIB * KIB * KIB * KIB),
    ("GB", KIB * KIB * KIB),
    ("MB", KIB * KIB),
    ("KB", KIB),
];

const MS_PER_S: u64 = 1000;
const DURATION_UNITS: [(&str, u64); 4] = [
    ("d", 86_400 * MS_PER_S),
    ("h", 3_600 * MS_PER_S),
    ("m", 60 * MS_PER_S),
    ("s", MS_PER_S),
];

/// Formats a byte count with the largest unit that divides it exactly: `4KB`, `1GB`, `1000`.
pub(crate) fn format_size(bytes: u64) -> String {
    if bytes != 0 {
        for (unit, factor) in SIZE_UNITS {
            if bytes.is_multiple_of(factor) {
                return format!("{}{unit}", bytes / factor);
            }
        }
    }
    bytes.to_string()
}

/// Formats milliseconds with the largest unit that divides them exactly: `5m`, `500ms`.
pub(crate) fn format_duration_ms(ms: u64) -> String {
    if ms == 0 {
        return "0s".to_string();
    }
    for (unit, factor) in DURATION_UNITS {
        if ms.is_multiple_of(factor) {
            return format!("{}{unit}", ms / factor);
        }
    }
    format!("{ms}ms")
}

/// Splits `"128 KB"` into `("128", "KB")`: leading ASCII digits, then the rest trimmed.
fn split_number(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    (&text[..end], text[end..].trim())
}

fn parse_size(text: &str) -> Option<u64> {
    let (digits, unit) = split_number(text);
    if digits.is_empty() {
        return None;
    }
    let number: u64 = digits.parse().ok()?;
    let factor = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => KIB,
        "m" | "mb" | "mib" => KIB * KIB,
        "g" | "gb" | "gib" => KIB * KIB * KIB,
        "t" | "tb" | "tib" => KIB * KIB * KIB * KIB,
        _ => return None,
    };
    number.checked_mul(factor)
}

fn parse_duration_ms(text: &str) -> Option<u64> {
    let (digits, unit) = split_number(text);
    if digits.is_empty() {
        return None;
    }
    let number: u64 = digits.parse().ok()?;
    let factor = match unit.to_ascii_lowercase().as_str() {
        "ms" => 1,
        "" | "s" => MS_PER_S,
        "m" => 60 * MS_PER_S,
        "h" => 3_600 * MS_PER_S,
        "d" => 86_400 * MS_PER_S,
        _ => return None,
    };
    number.checked_mul(factor)
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "on" | "yes" | "enable" | "1" => Some(true),
        "false" | "off" | "no" | "disable" | "0" => Some(false),
        _ => None,
    }
}

/// Checks `host:port` / `[v6]:port`; returns a description of the problem. Port 0 passes
/// only when `allow_zero`.
fn check_addr(text: &str, allow_zero: bool) -> Result<(), &'static str> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (inner, port) = rest
            .split_once("]:")
            .ok_or("an IPv6 address must be written '[address]:port'")?;
        if inner.parse::<std::net::Ipv6Addr>().is_err() {
            return Err("the text inside brackets is not an IPv6 address");
        }
        (inner, port)
    } else {
        let (host, port) = text.rsplit_once(':').ok_or("the port is missing")?;
        if host.contains(':') {
            return Err("an IPv6 address must be written in brackets");
        }
        (host, port)
    };
    if host.is_empty() {
        return Err("the host is empty");
    }
    if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the host contains whitespace");
    }
    match port.parse::<u16>() {
        Ok(p) if (p >= 1 || allow_zero) && port.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
        _ if allow_zero => Err("the port must be a number from 0 to 65535"),
        _ => Err("the port must be a number from 1 to 65535"),
    }
}

/// Picks the first candidate inside `min..=max`, else `min`: an example for messages.
fn example_in(candidates: &[u64], min: u64, max: u64) -> u64 {
    candidates
        .iter()
        .copied()
        .find(|c| (min..=max).contains(c))
        .unwrap_or(min)
}

impl OptionKind {
    /// Parses `text` as a value of this kind.
    ///
    /// Surrounding whitespace is ignored for every kind except [`OptionKind::Str`], which keeps
    /// the text exactly. The error message says what is allowed and quotes what was given,
    /// e.g. "expected a size between 4KB and 1GB like '128KB', got 'x'".
    pub fn parse(&self, text: &str) -> Result<OptionValue, String> {
        let trimmed = text.trim();
        match *self {
            OptionKind::Bool => parse_bool(trimmed).map(OptionValue::Bool).ok_or_else(|| {
                format!(
                    "expected a boolean (true/false, on/off, yes/no, enable/disable, 1/0), \
                     got '{text}'"
                )
            }),
            OptionKind::Int { min, max } => match trimmed.parse::<i64>() {
                Ok(v) if (min..=max).contains(&v) => Ok(OptionValue::Int(v)),
                _ => Err(format!(
                    "expected an integer{}, got '{text}'",
                    int_range_words(min, max)
                )),
            },
            OptionKind::Size { min, max } => match parse_size(trimmed) {
                Some(v) if (min..=max).contains(&v) => Ok(OptionValue::Size(v)),
                _ => {
                    let example = example_in(
                        &[
                            128 * KIB,
                            KIB * KIB,
                            64 * KIB * KIB,
                            KIB * KIB * KIB,
                            4 * KIB,
                        ],
                        min,
                        max,
                    );
                    Err(format!(
                        "expected a size {} like '{}', got '{text}'",
                        size_range_words(min, max),
                        format_size(example)
                    ))
                }
            },
            OptionKind::Duration { min_ms, max_ms } => match parse_duration_ms(trimmed) {
                Some(v) if (min_ms..=max_ms).contains(&v) => {
                    Ok(OptionValue::Duration(Duration::from_millis(v)))
                }
                _ => {
                    let example = example_in(&[10_000, 500, 300_000, 3_600_000, 1], min_ms, max_ms);
                    Err(format!(
                        "expected a duration {} like '{}' (units ms, s, m, h, d; a bare number \
                         is seconds), got '{text}'",
                        duration_range_words(min_ms, max_ms),
                        format_duration_ms(example)
                    ))
                }
            },
            OptionKind::Percent => {
                let number = trimmed.strip_suffix('%').unwrap_or(trimmed).trim_end();
                let valid =
                    !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit() || b == b'.');
                match number.parse::<f64>() {
                    Ok(v) if valid && (0.0..=100.0).contains(&v) => Ok(OptionValue::Percent(v)),
                    _ => Err(format!(
                        "expected a percentage from 0 to 100 like '5%' or '2.5%', got '{text}'"
                    )),
                }
            }
            OptionKind::Str => Ok(OptionValue::Str(text.to_string())),
            OptionKind::Enum(names) => {
                if names.contains(&trimmed) {
                    Ok(OptionValue::Str(trimmed.to_string()))
                } else {
                    Err(format!(
                        "expected one of: {}; got '{text}'",
                        names.join(", ")
                    ))
                }
            }
            OptionKind::List(names) => {
                if trimmed.is_empty() {
                    return Ok(OptionValue::List(Vec::new()));
                }
                let mut items = Vec::new();
                for item in trimmed.split(',').map(str::trim) {
                    if item.is_empty() {
                        return Err(format!(
                            "expected a comma-separated list without empty items, got '{text}'"
                        ));
                    }
                    if !names.is_empty() && !names.contains(&item) {
                        return Err(format!(
                            "'{item}' is not allowed in this list; expected names from: {}",
                            names.join(", ")
                        ));
                    }
                    items.push(item.to_string());
                }
                Ok(OptionValue::List(items))
            }
            OptionKind::Addr | OptionKind::ListenAddr => {
                match check_addr(trimmed, *self == OptionKind::ListenAddr) {
                    Ok(()) => Ok(OptionValue::Str(trimmed.to_string())),
                    Err(why) => Err(format!(
                        "expected an address 'host:port' or '[ipv6]:port' like 'node1:24007', \
                         got '{text}' ({why})"
                    )),
                }
            }
            OptionKind::Path => {
                if trimmed.starts_with('/') && !trimmed.contains('\0') {
                    Ok(OptionValue::Str(trimmed.to_string()))
                } else {
                    Err(format!(
                        "expected an absolute path like '/srv/cairn/brick1', got '{text}'"
                    ))
                }
            }
        }
    }

    /// A human description of the type and range, for documentation and messages, e.g.
    /// "size (4KB–1GB)" or "one of: first-up, least-latency, hashed".
    pub fn describe(&self) -> String {
        match *self {
            OptionKind::Bool => "boolean".to_string(),
            OptionKind::Int { min, max } => match (min, max) {
                (i64::MIN, i64::MAX) => "integer".to_string(),
                (min, i64::MAX) => format!("integer (≥ {min})"),
                (i64::MIN, max) => format!("integer (≤ {max})"),
                (min, max) => format!("integer ({min}–{max})"),
            },
            OptionKind::Size { min, max } => match (min, max) {
                (0, u64::MAX) => "size".to_string(),
                (min, u64::MAX) => format!("size (≥ {})", format_size(min)),
                (min, max) => format!("size ({}–{})", format_size(min), format_size(max)),
            },
            OptionKind::Duration { min_ms, max_ms } => match (min_ms, max_ms) {
                (0, u64::MAX) => "duration".to_string(),
                (min, u64::MAX) => format!("duration (≥ {})", format_duration_ms(min)),
                (min, max) => format!(
                    "duration ({}–{})",
                    format_duration_ms(min),
                    format_duration_ms(max)
                ),
            },
            OptionKind::Percent => "percentage (0–100%)".to_string(),
            OptionKind::Str => "string".to_string(),
            OptionKind::Enum(names) => format!("one of: {}", names.join(", ")),
            OptionKind::List([]) => "comma-separated list".to_string(),
            OptionKind::List(names) => format!("comma-separated list of: {}", names.join(", ")),
            OptionKind::Addr => "address (host:port)".to_string(),
            OptionKind::ListenAddr => {
                "listen address (host:port, port 0 = any free port)".to_string()
            }
            OptionKind::Path => "absolute path".to_string(),
        }
    }
}

fn int_range_words(min: i64, max: i64) -> String {
    match (min, max) {
        (i64::MIN, i64::MAX) => String::new(),
        (min, i64::MAX) => format!(" of at least {min}"),
        (i64::MIN, max) => format!(" of at most {max}"),
        (min, max) => format!(" between {min} and {max}"),
    }
}

fn size_range_words(min: u64, max: u64) -> String {
    match (min, max) {
        (0, u64::MAX) => "of any amount".to_string(),
        (min, u64::MAX) => format!("of at least {}", format_size(min)),
        (min, max) => format!("between {} and {}", format_size(min), format_size(max)),
    }
}

fn duration_range_words(min: u64, max: u64) -> String {
    match (min, max) {
        (0, u64::MAX) => "of any length".to_string(),
        (min, u64::MAX) => format!("of at least {}", format_duration_ms(min)),
        (min, max) => format!(
            "between {} and {}",
            format_duration_ms(min),
            format_duration_ms(max)
        ),
    }
}

/// Types the text options of one node against its declared specs.
///
/// - a key that is not declared is an error listing the known keys;
/// - a declared key without a default (`default: None`) must be given;
/// - every declared key with a default that is not given gets its default, parsed with the
///   same rules as a given value (a bad default is reported like a bad value);
/// - a value that does not parse is an error saying what is allowed.
pub fn parse_options(
    specs: &[OptionSpec],
    given: &BTreeMap<String, String>,
) -> Result<Options, OptionError> {
    for key in given.keys() {
        if !specs.iter().any(|s| s.key == key) {
            let message = if specs.is_empty() {
                "unknown option; this type takes no options".to_string()
            } else {
                let mut known: Vec<&str> = specs.iter().map(|s| s.key).collect();
                known.sort_unstable();
                format!("unknown option; known options: {}", known.join(", "))
            };
            return Err(OptionError::new(key, message));
        }
    }
    let mut options = Options::default();
    for spec in specs {
        let value = match (given.get(spec.key), spec.default) {
            (Some(text), _) => spec
                .kind
                .parse(text)
                .map_err(|message| OptionError::new(spec.key, message))?,
            (None, Some(default)) => spec.kind.parse(default).map_err(|message| {
                OptionError::new(spec.key, format!("invalid declared default: {message}"))
            })?,
            (None, None) => {
                return Err(OptionError::new(
                    spec.key,
                    format!("required option is missing ({})", spec.kind.describe()),
                ));
            }
        };
        options.values.insert(spec.key.to_string(), value);
    }
    Ok(options)
}

impl Options {
    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&OptionValue> {
        self.values.get(key)
    }

    /// All values, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &OptionValue)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Sets `key` to `value`, replacing any previous value (for tests and builders).
    pub fn insert(&mut self, key: &str, value: OptionValue) {
        self.values.insert(key.to_string(), value);
    }

    fn typed<'a, T>(
        &'a self,
        key: &str,
        wanted: &str,
        pick: impl FnOnce(&'a OptionValue) -> Option<T>,
    ) -> Result<T, OptionError> {
        let value = self
            .values
            .get(key)
            .ok_or_else(|| OptionError::new(key, "option is not set"))?;
        pick(value).ok_or_else(|| {
            OptionError::new(
                key,
                format!("option is {}, not {wanted}", value.kind_name()),
            )
        })
    }

    /// The boolean value of `key`; an error if it is absent or not a boolean.
    pub fn bool(&self, key: &str) -> Result<bool, OptionError> {
        self.typed(key, "a boolean", |v| match v {
            OptionValue::Bool(b) => Some(*b),
            _ => None,
        })
    }

    /// The integer value of `key`; an error if it is absent or not an integer.
    pub fn int(&self, key: &str) -> Result<i64, OptionError> {
        self.typed(key, "an integer", |v| match v {
            OptionValue::Int(i) => Some(*i),
            _ => None,
        })
    }

    /// The size in bytes of `key`; an error if it is absent or not a size.
    pub fn size(&self, key: &str) -> Result<u64, OptionError> {
        self.typed(key, "a size", |v| match v {
            OptionValue::Size(s) => Some(*s),
            _ => None,
        })
    }

    /// The duration of `key`; an error if it is absent or not a duration.
    pub fn duration(&self, key: &str) -> Result<Duration, OptionError> {
        self.typed(key, "a duration", |v| match v {
            OptionValue::Duration(d) => Some(*d),
            _ => None,
        })
    }

    /// The percentage (`0.0..=100.0`) of `key`; an error if it is absent or not a percentage.
    pub fn percent(&self, key: &str) -> Result<f64, OptionError> {
        self.typed(key, "a percentage", |v| match v {
            OptionValue::Percent(p) => Some(*p),
            _ => None,
        })
    }

    /// The text of `key` (string, enum, address or path options); an error if it is absent
    /// or not text.
    pub fn str(&self, key: &str) -> Result<&str, OptionError> {
        self.typed(key, "a string", |v| match v {
            OptionValue::Str(s) => Some(s.as_str()),
            _ => None,
        })
    }

    /// The text of `key`, or `None` when it is absent, empty, or not text. Use it for
    /// optional text options declared with `default: Some("")`.
    pub fn opt_str(&self, key: &str) -> Option<&str> {
        match self.values.get(key) {
            Some(OptionValue::Str(s)) if !s.is_empty() => Some(s.as_str()),
            _ => None,
        }
    }

    /// The items of list option `key`; an error if it is absent or not a list.
    pub fn list(&self, key: &str) -> Result<&[String], OptionError> {
        self.typed(key, "a list", |v| match v {
            OptionValue::List(l) => Some(l.as_slice()),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(kind: OptionKind, text: &str) -> OptionValue {
        match kind.parse(text) {
            Ok(v) => v,
            Err(e) => panic!("{text:?} should parse as {kind:?}: {e}"),
        }
    }

    fn bad(kind: OptionKind, text: &str) -> String {
        match kind.parse(text) {
            Ok(v) => panic!("{text:?} should not parse as {kind:?}, got {v:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn bool_accepts_all_spellings_case_insensitively() {
        for t in ["true", "TRUE", "on", "On", "yes", "enable", "1", " true "] {
            assert_eq!(ok(OptionKind::Bool, t), OptionValue::Bool(true), "{t}");
        }
        for t in ["false", "False", "off", "OFF", "no", "disable", "0"] {
            assert_eq!(ok(OptionKind::Bool, t), OptionValue::Bool(false), "{t}");
        }
        for t in ["", "2", "y", "enabled", "truee"] {
            let e = bad(OptionKind::Bool, t);
            assert!(e.contains("expected a boolean"), "{e}");
            assert!(e.contains(&format!("got '{t}'")), "{e}");
        }
    }

    #[test]
    fn int_range_is_inclusive() {
        let k = OptionKind::Int { min: 1, max: 16 };
        assert_eq!(ok(k, "1"), OptionValue::Int(1));
        assert_eq!(ok(k, "16"), OptionValue::Int(16));
        assert_eq!(ok(k, " 7 "), OptionValue::Int(7));
        for t in ["0", "17", "-1", "x", "1.5", "", "99999999999999999999"] {
            let e = bad(k, t);
            assert!(e.contains("expected an integer between 1 and 16"), "{e}");
        }
        let neg = OptionKind::Int { min: -5, max: -1 };
        assert_eq!(ok(neg, "-5"), OptionValue::Int(-5));
        bad(neg, "0");
        let any = OptionKind::Int {
            min: i64::MIN,
            max: i64::MAX,
        };
        assert_eq!(ok(any, "-9223372036854775808"), OptionValue::Int(i64::MIN));
        assert_eq!(bad(any, "x"), "expected an integer, got 'x'");
        assert_eq!(k.describe(), "integer (1–16)");
        assert_eq!(any.describe(), "integer");
        assert_eq!(
            OptionKind::Int {
                min: 0,
                max: i64::MAX
            }
            .describe(),
            "integer (≥ 0)"
        );
    }

    #[test]
    fn size_units_are_1024_multiples_and_case_insensitive() {
        let k = OptionKind::Size {
            min: 4 * KIB,
            max: KIB * KIB * KIB,
        };
        assert_eq!(ok(k, "4096"), OptionValue::Size(4096));
        for t in [
            "4KB", "4K", "4KiB", "4kb", "4k", "4kib", "4 KB", "4096b", "4096B",
        ] {
            assert_eq!(ok(k, t), OptionValue::Size(4096), "{t}");
        }
        assert_eq!(ok(k, "128KB"), OptionValue::Size(128 * 1024));
        assert_eq!(ok(k, "2M"), OptionValue::Size(2 * 1024 * 1024));
        assert_eq!(ok(k, "1mib"), OptionValue::Size(1024 * 1024));
        assert_eq!(ok(k, "1GB"), OptionValue::Size(1 << 30));
        let big = OptionKind::Size {
            min: 0,
            max: u64::MAX,
        };
        assert_eq!(ok(big, "3TB"), OptionValue::Size(3 << 40));
        assert_eq!(ok(big, "2tib"), OptionValue::Size(2 << 40));
        assert_eq!(ok(big, "0"), OptionValue::Size(0));
        // Boundaries.
        let e = bad(k, "4095");
        assert_eq!(
            e,
            "expected a size between 4KB and 1GB like '128KB', got '4095'"
        );
        assert_eq!(
            bad(k, "x"),
            "expected a size between 4KB and 1GB like '128KB', got 'x'"
        );
        bad(k, "1025MB");
        for t in [
            "",
            "KB",
            "-4KB",
            "4XB",
            "4.5KB",
            "4 K B",
            "99999999999999999999TB",
        ] {
            bad(big, t);
        }
        bad(big, "20000000TB"); // overflows u64
        assert_eq!(k.describe(), "size (4KB–1GB)");
        assert_eq!(big.describe(), "size");
    }

    #[test]
    fn size_formatting_uses_largest_exact_unit() {
        assert_eq!(format_size(0), "0");
        assert_eq!(format_size(1000), "1000");
        assert_eq!(format_size(1536), "1536");
        assert_eq!(format_size(4096), "4KB");
        assert_eq!(format_size(3 << 20), "3MB");
        assert_eq!(format_size(1 << 40), "1TB");
    }

    #[test]
    fn duration_bare_number_is_seconds() {
        let k = OptionKind::Duration {
            min_ms: 100,
            max_ms: 86_400_000,
        };
        let ms = |n: u64| OptionValue::Duration(Duration::from_millis(n));
        assert_eq!(ok(k, "42"), ms(42_000));
        assert_eq!(ok(k, "500ms"), ms(500));
        assert_eq!(ok(k, "100ms"), ms(100));
        assert_eq!(ok(k, "10s"), ms(10_000));
        assert_eq!(ok(k, "5m"), ms(300_000));
        assert_eq!(ok(k, "2h"), ms(7_200_000));
        assert_eq!(ok(k, "1d"), ms(86_400_000));
        assert_eq!(ok(k, "10S"), ms(10_000));
        assert_eq!(ok(k, "500MS"), ms(500));
        assert_eq!(ok(k, " 3 s "), ms(3_000));
        let e = bad(k, "99ms");
        assert!(
            e.starts_with("expected a duration between 100ms and 1d like '10s'"),
            "{e}"
        );
        assert!(e.ends_with("got '99ms'"), "{e}");
        for t in ["2d", "x", "", "1.5s", "-1s", "5w", "ms"] {
            bad(k, t);
        }
        assert_eq!(k.describe(), "duration (100ms–1d)");
        assert_eq!(format_duration_ms(0), "0s");
        assert_eq!(format_duration_ms(90_000), "90s");
        assert_eq!(format_duration_ms(1_500), "1500ms");
    }

    #[test]
    fn percent_accepts_plain_and_suffixed_numbers() {
        let k = OptionKind::Percent;
        assert_eq!(ok(k, "5"), OptionValue::Percent(5.0));
        assert_eq!(ok(k, "5%"), OptionValue::Percent(5.0));
        assert_eq!(ok(k, "2.5%"), OptionValue::Percent(2.5));
        assert_eq!(ok(k, "0"), OptionValue::Percent(0.0));
        assert_eq!(ok(k, "100%"), OptionValue::Percent(100.0));
        for t in ["100.1", "-1", "x", "%", "", "nan", "inf", "1e1", "5%%"] {
            let e = bad(k, t);
            assert!(e.contains("expected a percentage from 0 to 100"), "{e}");
        }
        assert_eq!(k.describe(), "percentage (0–100%)");
    }

    #[test]
    fn str_keeps_text_exactly() {
        assert_eq!(
            ok(OptionKind::Str, "  a b "),
            OptionValue::Str("  a b ".into())
        );
        assert_eq!(ok(OptionKind::Str, ""), OptionValue::Str(String::new()));
    }

    #[test]
    fn enum_is_case_sensitive() {
        const POLICIES: &[&str] = &["first-up", "least-latency", "hashed"];
        let k = OptionKind::Enum(POLICIES);
        assert_eq!(ok(k, "hashed"), OptionValue::Str("hashed".into()));
        let e = bad(k, "Hashed");
        assert_eq!(
            e,
            "expected one of: first-up, least-latency, hashed; got 'Hashed'"
        );
        bad(k, "");
        assert_eq!(k.describe(), "one of: first-up, least-latency, hashed");
    }

    #[test]
    fn list_trims_items_and_checks_names() {
        const FOPS: &[&str] = &["read", "write", "lookup"];
        let k = OptionKind::List(FOPS);
        let list =
            |items: &[&str]| OptionValue::List(items.iter().map(|s| s.to_string()).collect());
        assert_eq!(ok(k, "read, write"), list(&["read", "write"]));
        assert_eq!(ok(k, " lookup "), list(&["lookup"]));
        assert_eq!(ok(k, ""), list(&[]));
        assert_eq!(ok(k, "   "), list(&[]));
        let e = bad(k, "read, stat");
        assert!(e.contains("'stat' is not allowed"), "{e}");
        assert!(e.contains("read, write, lookup"), "{e}");
        assert!(bad(k, "read,,write").contains("empty items"));
        bad(k, "read,");
        let free = OptionKind::List(&[]);
        assert_eq!(ok(free, "a,b , c"), list(&["a", "b", "c"]));
        assert_eq!(free.describe(), "comma-separated list");
        assert_eq!(k.describe(), "comma-separated list of: read, write, lookup");
    }

    #[test]
    fn listen_addr_allows_port_zero_and_nothing_else_more() {
        let k = OptionKind::ListenAddr;
        assert_eq!(ok(k, "127.0.0.1:0"), OptionValue::Str("127.0.0.1:0".into()));
        assert_eq!(ok(k, "[::]:24007"), OptionValue::Str("[::]:24007".into()));
        assert!(bad(k, "node1").contains("port is missing"));
        assert!(bad(k, "node1:65536").contains("from 0 to 65535"));
        assert!(bad(OptionKind::Addr, "node1:0").contains("from 1 to 65535"));
    }

    #[test]
    fn addr_accepts_host_port_and_bracketed_ipv6() {
        let k = OptionKind::Addr;
        for t in [
            "node1:24007",
            "10.0.0.1:1",
            "[::1]:65535",
            "[fe80::1]:24010",
            "h:080",
        ] {
            assert_eq!(ok(k, t), OptionValue::Str(t.into()), "{t}");
        }
        for (t, why) in [
            ("node1", "port is missing"),
            (":24007", "host is empty"),
            ("node1:0", "port must be"),
            ("node1:65536", "port must be"),
            ("node1:+80", "port must be"),
            ("node1:", "port must be"),
            ("::1:80", "in brackets"),
            ("[::1]", "'[address]:port'"),
            ("[]:80", "not an IPv6"),
            ("[nope]:80", "not an IPv6"),
            ("no de:80", "whitespace"),
        ] {
            let e = bad(k, t);
            assert!(e.contains("expected an address"), "{e}");
            assert!(e.contains(why), "{t}: {e}");
        }
    }

    #[test]
    fn path_must_be_absolute() {
        let k = OptionKind::Path;
        assert_eq!(ok(k, "/srv/b1"), OptionValue::Str("/srv/b1".into()));
        assert_eq!(ok(k, "/"), OptionValue::Str("/".into()));
        for t in ["srv/b1", "", "./x", "~/x"] {
            assert!(bad(k, t).contains("expected an absolute path"));
        }
    }

    const SPECS: &[OptionSpec] = &[
        OptionSpec {
            key: "remote-host",
            kind: OptionKind::Str,
            default: None,
            doc: "brick host",
        },
        OptionSpec {
            key: "remote-port",
            kind: OptionKind::Int { min: 1, max: 65535 },
            default: Some("24007"),
            doc: "brick port",
        },
        OptionSpec {
            key: "ping-timeout",
            kind: OptionKind::Duration {
                min_ms: 1000,
                max_ms: 3_600_000,
            },
            default: Some("42"),
            doc: "how long to wait",
        },
        OptionSpec {
            key: "label",
            kind: OptionKind::Str,
            default: Some(""),
            doc: "optional label",
        },
    ];

    fn given(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parse_options_fills_defaults() {
        let o = parse_options(SPECS, &given(&[("remote-host", "node1")])).unwrap();
        assert_eq!(o.str("remote-host").unwrap(), "node1");
        assert_eq!(o.int("remote-port").unwrap(), 24007);
        assert_eq!(o.duration("ping-timeout").unwrap(), Duration::from_secs(42));
        assert_eq!(o.opt_str("label"), None);
        assert_eq!(o.str("label").unwrap(), "");
        assert_eq!(o.iter().count(), 4);

        let o = parse_options(
            SPECS,
            &given(&[
                ("remote-host", "node1"),
                ("remote-port", "24010"),
                ("label", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(o.int("remote-port").unwrap(), 24010);
        assert_eq!(o.opt_str("label"), Some("x"));
    }

    #[test]
    fn parse_options_reports_missing_required() {
        let e = parse_options(SPECS, &given(&[])).unwrap_err();
        assert_eq!(e.key, "remote-host");
        assert!(e.message.contains("required option is missing"), "{e}");
        assert_eq!(
            e.to_string(),
            "option 'remote-host': required option is missing (string)"
        );
    }

    #[test]
    fn parse_options_rejects_unknown_key_listing_known_ones() {
        let e =
            parse_options(SPECS, &given(&[("remote-host", "a"), ("colour", "red")])).unwrap_err();
        assert_eq!(e.key, "colour");
        assert_eq!(
            e.message,
            "unknown option; known options: label, ping-timeout, remote-host, remote-port"
        );
        let e = parse_options(&[], &given(&[("x", "1")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "option 'x': unknown option; this type takes no options"
        );
    }

    #[test]
    fn parse_options_reports_bad_value_with_allowed_form() {
        let e = parse_options(SPECS, &given(&[("remote-host", "a"), ("remote-port", "0")]))
            .unwrap_err();
        assert_eq!(e.key, "remote-port");
        assert_eq!(
            e.message,
            "expected an integer between 1 and 65535, got '0'"
        );
    }

    #[test]
    fn parse_options_checks_defaults_with_the_same_rules() {
        const BAD_DEFAULT: &[OptionSpec] = &[OptionSpec {
            key: "block-size",
            kind: OptionKind::Size {
                min: 4096,
                max: 8192,
            },
            default: Some("1MB"),
            doc: "",
        }];
        let e = parse_options(BAD_DEFAULT, &given(&[])).unwrap_err();
        assert_eq!(e.key, "block-size");
        assert!(
            e.message
                .starts_with("invalid declared default: expected a size"),
            "{e}"
        );
        // A valid given value does not need the default.
        let o = parse_options(BAD_DEFAULT, &given(&[("block-size", "8KB")])).unwrap();
        assert_eq!(o.size("block-size").unwrap(), 8192);
    }

    #[test]
    fn accessors_report_absent_and_wrong_variant() {
        let mut o = Options::default();
        o.insert("a", OptionValue::Bool(true));
        o.insert("n", OptionValue::Int(3));
        o.insert("s", OptionValue::Size(9));
        o.insert("d", OptionValue::Duration(Duration::from_millis(5)));
        o.insert("p", OptionValue::Percent(2.5));
        o.insert("t", OptionValue::Str("x".into()));
        o.insert("l", OptionValue::List(vec!["y".into()]));
        assert!(o.bool("a").unwrap());
        assert_eq!(o.int("n").unwrap(), 3);
        assert_eq!(o.size("s").unwrap(), 9);
        assert_eq!(o.duration("d").unwrap(), Duration::from_millis(5));
        assert_eq!(o.percent("p").unwrap(), 2.5);
        assert_eq!(o.str("t").unwrap(), "x");
        assert_eq!(o.list("l").unwrap(), ["y".to_string()]);
        assert_eq!(o.get("n"), Some(&OptionValue::Int(3)));
        assert_eq!(o.get("zz"), None);
        assert_eq!(o.opt_str("zz"), None);
        assert_eq!(o.opt_str("n"), None);

        let e = o.bool("zz").unwrap_err();
        assert_eq!(e.to_string(), "option 'zz': option is not set");
        let e = o.int("a").unwrap_err();
        assert_eq!(
            e.to_string(),
            "option 'a': option is a boolean, not an integer"
        );
        assert!(o.size("n").is_err());
        assert!(o.duration("n").is_err());
        assert!(o.percent("n").is_err());
        assert!(o.str("n").is_err());
        assert!(o.list("t").is_err());
    }

    proptest::proptest! {
        #[test]
        fn size_formatting_round_trips(bytes in proptest::prelude::any::<u64>()) {
            let k = OptionKind::Size { min: 0, max: u64::MAX };
            proptest::prop_assert_eq!(k.parse(&format_size(bytes)), Ok(OptionValue::Size(bytes)));
        }

        #[test]
        fn duration_formatting_round_trips(ms in 0u64..=u64::MAX / 1000) {
            let k = OptionKind::Duration { min_ms: 0, max_ms: u64::MAX };
            proptest::prop_assert_eq!(
                k.parse(&format_duration_ms(ms)),
                Ok(OptionValue::Duration(Duration::from_millis(ms)))
            );
        }
    }
}
