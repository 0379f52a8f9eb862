//! `features/bitrot`: content signatures kept by the brick, and the check a scrub runs.
//!
//! **Signatures.** Once a regular file has no descriptor left that changed it and has been
//! quiet for `signing-time`, the brick reads it back and stores [`XATTR_SIGNATURE`]: the
//! format, the algorithm (xxh3-128), the file version it covers and the checksum, as text
//! `1:xxh3-128:<version>:<32 hex digits>`. The version counts signatures
//! ([`XATTR_VERSION`]), so each re-signing of a modified file covers a new version.
//!
//! **Modification.** Before the first change of a signed file reaches the disk (write,
//! truncate, fallocate, an open or create with `O_TRUNC`), the signature is removed, always,
//! even with signing off. So a signature on disk always describes the bytes beside it: a
//! mismatch can only be damage (bit rot, a bad sector, something writing behind Cairn's
//! back). Files created through this brick have no signature to remove and cost nothing.
//!
//! **Scrub.** A `getxattr` of the virtual key [`SCRUB_KEY`] (Cairn's own context only) checks
//! one copy: it reads the file, compares it with its signature, and answers
//! `<verdict> <bytes read> <checksum>`. A copy that does not match is marked bad
//! ([`XATTR_BAD`], with a dirty mark so the brick's heal index lists it); from then on reads
//! of it fail with `EIO` (replicate serves another copy, and self-heal rewrites this one from
//! a copy that verifies, then removes the mark). A quiet file that was never signed (written
//! before signing was on, or while the brick restarted) is signed by the scrub.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use cairn_volfiles::{Arity, Maturity, OptionKind, OptionSpec, Role, TypeDecl};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::error::{FopError, FopResult};
use crate::features::index::{DATA, DIRTY_KEY};
use crate::graph::{BuildCtx, TranslatorType};
use crate::types::*;
use crate::xlator::{Translator, XlatorBase, XlatorRef};

/// A copy's signature.
pub const XATTR_SIGNATURE: &str = "trusted.cairn.bitrot.signature";
/// How many times the copy has been signed (decimal).
pub const XATTR_VERSION: &str = "trusted.cairn.bitrot.version";
/// Set on a copy a scrub found damaged: `1:<version>:<unix time found>`.
pub const XATTR_BAD: &str = "trusted.cairn.bitrot.bad";
/// Prefix of every bitrot xattr.
pub const PREFIX: &str = "trusted.cairn.bitrot.";
/// Virtual xattr: check this copy now (Cairn's own context only).
pub const SCRUB_KEY: &str = "cairn.bitrot.scrub";
/// Request xdata key of a [`SCRUB_KEY`] getxattr: read and checksum the copy even when it
/// has no signature to check (heal compares it with a damaged copy's signature).
pub const HASH_KEY: &str = "cairn.bitrot.want-hash";

const FORMAT: &str = "1";
const ALGORITHM: &str = "xxh3-128";
/// Read size while checksumming.
const CHUNK: u32 = 1 << 20;

const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        key: "signing",
        kind: OptionKind::Bool,
        default: Some("off"),
        doc: "Sign files once they are closed and quiet, and answer scrubs.",
    },
    OptionSpec {
        key: "signing-time",
        kind: OptionKind::Duration {
            min_ms: 1_000,
            max_ms: 86_400_000,
        },
        default: Some("120s"),
        doc: "How long a file must stay closed and unchanged before it is signed.",
    },
];

/// The type declaration.
pub const TYPE: TranslatorType = TranslatorType {
    decl: TypeDecl {
        type_name: "features/bitrot",
        arity: Arity::One,
        roles: &[Role::Brick],
        maturity: Maturity::Stable,
        options: OPTIONS,
        doc: "Signs quiet files, drops signatures before changes, checks copies for scrubs and refuses reads of damaged ones.",
    },
    build,
};

fn build(ctx: BuildCtx<'_>) -> Result<XlatorRef, String> {
    let o = ctx.options;
    let e = |e: cairn_volfiles::OptionError| e.to_string();
    let cfg = BitrotConfig {
        signing: o.bool("signing").map_err(e)?,
        signing_time: o.duration("signing-time").map_err(e)?,
    };
    Ok(Arc::new(Bitrot::new(ctx.name, ctx.children, cfg)))
}

/// What the options say.
#[derive(Clone, Debug)]
pub struct BitrotConfig {
    /// Sign quiet files.
    pub signing: bool,
    /// Quiet time before signing.
    pub signing_time: Duration,
}

impl Default for BitrotConfig {
    fn default() -> Self {
        BitrotConfig {
            signing: false,
            signing_time: Duration::from_secs(120),
        }
    }
}

/// A signature as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signature {
    /// The file version it covers.
    pub version: u64,
    /// xxh3-128 of the contents.
    pub hash: u128,
}

impl Signature {
    /// The xattr value.
    pub fn encode(&self) -> Vec<u8> {
        format!("{FORMAT}:{ALGORITHM}:{}:{:032x}", self.version, self.hash).into_bytes()
    }

    /// Reads an xattr value; `None` for a format or algorithm this version does not know.
    pub fn decode(raw: &[u8]) -> Option<Signature> {
        let text = std::str::from_utf8(raw).ok()?;
        let mut parts = text.trim().split(':');
        match (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) {
            (Some(FORMAT), Some(ALGORITHM), Some(v), Some(h), None) if h.len() == 32 => {
                Some(Signature {
                    version: v.parse().ok()?,
                    hash: u128::from_str_radix(h, 16).ok()?,
                })
            }
            _ => None,
        }
    }
}

/// What a scrub found about one copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Signed, and the contents match.
    Ok,
    /// Signed, and the contents do not match: now marked bad.
    Corrupt,
    /// Already marked bad.
    Bad,
    /// Quiet but unsigned: signed now.
    Signed,
    /// Unsigned and not quiet yet (or signing is off).
    Unsigned,
    /// Being changed, or waiting for its signature.
    Busy,
    /// A signature in a format this version cannot read.
    Unknown,
    /// Not a regular file (or one of distribute's pointers).
    Skipped,
}

impl Verdict {
    /// The word on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Corrupt => "corrupt",
            Verdict::Bad => "bad",
            Verdict::Signed => "signed",
            Verdict::Unsigned => "unsigned",
            Verdict::Busy => "busy",
            Verdict::Unknown => "unknown",
            Verdict::Skipped => "skipped",
        }
    }

    fn parse(s: &str) -> Option<Verdict> {
        [
            Verdict::Ok,
            Verdict::Corrupt,
            Verdict::Bad,
            Verdict::Signed,
            Verdict::Unsigned,
            Verdict::Busy,
            Verdict::Unknown,
            Verdict::Skipped,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// A scrub's answer for one copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScrubReply {
    /// What was found.
    pub verdict: Verdict,
    /// Bytes read to find it.
    pub bytes: u64,
    /// The checksum of the contents read (when read).
    pub hash: Option<u128>,
}

impl ScrubReply {
    /// The reply value.
    pub fn encode(&self) -> Vec<u8> {
        let hash = self
            .hash
            .map_or_else(|| "-".to_string(), |h| format!("{h:032x}"));
        format!("{} {} {hash}", self.verdict.as_str(), self.bytes).into_bytes()
    }

    /// Reads a reply value.
    pub fn decode(raw: &[u8]) -> Option<ScrubReply> {
        let text = std::str::from_utf8(raw).ok()?;
        let mut parts = text.split(' ');
        let verdict = Verdict::parse(parts.next()?)?;
        let bytes = parts.next()?.parse().ok()?;
        let hash = match parts.next()? {
            "-" => None,
            h => Some(u128::from_str_radix(h, 16).ok()?),
        };
        Some(ScrubReply {
            verdict,
            bytes,
            hash,
        })
    }
}

/// A file this brick is tracking: changed (or created) since its last signature.
#[derive(Debug)]
struct Tracked {
    /// Open descriptors that changed it.
    writers: usize,
    /// Changes running now.
    inflight: usize,
    /// Bumped by every change.
    epoch: u64,
    /// When the last change ended (or the last writer closed).
    last_change: Instant,
}

impl Tracked {
    fn new() -> Tracked {
        Tracked {
            writers: 0,
            inflight: 0,
            epoch: 0,
            last_change: Instant::now(),
        }
    }

    fn quiet(&self, for_at_least: Duration) -> bool {
        self.writers == 0 && self.inflight == 0 && self.last_change.elapsed() >= for_at_least
    }
}

struct Shared {
    cfg: BitrotConfig,
    files: Mutex<HashMap<Gfid, Tracked>>,
    /// Held while a signature is removed before a change, and while one is written: a
    /// change never overtakes a signature being written.
    gate: tokio::sync::Mutex<()>,
    /// Copies marked bad by this process (reads of them fail).
    bad: Mutex<std::collections::HashSet<Gfid>>,
    wake: Notify,
}

impl Shared {
    /// The end of a change or of a writer: forget untracked files when not signing.
    fn settle(&self, gfid: Gfid, writer_closed: bool, change_ended: bool) {
        if let Ok(mut m) = self.files.lock()
            && let Some(t) = m.get_mut(&gfid)
        {
            if writer_closed {
                t.writers = t.writers.saturating_sub(1);
            }
            if change_ended {
                t.inflight = t.inflight.saturating_sub(1);
            }
            t.last_change = Instant::now();
            if !self.cfg.signing && t.writers == 0 && t.inflight == 0 {
                m.remove(&gfid);
            }
        }
        self.wake.notify_one();
    }
}

/// Lives in the fd context of a descriptor that changed its file; when the descriptor goes
/// (released, or its connection closed), the file may become quiet.
struct Writer {
    shared: Arc<Shared>,
    gfid: Gfid,
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.shared.settle(self.gfid, true, false);
    }
}

const FD_KEY: &str = "features/bitrot";

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Cairn's own operations (heal, rebalance, scrub).
fn internal(cx: &Cx) -> bool {
    cx.pid == 0
}

fn signed_file(ia: &Iatt) -> bool {
    ia.kind == FileKind::File && ia.perm & 0o7777 != crate::cluster::dht::LINKTO_MODE
}

fn writes(flags: i32) -> bool {
    flags & libc::O_ACCMODE != libc::O_RDONLY
}

/// The bitrot translator.
pub struct Bitrot {
    base: XlatorBase,
    shared: Arc<Shared>,
    signer: Mutex<Option<JoinHandle<()>>>,
}

impl Bitrot {
    /// A bitrot node.
    pub fn new(name: &str, children: Vec<XlatorRef>, cfg: BitrotConfig) -> Bitrot {
        Bitrot {
            base: XlatorBase::new(name, TYPE.decl.type_name, children),
            shared: Arc::new(Shared {
                cfg,
                files: Mutex::new(HashMap::new()),
                gate: tokio::sync::Mutex::new(()),
                bad: Mutex::new(std::collections::HashSet::new()),
                wake: Notify::new(),
            }),
            signer: Mutex::new(None),
        }
    }

    fn child(&self) -> FopResult<&XlatorRef> {
        self.base.child()
    }

    /// Before a change of `gfid`: drops its signature if it may have one, and counts the
    /// change as running. Pair with [`Shared::settle`]`(.., false, true)`.
    async fn begin_change(&self, gfid: Gfid) -> FopResult<()> {
        if self.begin_tracked(gfid) {
            return Ok(());
        }
        let _gate = self.shared.gate.lock().await;
        if self.begin_tracked(gfid) {
            return Ok(());
        }
        remove_signature(self.child()?, gfid).await?;
        if let Ok(mut m) = self.shared.files.lock() {
            let t = m.entry(gfid).or_insert_with(Tracked::new);
            t.inflight += 1;
            t.epoch += 1;
        }
        Ok(())
    }

    /// The fast path of [`Self::begin_change`]: `gfid` is tracked (so it has no signature).
    fn begin_tracked(&self, gfid: Gfid) -> bool {
        match self.shared.files.lock() {
            Ok(mut m) => match m.get_mut(&gfid) {
                Some(t) => {
                    t.inflight += 1;
                    t.epoch += 1;
                    true
                }
                None => false,
            },
            Err(_) => false,
        }
    }

    /// Counts `fd` as a writer of its file (once).
    fn add_writer(&self, fd: &Fd) {
        if fd.ctx::<Writer>(FD_KEY).is_some() {
            return;
        }
        let gfid = fd.gfid();
        if let Ok(mut m) = self.shared.files.lock() {
            m.entry(gfid).or_insert_with(Tracked::new).writers += 1;
        }
        fd.set_ctx(
            FD_KEY,
            Arc::new(Writer {
                shared: Arc::clone(&self.shared),
                gfid,
            }),
        );
    }

    /// Runs a change of the file behind `fd`.
    async fn changing<T: Send>(
        &self,
        fd: &Fd,
        op: impl std::future::Future<Output = FopResult<T>> + Send,
    ) -> FopResult<T> {
        let gfid = fd.gfid();
        self.begin_change(gfid).await?;
        self.add_writer(fd);
        let r = op.await;
        self.shared.settle(gfid, false, true);
        r
    }

    fn is_bad(&self, gfid: Gfid) -> bool {
        self.shared.bad.lock().is_ok_and(|b| b.contains(&gfid))
    }

    fn refuse_bad(&self, gfid: Gfid) -> FopError {
        FopError::eio(format!(
            "{gfid}: this copy failed its bitrot check and waits for repair from another copy"
        ))
    }

    /// The scrub of one copy (see the module documentation). `want_hash`: checksum the
    /// contents even when there is no signature to compare with.
    pub async fn scrub(&self, gfid: Gfid, want_hash: bool) -> FopResult<ScrubReply> {
        let child = self.child()?;
        let cx = Cx::internal();
        let reply = async |verdict| -> FopResult<ScrubReply> {
            if want_hash && verdict != Verdict::Skipped {
                let (bytes, hash) = checksum(child, gfid).await?;
                return Ok(ScrubReply {
                    verdict,
                    bytes,
                    hash: Some(hash),
                });
            }
            Ok(ScrubReply {
                verdict,
                bytes: 0,
                hash: None,
            })
        };
        let ia = child
            .stat(&cx, Target::Loc(Loc::inode(gfid)), Xdata::new())
            .await?;
        if !signed_file(&ia) {
            return reply(Verdict::Skipped).await;
        }
        if self.is_bad(gfid) || get_xattr(child, gfid, XATTR_BAD).await?.is_some() {
            return reply(Verdict::Bad).await;
        }
        if self
            .shared
            .files
            .lock()
            .is_ok_and(|m| m.contains_key(&gfid))
        {
            return reply(Verdict::Busy).await;
        }
        let Some(raw) = get_xattr(child, gfid, XATTR_SIGNATURE).await? else {
            let age = now_secs().saturating_sub(u64::try_from(ia.ctime.sec).unwrap_or(0));
            if !self.shared.cfg.signing || age < self.shared.cfg.signing_time.as_secs() {
                return reply(Verdict::Unsigned).await;
            }
            // Quiet and never signed here: sign it now, as the signer would have.
            let busy = {
                let _gate = self.shared.gate.lock().await;
                match self.shared.files.lock() {
                    Ok(mut m) if !m.contains_key(&gfid) => {
                        let mut t = Tracked::new();
                        let now = Instant::now();
                        t.last_change =
                            now.checked_sub(self.shared.cfg.signing_time).unwrap_or(now);
                        m.insert(gfid, t);
                        false
                    }
                    _ => true,
                }
            };
            if busy {
                return reply(Verdict::Busy).await;
            }
            return Ok(match sign(child, &self.shared, gfid).await {
                Some((bytes, hash)) => ScrubReply {
                    verdict: Verdict::Signed,
                    bytes,
                    hash: Some(hash),
                },
                None => reply(Verdict::Busy).await?,
            });
        };
        let Some(sig) = Signature::decode(&raw) else {
            return reply(Verdict::Unknown).await;
        };
        let (bytes, hash) = checksum(child, gfid).await?;
        // Changed meanwhile? Every change starts by tracking the file (and dropping the
        // signature), so an untracked file with the same signature was not changed.
        let _gate = self.shared.gate.lock().await;
        let tracked = self
            .shared
            .files
            .lock()
            .map_or(true, |m| m.contains_key(&gfid));
        if tracked || get_xattr(child, gfid, XATTR_SIGNATURE).await?.as_deref() != Some(&raw[..]) {
            return Ok(ScrubReply {
                verdict: Verdict::Busy,
                bytes,
                hash: Some(hash),
            });
        }
        if hash == sig.hash {
            return Ok(ScrubReply {
                verdict: Verdict::Ok,
                bytes,
                hash: Some(hash),
            });
        }
        tracing::error!(%gfid, version = sig.version, signed = %format!("{:032x}", sig.hash), found = %format!("{hash:032x}"), "bitrot: this copy does not match its signature; marked bad, to be repaired from another copy");
        let mut x = Xdata::new();
        x.set(
            XATTR_BAD,
            format!("{FORMAT}:{}:{}", sig.version, now_secs()).into_bytes(),
        );
        let mut mark = Xdata::new();
        mark.set(DIRTY_KEY, vec![DATA]);
        child
            .setxattr(&cx, Target::Loc(Loc::inode(gfid)), x, 0, mark)
            .await?;
        if let Ok(mut b) = self.shared.bad.lock() {
            b.insert(gfid);
        }
        Ok(ScrubReply {
            verdict: Verdict::Corrupt,
            bytes,
            hash: Some(hash),
        })
    }
}

async fn get_xattr(child: &XlatorRef, gfid: Gfid, name: &str) -> FopResult<Option<Vec<u8>>> {
    match child
        .getxattr(
            &Cx::internal(),
            Target::Loc(Loc::inode(gfid)),
            Some(name.to_string()),
            Xdata::new(),
        )
        .await
    {
        Ok(x) => Ok(x.get(name).map(<[u8]>::to_vec)),
        Err(e) if e.errno == libc::ENODATA => Ok(None),
        Err(e) => Err(e),
    }
}

async fn remove_signature(child: &XlatorRef, gfid: Gfid) -> FopResult<()> {
    match child
        .removexattr(
            &Cx::internal(),
            Target::Loc(Loc::inode(gfid)),
            XATTR_SIGNATURE.to_string(),
            Xdata::new(),
        )
        .await
    {
        Ok(()) => {
            tracing::debug!(%gfid, "bitrot: signature dropped before a change");
            Ok(())
        }
        Err(e) if e.errno == libc::ENODATA || e.errno == libc::ENOENT => Ok(()),
        Err(e) => Err(e),
    }
}

/// Bytes and xxh3-128 of a copy's contents, read through `child`.
async fn checksum(child: &XlatorRef, gfid: Gfid) -> FopResult<(u64, u128)> {
    let cx = Cx::internal();
    let fd = Fd::new(gfid, libc::O_RDONLY);
    child
        .open(
            &cx,
            Loc::inode(gfid),
            libc::O_RDONLY,
            fd.clone(),
            Xdata::new(),
        )
        .await?;
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut off = 0u64;
    let r = loop {
        match child.read(&cx, fd.clone(), off, CHUNK, Xdata::new()).await {
            Ok(p) if p.is_empty() => break Ok((off, h.digest128())),
            Ok(p) => {
                h.update(p.bytes());
                off += p.len() as u64;
            }
            Err(e) => break Err(e),
        }
    };
    let _ = child.release(&cx, fd).await;
    r
}

/// Signs a tracked file if it is still quiet once read; `(bytes, hash)` when signed.
async fn sign(child: &XlatorRef, shared: &Shared, gfid: Gfid) -> Option<(u64, u128)> {
    let epoch = {
        let m = shared.files.lock().ok()?;
        let t = m.get(&gfid)?;
        if !t.quiet(shared.cfg.signing_time) {
            return None;
        }
        t.epoch
    };
    let cx = Cx::internal();
    let forget = || {
        if let Ok(mut m) = shared.files.lock() {
            m.remove(&gfid);
        }
    };
    match child
        .stat(&cx, Target::Loc(Loc::inode(gfid)), Xdata::new())
        .await
    {
        Ok(ia) if signed_file(&ia) => {}
        Ok(_) => {
            forget();
            return None;
        }
        Err(e) => {
            if e.errno == libc::ENOENT || e.errno == libc::ESTALE {
                forget();
            } else {
                tracing::warn!(%gfid, error = %e, "bitrot: cannot stat a file to sign");
            }
            return None;
        }
    }
    let (bytes, hash) = match checksum(child, gfid).await {
        Ok(v) => v,
        Err(e) => {
            if e.errno == libc::ENOENT || e.errno == libc::ESTALE {
                forget();
            } else {
                tracing::warn!(%gfid, error = %e, "bitrot: cannot read a file to sign");
            }
            return None;
        }
    };
    let version = match get_xattr(child, gfid, XATTR_VERSION).await {
        Ok(v) => v
            .and_then(|raw| std::str::from_utf8(&raw).ok()?.trim().parse::<u64>().ok())
            .unwrap_or(0)
            .saturating_add(1),
        Err(_) => return None,
    };
    let _gate = shared.gate.lock().await;
    {
        let mut m = shared.files.lock().ok()?;
        let t = m.get(&gfid)?;
        if t.epoch != epoch || t.writers != 0 || t.inflight != 0 {
            return None;
        }
        // From here a change finds the file untracked and waits for the gate, then drops
        // the signature written below.
        m.remove(&gfid);
    }
    let mut x = Xdata::new();
    x.set(XATTR_VERSION, version.to_string().into_bytes());
    x.set(XATTR_SIGNATURE, Signature { version, hash }.encode());
    match child
        .setxattr(&cx, Target::Loc(Loc::inode(gfid)), x, 0, Xdata::new())
        .await
    {
        Ok(()) => {
            tracing::debug!(%gfid, version, bytes, "bitrot: signed");
            Some((bytes, hash))
        }
        Err(e) => {
            tracing::warn!(%gfid, error = %e, "bitrot: cannot store a signature");
            if e.errno != libc::ENOENT
                && e.errno != libc::ESTALE
                && let Ok(mut m) = shared.files.lock()
            {
                m.entry(gfid).or_insert_with(Tracked::new);
            }
            None
        }
    }
}

/// Signs quiet files until stopped.
async fn signer(child: XlatorRef, shared: Arc<Shared>) {
    let tick =
        (shared.cfg.signing_time / 4).clamp(Duration::from_millis(250), Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep(tick) => {}
        }
        let due: Vec<Gfid> = match shared.files.lock() {
            Ok(m) => m
                .iter()
                .filter(|(_, t)| t.quiet(shared.cfg.signing_time))
                .map(|(g, _)| *g)
                .collect(),
            Err(_) => continue,
        };
        for gfid in due {
            sign(&child, &shared, gfid).await;
        }
    }
}

#[async_trait]
impl Translator for Bitrot {
    crate::xlator_base!();

    async fn start(&self) -> FopResult<()> {
        if self.shared.cfg.signing {
            let task = tokio::spawn(signer(self.child()?.clone(), Arc::clone(&self.shared)));
            if let Ok(mut s) = self.signer.lock() {
                *s = Some(task);
            }
        }
        Ok(())
    }

    async fn stop(&self) {
        if let Some(t) = self.signer.lock().ok().and_then(|mut s| s.take()) {
            t.abort();
        }
    }

    async fn open(&self, cx: &Cx, loc: Loc, flags: i32, fd: Fd, xdata: Xdata) -> FopResult<()> {
        if flags & libc::O_TRUNC != 0 && writes(flags) {
            self.changing(&fd, self.child()?.open(cx, loc, flags, fd.clone(), xdata))
                .await?;
        } else {
            self.child()?
                .open(cx, loc, flags, fd.clone(), xdata)
                .await?;
        }
        Ok(())
    }

    async fn lookup(&self, cx: &Cx, loc: Loc, xdata: Xdata) -> FopResult<Entry> {
        let mut e = self.child()?.lookup(cx, loc, xdata).await?;
        // A mark made before this process started is learnt from the lookups replicate
        // makes (they ask for it) before any open and read.
        if e.xdata.contains(XATTR_BAD)
            && !self.is_bad(e.iatt.gfid)
            && let Ok(mut b) = self.shared.bad.lock()
        {
            b.insert(e.iatt.gfid);
        }
        // Content a lookup carries (quick-read) is a read: a damaged copy serves none.
        if self.is_bad(e.iatt.gfid) {
            e.xdata.remove(crate::performance::quick_read::CONTENT_KEY);
        }
        Ok(e)
    }

    async fn create(
        &self,
        cx: &Cx,
        loc: Loc,
        flags: i32,
        mode: u32,
        umask: u32,
        fd: Fd,
        xdata: Xdata,
    ) -> FopResult<Entry> {
        let child = self.child()?;
        // Without O_EXCL an existing file may be opened, and with O_TRUNC emptied: its
        // signature must go first. So the create runs without O_TRUNC, and an existing
        // file is truncated afterwards, as a change.
        let truncate = flags & libc::O_EXCL == 0 && flags & libc::O_TRUNC != 0;
        let mut e = child
            .create(
                cx,
                loc,
                if truncate {
                    flags & !libc::O_TRUNC
                } else {
                    flags
                },
                mode,
                umask,
                fd.clone(),
                xdata,
            )
            .await?;
        let created = e.xdata.remove(CREATED_KEY).is_some();
        if created {
            // New: no signature to drop; tracked until it is signed.
            if (self.shared.cfg.signing || writes(flags))
                && let Ok(mut m) = self.shared.files.lock()
            {
                m.entry(e.iatt.gfid).or_insert_with(Tracked::new);
            }
            if writes(flags) {
                self.add_writer(&fd);
            }
        } else if truncate && e.iatt.size > 0 {
            e.iatt = self
                .changing(
                    &fd,
                    child.truncate(cx, Target::Fd(fd.clone()), 0, Xdata::new()),
                )
                .await?;
        }
        Ok(e)
    }

    async fn read(
        &self,
        cx: &Cx,
        fd: Fd,
        offset: u64,
        size: u32,
        xdata: Xdata,
    ) -> FopResult<Payload> {
        if self.is_bad(fd.gfid()) {
            return Err(self.refuse_bad(fd.gfid()));
        }
        self.child()?.read(cx, fd, offset, size, xdata).await
    }

    async fn write(
        &self,
        cx: &Cx,
        fd: Fd,
        offset: u64,
        data: Payload,
        xdata: Xdata,
    ) -> FopResult<Iatt> {
        self.changing(
            &fd,
            self.child()?.write(cx, fd.clone(), offset, data, xdata),
        )
        .await
    }

    async fn fallocate(
        &self,
        cx: &Cx,
        fd: Fd,
        mode: i32,
        offset: u64,
        len: u64,
        xdata: Xdata,
    ) -> FopResult<()> {
        self.changing(
            &fd,
            self.child()?
                .fallocate(cx, fd.clone(), mode, offset, len, xdata),
        )
        .await
    }

    async fn truncate(&self, cx: &Cx, target: Target, size: u64, xdata: Xdata) -> FopResult<Iatt> {
        match &target {
            Target::Fd(fd) => {
                let fd = fd.clone();
                self.changing(&fd, self.child()?.truncate(cx, target, size, xdata))
                    .await
            }
            Target::Loc(_) => {
                let Some(gfid) = target.gfid() else {
                    return self.child()?.truncate(cx, target, size, xdata).await;
                };
                self.begin_change(gfid).await?;
                let r = self.child()?.truncate(cx, target, size, xdata).await;
                self.shared.settle(gfid, false, true);
                r
            }
        }
    }

    async fn setxattr(
        &self,
        cx: &Cx,
        target: Target,
        xattrs: Xdata,
        flags: i32,
        xdata: Xdata,
    ) -> FopResult<()> {
        if !internal(cx) && xattrs.iter().any(|(k, _)| k.starts_with(PREFIX)) {
            return Err(FopError::new(
                libc::EPERM,
                format!("{PREFIX}* xattrs are kept by the brick's bitrot translator"),
            ));
        }
        self.child()?
            .setxattr(cx, target, xattrs, flags, xdata)
            .await
    }

    async fn removexattr(
        &self,
        cx: &Cx,
        target: Target,
        name: String,
        xdata: Xdata,
    ) -> FopResult<()> {
        if name.starts_with(PREFIX) {
            if !internal(cx) {
                return Err(FopError::new(
                    libc::EPERM,
                    format!("{PREFIX}* xattrs are kept by the brick's bitrot translator"),
                ));
            }
            if name == XATTR_BAD
                && let Some(g) = target.gfid()
            {
                let r = self.child()?.removexattr(cx, target, name, xdata).await;
                if r.is_ok() {
                    if let Ok(mut b) = self.shared.bad.lock() {
                        b.remove(&g);
                    }
                    tracing::info!(gfid = %g, "bitrot: copy repaired; bad mark removed");
                }
                return r;
            }
        }
        self.child()?.removexattr(cx, target, name, xdata).await
    }

    async fn getxattr(
        &self,
        cx: &Cx,
        target: Target,
        name: Option<String>,
        xdata: Xdata,
    ) -> FopResult<Xdata> {
        if name.as_deref() == Some(SCRUB_KEY) {
            if !internal(cx) {
                return Err(FopError::new(
                    libc::EPERM,
                    format!("{SCRUB_KEY} is for Cairn's scrubber"),
                ));
            }
            let gfid = target
                .gfid()
                .ok_or_else(|| FopError::invalid(format!("{SCRUB_KEY} needs a gfid")))?;
            let r = self.scrub(gfid, xdata.contains(HASH_KEY)).await?;
            let mut x = Xdata::new();
            x.set(SCRUB_KEY, r.encode());
            return Ok(x);
        }
        self.child()?.getxattr(cx, target, name, xdata).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_round_trip_and_unknown_formats_are_not_read() {
        let s = Signature {
            version: 7,
            hash: 0x0123_4567_89ab_cdef_0011_2233_4455_6677,
        };
        assert_eq!(s.encode(), b"1:xxh3-128:7:0123456789abcdef0011223344556677");
        assert_eq!(Signature::decode(&s.encode()), Some(s));
        for bad in [
            &b""[..],
            b"2:xxh3-128:7:0123456789abcdef0011223344556677",
            b"1:sha256:7:0123456789abcdef0011223344556677",
            b"1:xxh3-128:x:0123456789abcdef0011223344556677",
            b"1:xxh3-128:7:0123",
            b"1:xxh3-128:7:0123456789abcdef0011223344556677:9",
            b"\xff",
        ] {
            assert_eq!(
                Signature::decode(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn scrub_replies_round_trip() {
        for r in [
            ScrubReply {
                verdict: Verdict::Corrupt,
                bytes: 529_408,
                hash: Some(42),
            },
            ScrubReply {
                verdict: Verdict::Busy,
                bytes: 0,
                hash: None,
            },
        ] {
            assert_eq!(ScrubReply::decode(&r.encode()), Some(r));
        }
        assert_eq!(ScrubReply::decode(b"fine 1 -"), None);
        assert_eq!(ScrubReply::decode(b"ok x -"), None);
    }
}
