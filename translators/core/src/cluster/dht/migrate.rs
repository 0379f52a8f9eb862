//! Moving a file to its hashed group after a re-layout (rebalance).
//!
//! Under distribute's entry lock on the name (the lock renames take) and replicate's write
//! lock on the source copy (the lock every writer's first write through an fd takes, in the
//! same brick order), so that no write lands on the source while it is copied:
//!
//! 1. the destination is created in the hashed group under the file's own name and gfid,
//!    with mode `01000` and a linkto back to the source — hidden from listings, and a lookup
//!    that lands on it follows it to the source, which still answers;
//! 2. the contents, owner, times and user xattrs are copied;
//! 3. the destination gets the file's mode and loses its linkto: it is now the file;
//! 4. the source is unlinked, then the locks are released.
//!
//! A symlink has no contents to copy: the destination is made as the same link at once
//! and the source removed. Devices, fifos, sockets and hard-linked files stay where they
//! are (reported as skipped).
//!
//! A client holding the file open keeps its fd on the source: its next change through that
//! fd reports `nlink == 0`, and distribute then finds the file in its new group, opens it
//! there and makes the change again there ([`Dht::follow_migration`]), so no acknowledged
//! write is lost.

use super::*;

/// What happened to one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Migrated {
    /// Copied to its hashed group (bytes of contents).
    Moved {
        /// Bytes copied.
        bytes: u64,
    },
    /// Already in its hashed group.
    InPlace,
    /// Left where it is, and why (it stays reachable).
    Skipped(String),
}

/// What [`Dht::settle_dir`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SettleOutcome {
    /// Every file is in its hashed group: the layout is now settled.
    Settled,
    /// Some name is still outside its hashed group.
    Unsettled(String),
}

const COPY_CHUNK: u32 = 1 << 20;

impl Dht {
    /// Takes replicate's write lock on `gfid` in group `g` (or the brick's, for a plain
    /// group); returns what to release.
    async fn lock_source(&self, g: usize, gfid: Gfid) -> FopResult<(Cx, Vec<usize>)> {
        let lcx = with_owner(&Cx::internal(), new_owner());
        let c = self.child(g)?;
        let domain = crate::cluster::afr::txn::DOMAIN;
        if let Some(afr) = c.as_any().downcast_ref::<crate::cluster::afr::Afr>() {
            let bricks = afr.lock_ordered(&lcx, domain, gfid).await?;
            Ok((lcx, bricks))
        } else {
            c.inodelk(
                &lcx,
                domain.to_string(),
                Target::Loc(Loc::inode(gfid)),
                LockWait::Wait,
                Flock::whole(LockType::Write),
                Xdata::new(),
            )
            .await?;
            Ok((lcx, Vec::new()))
        }
    }

    async fn unlock_source(&self, g: usize, gfid: Gfid, lcx: &Cx, bricks: &[usize]) {
        let Ok(c) = self.child(g) else { return };
        let domain = crate::cluster::afr::txn::DOMAIN;
        if let Some(afr) = c.as_any().downcast_ref::<crate::cluster::afr::Afr>() {
            afr.unlock_bricks(lcx, domain, gfid, bricks).await;
        } else {
            let _ = c
                .inodelk(
                    lcx,
                    domain.to_string(),
                    Target::Loc(Loc::inode(gfid)),
                    LockWait::Wait,
                    Flock::whole(LockType::Unlock),
                    Xdata::new(),
                )
                .await;
        }
    }

    /// Moves the file `parent/name` to its hashed group under the directory's current
    /// layout, online (see the [module documentation](self)).
    pub async fn migrate_file(&self, cx: &Cx, parent: Gfid, name: &str) -> FopResult<Migrated> {
        let loc = Loc::entry(parent, name);
        let r = match self.resolve(cx, &loc, &Xdata::new()).await {
            Ok(r) => r,
            Err(e) if is_gone(&e) => return Ok(Migrated::Skipped("removed meanwhile".into())),
            Err(e) => return Err(e),
        };
        match r.entry.iatt.kind {
            FileKind::File | FileKind::Symlink => {}
            FileKind::Dir => return Ok(Migrated::Skipped("a directory".into())),
            _ => {
                return Ok(Migrated::Skipped(
                    "a device, fifo or socket (they stay where they are)".into(),
                ));
            }
        }
        let (s, Some(t)) = (r.cached, r.hashed) else {
            return Ok(Migrated::Skipped("no hashed group".into()));
        };
        if s == t {
            return Ok(Migrated::InPlace);
        }
        if r.entry.iatt.nlink > 1 {
            return Ok(Migrated::Skipped("has hard links".into()));
        }
        let gfid = r.entry.iatt.gfid;
        let ncx = self.lock_name(t, parent, name).await?;
        let result = match self.lock_source(s, gfid).await {
            Ok((lcx, bricks)) => {
                let res = self.move_locked(cx, parent, name, gfid, s, t).await;
                self.unlock_source(s, gfid, &lcx, &bricks).await;
                res
            }
            Err(e) => Err(e),
        };
        self.unlock_now(&ncx, t, parent, name).await;
        if matches!(result, Ok(Migrated::Moved { .. })) {
            self.remember(gfid, Node::File(t));
        }
        result
    }

    async fn move_locked(
        &self,
        cx: &Cx,
        parent: Gfid,
        name: &str,
        gfid: Gfid,
        s: usize,
        t: usize,
    ) -> FopResult<Migrated> {
        let src = self.child(s)?;
        let dst = self.child(t)?;
        let loc = Loc::entry(parent, name);
        // Under the locks: is it still the same file, here?
        let iatt = match src.lookup(cx, loc.clone(), Xdata::new()).await {
            Ok(e) if e.iatt.gfid == gfid && !is_linkto(&e) => e.iatt,
            Ok(_) => return Ok(Migrated::Skipped("replaced meanwhile".into())),
            Err(e) if is_gone(&e) => return Ok(Migrated::Skipped("removed meanwhile".into())),
            Err(e) => return Err(e),
        };
        if iatt.nlink > 1 {
            return Ok(Migrated::Skipped("has hard links".into()));
        }
        // The destination's place: a pointer may be there (from a rename); anything else
        // means another file took the name in the new group.
        match dst
            .lookup(cx, loc.clone(), lookup_xdata(&Xdata::new()))
            .await
        {
            Ok(e) if is_linkto(&e) => {
                dst.unlink(cx, loc.clone(), Xdata::new()).await?;
            }
            Ok(_) => {
                return Ok(Migrated::Skipped(
                    "another file has the name in the new group".into(),
                ));
            }
            Err(e) if is_gone(&e) => {}
            Err(e) => return Err(e),
        }
        if iatt.kind == FileKind::Symlink {
            return self.move_symlink(cx, &loc, &iatt, s, t).await;
        }
        let mut x = Xdata::new();
        x.set(
            format!("{SETXATTR_ON_CREATE}{XATTR_LINKTO}"),
            self.names[s].as_bytes().to_vec(),
        );
        dst.mknod(
            cx,
            loc.clone().with_gfid(gfid),
            libc::S_IFREG | LINKTO_MODE,
            0,
            0,
            x,
        )
        .await?;
        match self.copy_and_switch(cx, gfid, s, t, &iatt).await {
            Ok(bytes) => {
                // The destination is the file now; the source goes (a WORM file too: it
                // is moved, not removed).
                let mut moved = Xdata::new();
                moved.set(crate::features::worm::MIGRATED_KEY, b"1".to_vec());
                if let Err(e) = src.unlink(cx, loc, moved).await
                    && !is_gone(&e)
                {
                    tracing::warn!(file = %name, error = %e, "moved a file but could not remove its old copy; lookups find the new one");
                }
                Ok(Migrated::Moved { bytes })
            }
            Err(e) => {
                // Not switched yet: the destination is still a hidden pointer. Remove it.
                let still_pointer = dst
                    .lookup(cx, Loc::entry(parent, name), Xdata::new())
                    .await
                    .is_ok_and(|e| e.iatt.gfid == gfid && is_linkto(&e));
                if still_pointer {
                    let _ = dst.unlink(cx, Loc::entry(parent, name), Xdata::new()).await;
                }
                Err(e)
            }
        }
    }

    /// Moves a symlink (under the same locks as a file): it has no contents that could
    /// change, so the destination is made as the same link at once (gfid, target, owner
    /// and times) and the source then goes. Between the two, a lookup finds either copy,
    /// both the same link.
    async fn move_symlink(
        &self,
        cx: &Cx,
        loc: &Loc,
        iatt: &Iatt,
        s: usize,
        t: usize,
    ) -> FopResult<Migrated> {
        let src = self.child(s)?;
        let dst = self.child(t)?;
        let gfid = iatt.gfid;
        let target = src.readlink(cx, Loc::inode(gfid), Xdata::new()).await?;
        dst.symlink(cx, target, loc.clone().with_gfid(gfid), 0, Xdata::new())
            .await?;
        let owned = dst
            .setattr(
                cx,
                Target::Loc(Loc::inode(gfid)),
                SetAttr {
                    uid: Some(iatt.uid),
                    gid: Some(iatt.gid),
                    atime: Some(TimeSet::At(iatt.atime)),
                    mtime: Some(TimeSet::At(iatt.mtime)),
                    ..SetAttr::default()
                },
                Xdata::new(),
            )
            .await;
        if let Err(e) = owned {
            let _ = dst.unlink(cx, loc.clone(), Xdata::new()).await;
            return Err(e);
        }
        if let Err(e) = src.unlink(cx, loc.clone(), Xdata::new()).await
            && !is_gone(&e)
        {
            tracing::warn!(link = %loc, error = %e, "moved a symlink but could not remove its old copy; lookups find the new one");
        }
        Ok(Migrated::Moved { bytes: 0 })
    }

    /// Copies contents, owner, times and user xattrs from the source to the (hidden)
    /// destination, then makes the destination the file. Returns the bytes copied.
    async fn copy_and_switch(
        &self,
        cx: &Cx,
        gfid: Gfid,
        s: usize,
        t: usize,
        iatt: &Iatt,
    ) -> FopResult<u64> {
        let src = self.child(s)?;
        let dst = self.child(t)?;
        let sfd = Fd::new(gfid, libc::O_RDONLY);
        let dfd = Fd::new(gfid, libc::O_WRONLY);
        src.open(
            cx,
            Loc::inode(gfid),
            libc::O_RDONLY,
            sfd.clone(),
            Xdata::new(),
        )
        .await?;
        let copied = async {
            dst.open(
                cx,
                Loc::inode(gfid),
                libc::O_WRONLY,
                dfd.clone(),
                Xdata::new(),
            )
            .await?;
            let r = async {
                let mut off = 0u64;
                loop {
                    let chunk = src
                        .read(cx, sfd.clone(), off, COPY_CHUNK, Xdata::new())
                        .await?;
                    if chunk.is_empty() {
                        break;
                    }
                    let n = chunk.len() as u64;
                    dst.write(cx, dfd.clone(), off, chunk, Xdata::new()).await?;
                    off += n;
                }
                if off < iatt.size {
                    // A sparse tail (or a hole at the end): keep the size.
                    dst.truncate(cx, Target::Fd(dfd.clone()), iatt.size, Xdata::new())
                        .await?;
                }
                dst.fsync(cx, dfd.clone(), false, Xdata::new()).await?;
                Ok::<u64, FopError>(off)
            }
            .await;
            let _ = dst.release(cx, dfd.clone()).await;
            r
        }
        .await;
        let _ = src.release(cx, sfd).await;
        let bytes = copied?;
        // User xattrs.
        let all = src
            .getxattr(cx, Target::Loc(Loc::inode(gfid)), None, Xdata::new())
            .await
            .unwrap_or_default();
        let mut user = Xdata::new();
        for (k, v) in all.iter() {
            if k.starts_with("user.") {
                user.set(k.clone(), v.clone());
            }
        }
        // A WORM file's retention moves with it (set last, once the copy is whole).
        let retention = all
            .get(crate::features::worm::XATTR_WORM)
            .map(<[u8]>::to_vec);
        if !user.is_empty() {
            dst.setxattr(cx, Target::Loc(Loc::inode(gfid)), user, 0, Xdata::new())
                .await?;
        }
        // Owner and times, then the mode (which makes it visible), then drop the pointer.
        dst.setattr(
            cx,
            Target::Loc(Loc::inode(gfid)),
            SetAttr {
                uid: Some(iatt.uid),
                gid: Some(iatt.gid),
                atime: Some(TimeSet::At(iatt.atime)),
                mtime: Some(TimeSet::At(iatt.mtime)),
                ..SetAttr::default()
            },
            Xdata::new(),
        )
        .await?;
        dst.setattr(
            cx,
            Target::Loc(Loc::inode(gfid)),
            SetAttr {
                perm: Some(iatt.perm & 0o7777),
                ..SetAttr::default()
            },
            Xdata::new(),
        )
        .await?;
        dst.removexattr(
            cx,
            Target::Loc(Loc::inode(gfid)),
            XATTR_LINKTO.to_string(),
            Xdata::new(),
        )
        .await?;
        if let Some(r) = retention {
            let mut x = Xdata::new();
            x.set(crate::features::worm::XATTR_WORM, r);
            dst.setxattr(cx, Target::Loc(Loc::inode(gfid)), x, 0, Xdata::new())
                .await?;
        }
        Ok(bytes)
    }

    /// Removes pointers in `dir` that no lookup would use any more (on a group that is not
    /// their name's hashed group) and reports whether every file is in its hashed group;
    /// if so, marks the layout settled (a miss on the hashed group is then definite).
    pub async fn settle_dir(&self, cx: &Cx, dir: Gfid) -> FopResult<SettleOutcome> {
        let layout = self.reload_layout(cx, dir).await?;
        if !layout.is_complete() {
            return Ok(SettleOutcome::Unsettled("the layout has holes".into()));
        }
        if layout.is_settled() {
            return Ok(SettleOutcome::Settled);
        }
        let listing = self.list_all(cx, dir).await?;
        let mut outside = None;
        // Subdirectories must exist in every group (a lookup by name creates them).
        let mut subdirs: Vec<&str> = Vec::new();
        for (_, entries) in &listing {
            for e in entries {
                if e.kind == FileKind::Dir && !subdirs.contains(&e.name.as_str()) {
                    subdirs.push(&e.name);
                }
            }
        }
        for name in subdirs {
            if dir_in_every_group(&listing, self.n(), name) {
                continue;
            }
            let _ = self.lookup(cx, Loc::entry(dir, name), Xdata::new()).await;
            for g in 0..self.n() {
                let here = self
                    .child(g)?
                    .lookup(cx, Loc::entry(dir, name), Xdata::new())
                    .await;
                if !here.is_ok_and(|e| e.iatt.kind == FileKind::Dir) {
                    return Ok(SettleOutcome::Unsettled(format!(
                        "subdirectory {name:?} is missing in a group"
                    )));
                }
            }
        }
        for (g, entries) in &listing {
            for e in entries {
                if e.kind == FileKind::Dir {
                    continue;
                }
                let h = layout.group_for(self.hash(&e.name));
                if is_linkto_entry(e) {
                    if h != Some(*g) {
                        let _ = self
                            .child(*g)?
                            .unlink(cx, Loc::entry(dir, e.name.clone()), Xdata::new())
                            .await;
                    }
                } else if let Some(h) = h.filter(|h| h != g) {
                    // A move interrupted after its switch leaves the old copy behind: the
                    // hashed group holds the file itself (same gfid, not a pointer), so
                    // this one is a leftover.
                    let there = self
                        .child(h)?
                        .lookup(cx, Loc::entry(dir, e.name.clone()), Xdata::new())
                        .await;
                    match there {
                        Ok(t) if t.iatt.gfid == e.gfid && !is_linkto(&t) && !e.gfid.is_null() => {
                            tracing::info!(dir = %dir, file = %e.name, "removing the old copy an interrupted move left behind");
                            self.child(*g)?
                                .unlink(cx, Loc::entry(dir, e.name.clone()), Xdata::new())
                                .await?;
                        }
                        _ => {
                            if outside.is_none() {
                                outside = Some(e.name.clone());
                            }
                        }
                    }
                } else if h.is_none() && outside.is_none() {
                    outside = Some(e.name.clone());
                }
            }
        }
        if let Some(name) = outside {
            return Ok(SettleOutcome::Unsettled(format!(
                "{name:?} is not in its hashed group"
            )));
        }
        let next: Vec<GroupLayout> = (0..self.n())
            .map(|i| GroupLayout {
                generation: layout.generation(),
                settled: true,
                range: layout.range_of(i),
            })
            .collect();
        // Under the layout lock, and only if nobody laid the directory out meanwhile.
        let generation = layout.generation();
        self.with_layout_lock(dir, async {
            if self.read_layout(cx, dir).await?.generation() != generation {
                return Ok(SettleOutcome::Unsettled("laid out again meanwhile".into()));
            }
            self.write_layout(cx, dir, &next).await?;
            Ok(SettleOutcome::Settled)
        })
        .await
    }
}
