//! Rename across groups.
//!
//! A file's data never moves in a rename: it is renamed inside the group that holds it, and
//! the new name's hashed group gets a linkto pointer to it (created *before* the data is
//! renamed, so the new name is never unreachable). Afterwards the old name's pointer and a
//! replaced file's data in a third group are removed. Both names are locked (distribute's
//! entry lock on their hashed groups, in a fixed order) so concurrent renames and creates of
//! the same names serialise.
//!
//! A directory exists in every group: it is renamed on the new name's hashed group first
//! (whose answer decides), then on the others.

use futures::future::join_all;

use super::*;

const RENAME_NOREPLACE: u32 = 1;
const RENAME_EXCHANGE: u32 = 2;

impl Dht {
    pub(super) async fn do_rename(
        &self,
        cx: &Cx,
        old: Loc,
        new: Loc,
        flags: u32,
        xdata: Xdata,
    ) -> FopResult<()> {
        let mut tries = 0;
        loop {
            match self.rename_once(cx, &old, &new, flags, &xdata).await {
                // ESTALE: our layout is older than a brick's. ENOENT: the source may have
                // been moved by a rebalance between finding it and renaming it (the move
                // holds the name's lock until it is done): look again.
                Err(e)
                    if (e.errno == libc::ESTALE || e.errno == libc::ENOENT)
                        && tries < STALE_RETRIES =>
                {
                    tries += 1;
                    if let Some(p) = new.parent {
                        self.reload_layout(cx, p).await?;
                    }
                    if let Some(p) = old.parent {
                        self.reload_layout(cx, p).await?;
                    }
                }
                other => return other,
            }
        }
    }

    async fn rename_once(
        &self,
        cx: &Cx,
        old: &Loc,
        new: &Loc,
        flags: u32,
        xdata: &Xdata,
    ) -> FopResult<()> {
        let (op, on) = old.parent_and_name()?;
        let (np, nn) = new.parent_and_name()?;
        let src = self.resolve(cx, &Loc::entry(op, on), &Xdata::new()).await?;
        let dst = match self.resolve(cx, &Loc::entry(np, nn), &Xdata::new()).await {
            Ok(r) => Some(r),
            Err(e) if is_gone(&e) => None,
            Err(e) => return Err(e),
        };
        if let Some(d) = &dst {
            if flags & RENAME_NOREPLACE != 0 {
                return Err(FopError::new(libc::EEXIST, format!("{new} exists")));
            }
            if d.entry.iatt.gfid == src.entry.iatt.gfid {
                // Two names of one file: rename(2) does nothing.
                return Ok(());
            }
            let (sd, dd) = (
                src.entry.iatt.kind == FileKind::Dir,
                d.entry.iatt.kind == FileKind::Dir,
            );
            if flags & RENAME_EXCHANGE == 0 {
                if sd && !dd {
                    return Err(FopError::new(
                        libc::ENOTDIR,
                        format!("{new} is not a directory"),
                    ));
                }
                if !sd && dd {
                    return Err(FopError::new(libc::EISDIR, format!("{new} is a directory")));
                }
            }
        } else if flags & RENAME_EXCHANGE != 0 {
            return Err(FopError::new(libc::ENOENT, format!("{new} does not exist")));
        }
        let nlayout = self.layout(cx, np).await?;
        let d_h = nlayout.group_for(self.hash(nn)).ok_or_else(|| {
            FopError::eio(format!(
                "the layout of directory <{np}> has no range for {nn:?}"
            ))
        })?;
        let s_h = src.hashed.unwrap_or(src.cached);
        // Lock both names, in a fixed order.
        let mut names = vec![(s_h, op, on.to_string()), (d_h, np, nn.to_string())];
        names.sort();
        names.dedup();
        let mut held = Vec::new();
        for (g, p, n) in &names {
            match self.lock_name(*g, *p, n).await {
                Ok(lcx) => held.push((lcx, *g, *p, n.clone())),
                Err(e) => {
                    for (lcx, g, p, n) in held {
                        self.unlock_name(lcx, g, p, &n);
                    }
                    return Err(e);
                }
            }
        }
        let mut gx = gen_xdata(xdata, &nlayout);
        let olayout = self.layout(cx, op).await?;
        gx.set(
            LAYOUT_GEN_SRC_KEY,
            olayout.generation().to_be_bytes().to_vec(),
        );
        let result = if src.entry.iatt.kind == FileKind::Dir {
            self.rename_dir(cx, old, new, flags, &gx, dst.as_ref(), d_h)
                .await
        } else if flags & RENAME_EXCHANGE != 0 {
            self.exchange_files(cx, old, new, flags, &gx, &src, dst.as_ref(), d_h)
                .await
        } else {
            self.rename_file(cx, old, new, flags, &gx, &src, dst.as_ref(), d_h)
                .await
        };
        for (lcx, g, p, n) in held {
            self.unlock_name(lcx, g, p, &n);
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn rename_file(
        &self,
        cx: &Cx,
        old: &Loc,
        new: &Loc,
        flags: u32,
        gx: &Xdata,
        src: &Resolved,
        dst: Option<&Resolved>,
        d_h: usize,
    ) -> FopResult<()> {
        let (op, on) = old.parent_and_name()?;
        let (np, nn) = new.parent_and_name()?;
        let gfid = src.entry.iatt.gfid;
        let s_c = src.cached;
        let mut pointer_moved = false;
        let mut pointer_made = false;
        // a. The new name's hashed group points at the data.
        if d_h != s_c {
            let hashed = self.child(d_h)?;
            if src.linkto == Some(d_h) {
                hashed
                    .rename(
                        cx,
                        Loc::entry(op, on).with_gfid(gfid),
                        Loc::entry(np, nn),
                        0,
                        gx.clone(),
                    )
                    .await?;
                pointer_moved = true;
            } else {
                let occupied = dst.is_some_and(|d| d.cached == d_h || d.linkto == Some(d_h));
                let mut lx = gx.clone();
                lx.set(
                    format!("{SETXATTR_ON_CREATE}{XATTR_LINKTO}"),
                    self.names[s_c].as_bytes().to_vec(),
                );
                if occupied {
                    // Replace what is there atomically: a pointer under a temporary name,
                    // renamed over it.
                    let tmp = format!(".cairn-dht-{gfid}");
                    let _ = hashed
                        .unlink(cx, Loc::entry(np, tmp.clone()), Xdata::new())
                        .await;
                    hashed
                        .mknod(
                            cx,
                            Loc::entry(np, tmp.clone()).with_gfid(gfid),
                            libc::S_IFREG | LINKTO_MODE,
                            0,
                            0,
                            lx,
                        )
                        .await?;
                    if let Err(e) = hashed
                        .rename(
                            cx,
                            Loc::entry(np, tmp.clone()).with_gfid(gfid),
                            Loc::entry(np, nn),
                            0,
                            gx.clone(),
                        )
                        .await
                    {
                        let _ = hashed.unlink(cx, Loc::entry(np, tmp), Xdata::new()).await;
                        return Err(e);
                    }
                } else {
                    hashed
                        .mknod(
                            cx,
                            Loc::entry(np, nn).with_gfid(gfid),
                            libc::S_IFREG | LINKTO_MODE,
                            0,
                            0,
                            lx,
                        )
                        .await?;
                }
                pointer_made = true;
            }
        }
        // b. The data, inside its group.
        if let Err(e) = self
            .child(s_c)?
            .rename(cx, old.clone(), new.clone(), flags, gx.clone())
            .await
        {
            if pointer_moved {
                let _ = self
                    .child(d_h)?
                    .rename(
                        cx,
                        Loc::entry(np, nn).with_gfid(gfid),
                        Loc::entry(op, on),
                        0,
                        Xdata::new(),
                    )
                    .await;
            } else if pointer_made {
                let _ = self
                    .child(d_h)?
                    .unlink(cx, Loc::entry(np, nn), Xdata::new())
                    .await;
            }
            return Err(e);
        }
        // c. Leftovers: the old name's pointer, the replaced file's data elsewhere.
        if let Some(p) = src.linkto.filter(|&p| p != s_c && !pointer_moved)
            && let Err(e) = self
                .child(p)?
                .unlink(cx, Loc::entry(op, on), Xdata::new())
                .await
            && !is_gone(&e)
        {
            tracing::warn!(file = %old, error = %e, "could not remove the old name's pointer");
        }
        if let Some(d) = dst {
            for g in [Some(d.cached), d.linkto].into_iter().flatten() {
                if g == s_c || g == d_h {
                    continue;
                }
                if let Err(e) = self
                    .child(g)?
                    .unlink(cx, Loc::entry(np, nn), Xdata::new())
                    .await
                    && !is_gone(&e)
                {
                    tracing::warn!(file = %new, error = %e, "could not remove the replaced file's copy");
                }
            }
            if d.entry.iatt.nlink <= 1 {
                self.forget(d.entry.iatt.gfid);
            }
        }
        self.remember(gfid, Node::File(s_c));
        Ok(())
    }

    /// `RENAME_EXCHANGE` of two files: supported when both live, unpointed, in one group.
    #[allow(clippy::too_many_arguments)]
    async fn exchange_files(
        &self,
        cx: &Cx,
        old: &Loc,
        new: &Loc,
        flags: u32,
        gx: &Xdata,
        src: &Resolved,
        dst: Option<&Resolved>,
        d_h: usize,
    ) -> FopResult<()> {
        let Some(d) = dst else {
            return Err(FopError::new(libc::ENOENT, format!("{new} does not exist")));
        };
        let same = src.cached == d.cached
            && src.linkto.is_none()
            && d.linkto.is_none()
            && d.entry.iatt.kind != FileKind::Dir
            && src.hashed.unwrap_or(d_h) == d.cached
            && d_h == src.cached;
        if !same {
            return Err(FopError::invalid(
                "exchanging two names is supported only for files of one group that hash to it",
            ));
        }
        self.child(src.cached)?
            .rename(cx, old.clone(), new.clone(), flags, gx.clone())
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn rename_dir(
        &self,
        cx: &Cx,
        old: &Loc,
        new: &Loc,
        flags: u32,
        gx: &Xdata,
        dst: Option<&Resolved>,
        d_h: usize,
    ) -> FopResult<()> {
        if let Some(d) = dst {
            if d.entry.iatt.kind != FileKind::Dir {
                if flags & RENAME_EXCHANGE != 0 {
                    return Err(FopError::invalid(
                        "exchanging a directory with a file is not supported on a distributed volume",
                    ));
                }
                return Err(FopError::new(
                    libc::ENOTDIR,
                    format!("{new} is not a directory"),
                ));
            }
            if flags & RENAME_EXCHANGE == 0 {
                let listing = self.list_all(cx, d.entry.iatt.gfid).await?;
                if let Some(e) = listing
                    .iter()
                    .flat_map(|(_, es)| es.iter())
                    .find(|e| !is_linkto_entry(e))
                {
                    return Err(FopError::new(
                        libc::ENOTEMPTY,
                        format!("{new} is not empty (it holds {:?})", e.name),
                    ));
                }
                for (g, es) in &listing {
                    for e in es {
                        let _ = self
                            .child(*g)?
                            .unlink(
                                cx,
                                Loc::entry(d.entry.iatt.gfid, e.name.clone()),
                                Xdata::new(),
                            )
                            .await;
                    }
                }
            }
        }
        self.child(d_h)?
            .rename(cx, old.clone(), new.clone(), flags, gx.clone())
            .await?;
        let others: Vec<usize> = self.up().into_iter().filter(|&g| g != d_h).collect();
        let results = join_all(others.iter().map(|&g| async move {
            match self.children.get(g) {
                Some(c) => (
                    g,
                    c.rename(cx, old.clone(), new.clone(), flags, gx.clone())
                        .await,
                ),
                None => (g, Err(FopError::eio("no such group"))),
            }
        }))
        .await;
        for (g, r) in results {
            if let Err(e) = r {
                tracing::warn!(from = %old, to = %new, group = %self.names[g], error = %e, "directory rename failed on one group; lookup heals it");
            }
        }
        if let Some(d) = dst {
            self.forget(d.entry.iatt.gfid);
        }
        Ok(())
    }
}
