use std::sync::Mutex;

use super::*;
use crate::testing::conformance;
use crate::types::{FileKind, Gfid};

/// One directory in memory: `n` files, 100 listing bytes each, whose sizes a write
/// changes; every readdir that reaches it is recorded as (offset, size).
struct Store {
    base: XlatorBase,
    sizes: Mutex<Vec<u64>>,
    calls: Mutex<Vec<(u64, u32)>>,
}

impl Store {
    fn new(n: usize) -> Arc<Store> {
        Arc::new(Store {
            base: XlatorBase::new("store", "test/store", Vec::new()),
            sizes: Mutex::new(vec![1; n]),
            calls: Mutex::new(Vec::new()),
        })
    }

    fn calls(&self) -> Vec<(u64, u32)> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

fn gfid_of(i: usize) -> Gfid {
    let mut g = [0u8; 16];
    g[..8].copy_from_slice(&(i as u64 + 1000).to_be_bytes());
    Gfid(g)
}

#[async_trait::async_trait]
impl Translator for Store {
    crate::xlator_base!();

    async fn readdir(
        &self,
        _cx: &Cx,
        _fd: Fd,
        offset: u64,
        size: u32,
        plus: bool,
        _x: Xdata,
    ) -> FopResult<Vec<DirEntry>> {
        self.calls.lock().unwrap().push((offset, size));
        tokio::time::sleep(Duration::from_millis(5)).await;
        let sizes = self.sizes.lock().unwrap();
        let start = offset as usize;
        let end = (start + size as usize / 100).min(sizes.len());
        Ok((start..end)
            .map(|i| DirEntry {
                name: format!("IM-{i:05}.dcm"),
                offset: i as u64 + 1,
                gfid: gfid_of(i),
                kind: FileKind::File,
                iatt: plus.then(|| Iatt {
                    gfid: gfid_of(i),
                    kind: FileKind::File,
                    size: sizes[i],
                    ..Iatt::default()
                }),
            })
            .collect())
    }

    async fn write(
        &self,
        _cx: &Cx,
        fd: Fd,
        _off: u64,
        data: Payload,
        _x: Xdata,
    ) -> FopResult<Iatt> {
        let i = (0..self.sizes.lock().unwrap().len())
            .find(|&i| gfid_of(i) == fd.gfid())
            .unwrap();
        self.sizes.lock().unwrap()[i] = data.len() as u64;
        Ok(Iatt::default())
    }

    async fn releasedir(&self, _cx: &Cx, _fd: Fd) -> FopResult<()> {
        self.calls.lock().unwrap().push((u64::MAX, 0));
        Ok(())
    }
}

fn cfg() -> Config {
    Config {
        request_size: 10_000,
        max_ahead: 4,
    }
}

fn cx() -> Cx {
    Cx {
        uid: 0,
        gid: 0,
        pid: 100,
        lk_owner: 0,
        client: 0,
    }
}

/// Lists the whole directory as FUSE does: ask at the last offset until an empty batch.
async fn list(rda: &ReaddirAhead, fd: &Fd) -> Vec<DirEntry> {
    let mut out: Vec<DirEntry> = Vec::new();
    loop {
        let off = out.last().map_or(0, |e| e.offset);
        let batch = rda
            .readdir(&cx(), fd.clone(), off, 4096, true, Xdata::new())
            .await
            .unwrap();
        if batch.is_empty() {
            return out;
        }
        out.extend(batch);
    }
}

#[tokio::test]
async fn it_passes_every_call_through_unchanged() {
    conformance(|leaf| Arc::new(ReaddirAhead::new("rda", vec![leaf], cfg())) as XlatorRef).await;
}

#[tokio::test]
async fn a_listing_asks_for_large_batches_and_each_one_once_ahead_of_the_caller() {
    let store = Store::new(1000);
    let rda = ReaddirAhead::new("rda", vec![Arc::clone(&store) as XlatorRef], cfg());
    let fd = Fd::new(Gfid::ROOT, libc::O_RDONLY);
    let got = list(&rda, &fd).await;
    let names: Vec<String> = got.iter().map(|e| e.name.clone()).collect();
    let want: Vec<String> = (0..1000).map(|i| format!("IM-{i:05}.dcm")).collect();
    assert_eq!(names, want, "every entry once, in order");
    // 100 entries per 10,000-byte batch: offsets 0, 100, ..., 1000 (the empty end), each
    // asked for once, at the request size rather than the caller's 4096.
    let calls = store.calls();
    let offsets: Vec<u64> = calls.iter().map(|c| c.0).collect();
    assert_eq!(offsets, (0..=10).map(|k| k * 100).collect::<Vec<u64>>());
    assert!(calls.iter().all(|c| c.1 == 10_000), "{calls:?}");
    let c = rda.counters();
    assert_eq!(
        c.served, 10,
        "every batch after the first came from a prefetch: {c:?}"
    );
    rda.releasedir(&cx(), fd).await.unwrap();
}

#[tokio::test]
async fn a_change_through_the_graph_drops_the_batch_asked_for_before_it() {
    let store = Store::new(300);
    let rda = ReaddirAhead::new("rda", vec![Arc::clone(&store) as XlatorRef], cfg());
    let fd = Fd::new(Gfid::ROOT, libc::O_RDONLY);
    let first = rda
        .readdir(&cx(), fd.clone(), 0, 4096, true, Xdata::new())
        .await
        .unwrap();
    assert_eq!(first.len(), 100);
    // The batch at 100 is being fetched; the client now writes a file listed in it.
    let file = Fd::new(gfid_of(150), libc::O_WRONLY);
    rda.write(&cx(), file, 0, Payload::new(vec![0u8; 77]), Xdata::new())
        .await
        .unwrap();
    let second = rda
        .readdir(&cx(), fd.clone(), 100, 4096, true, Xdata::new())
        .await
        .unwrap();
    let e = second.iter().find(|e| e.name == "IM-00150.dcm").unwrap();
    assert_eq!(
        e.iatt.as_ref().unwrap().size,
        77,
        "the listing shows the write"
    );
    assert_eq!(rda.counters().dropped, 1);
    // The batch at 100 was asked for twice: ahead, then again after the change.
    let offsets: Vec<u64> = store.calls().iter().map(|c| c.0).collect();
    assert_eq!(
        offsets.iter().filter(|&&o| o == 100).count(),
        2,
        "{offsets:?}"
    );
}

#[tokio::test]
async fn with_no_room_nothing_is_asked_ahead() {
    let store = Store::new(500);
    let rda = ReaddirAhead::new(
        "rda",
        vec![Arc::clone(&store) as XlatorRef],
        Config {
            max_ahead: 0,
            ..cfg()
        },
    );
    let fd = Fd::new(Gfid::ROOT, libc::O_RDONLY);
    assert_eq!(list(&rda, &fd).await.len(), 500);
    assert_eq!(rda.counters().prefetched, 0);
    assert_eq!(store.calls().len(), 6);
}

#[tokio::test]
async fn releasedir_waits_for_the_batch_in_flight_and_goes_down_last() {
    let store = Store::new(500);
    let rda = ReaddirAhead::new("rda", vec![Arc::clone(&store) as XlatorRef], cfg());
    let fd = Fd::new(Gfid::ROOT, libc::O_RDONLY);
    rda.readdir(&cx(), fd.clone(), 0, 4096, true, Xdata::new())
        .await
        .unwrap();
    rda.releasedir(&cx(), fd).await.unwrap();
    let calls = store.calls();
    assert_eq!(calls, vec![(0, 10_000), (100, 10_000), (u64::MAX, 0)]);
    assert_eq!(rda.outstanding.load(Ordering::Acquire), 0);
}
