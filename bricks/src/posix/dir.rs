//! Directory reading: opendir, readdir(plus), fsyncdir.
//!
//! A directory stream stays open in the fd's context. Each entry carries the filesystem's
//! own cookie (`d_off`) for the position after it, so a client resumes exactly where it
//! stopped even after its buffer filled mid-batch; a request at another offset seeks.
//! `.cairn` at the brick root is never listed.

use std::path::PathBuf;
use std::sync::Mutex;

use cairn_translators::{DirEntry, Fd, FileKind, FopError, FopResult, Gfid, Loc};
use rustix::fs::{Dir, FileType, Mode, OFlags};

use super::data::CTX;
use super::store::{Store, iatt, lstat, sys_error};
use crate::layout::META_DIR;

/// A directory open on the brick.
pub struct OpenDir {
    /// Its path.
    pub path: PathBuf,
    gfid: Gfid,
    stream: Mutex<Stream>,
}

struct Stream {
    dir: Dir,
    /// Cookie of the position the stream is at (0: the start).
    pos: u64,
}

fn kind_of(t: FileType) -> Option<FileKind> {
    Some(match t {
        FileType::RegularFile => FileKind::File,
        FileType::Directory => FileKind::Dir,
        FileType::Symlink => FileKind::Symlink,
        FileType::Fifo => FileKind::Fifo,
        FileType::Socket => FileKind::Socket,
        FileType::CharacterDevice => FileKind::CharDev,
        FileType::BlockDevice => FileKind::BlockDev,
        FileType::Unknown => return None,
    })
}

impl Store {
    pub(crate) fn opendir(&self, loc: &Loc) -> FopResult<OpenDir> {
        let (path, ia) = self.stat_loc(loc)?;
        if ia.kind != FileKind::Dir {
            return Err(FopError::new(
                libc::ENOTDIR,
                format!("{} is not a directory", path.display()),
            ));
        }
        let fd = rustix::fs::open(
            &path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| sys_error(e, "opendir", &path))?;
        let dir = Dir::new(fd).map_err(|e| sys_error(e, "opendir", &path))?;
        Ok(OpenDir {
            path,
            gfid: ia.gfid,
            stream: Mutex::new(Stream { dir, pos: 0 }),
        })
    }

    /// Entries after cookie `offset`, about `size` bytes' worth (at least one if any is
    /// left). An empty list is the end of the directory.
    pub(crate) fn readdir(
        &self,
        fd: &Fd,
        offset: u64,
        size: u32,
        plus: bool,
    ) -> FopResult<Vec<DirEntry>> {
        let od = fd.ctx::<OpenDir>(CTX).ok_or_else(|| {
            FopError::new(libc::EBADF, format!("{fd:?} is not an open directory"))
        })?;
        let mut st = od
            .stream
            .lock()
            .map_err(|_| FopError::eio("directory stream poisoned"))?;
        if offset != st.pos {
            if offset == 0 {
                st.dir.rewind();
            } else {
                let off = i64::try_from(offset)
                    .map_err(|_| FopError::invalid("directory offset out of range"))?;
                st.dir
                    .seek(off)
                    .map_err(|e| sys_error(e, "seek in directory", &od.path))?;
            }
            st.pos = offset;
        }
        let at_root = od.gfid.is_root();
        let mut out = Vec::new();
        let mut used = 0usize;
        while used < size as usize {
            let ent = match st.dir.read() {
                None => break,
                Some(Ok(e)) => e,
                Some(Err(e)) => return Err(sys_error(e, "readdir", &od.path)),
            };
            let cookie = ent.offset() as u64;
            st.pos = cookie;
            let Ok(name) = ent.file_name().to_str().map(str::to_string) else {
                tracing::warn!(dir = %od.path.display(), name = ?ent.file_name(), "skipping a name that is not UTF-8");
                continue;
            };
            if at_root && name == META_DIR {
                continue;
            }
            used += if plus { 160 } else { 32 } + name.len();
            if name == "." || name == ".." {
                out.push(DirEntry {
                    name,
                    offset: cookie,
                    gfid: Gfid::NULL,
                    kind: FileKind::Dir,
                    iatt: None,
                });
                continue;
            }
            let child = od.path.join(&name);
            let known_kind = kind_of(ent.file_type());
            let meta = if plus || known_kind.is_none() {
                match lstat(&child) {
                    Ok(m) => Some(m),
                    // Removed since the directory was read.
                    Err(e) if e.errno == libc::ENOENT => continue,
                    Err(e) => return Err(e),
                }
            } else {
                None
            };
            let kind = known_kind
                .or_else(|| {
                    meta.as_ref()
                        .and_then(|m| FileKind::from_mode(std::os::unix::fs::MetadataExt::mode(m)))
                })
                .unwrap_or(FileKind::File);
            let gfid = match self.ensure_gfid(
                &child,
                meta.as_ref(),
                kind == FileKind::Dir,
                od.gfid,
                &name,
                None,
            ) {
                Ok(g) => g,
                Err(e) if e.errno == libc::ENOENT => continue,
                Err(e) => return Err(e),
            };
            out.push(DirEntry {
                name,
                offset: cookie,
                gfid,
                kind,
                iatt: meta.map(|m| iatt(&m, gfid)),
            });
        }
        Ok(out)
    }

    pub(crate) fn fsyncdir(&self, fd: &Fd) -> FopResult<()> {
        let od = fd.ctx::<OpenDir>(CTX).ok_or_else(|| {
            FopError::new(libc::EBADF, format!("{fd:?} is not an open directory"))
        })?;
        super::data::sync_dir(&od.path)
    }
}
