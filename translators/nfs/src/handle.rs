//! NFS file handles: an object's gfid.

use cairn_translators::Gfid;
use nfs3_server::vfs::FileHandle;

/// The handle of an object: its 16-byte gfid (`nfs3_server` adds the generation in front).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct GfidHandle(pub Gfid);

impl FileHandle for GfidHandle {
    fn len(&self) -> usize {
        16
    }

    fn as_bytes(&self) -> &[u8] {
        &self.0.0
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        // A handle that is not exactly a gfid is not one of ours (NFS3ERR_BADHANDLE);
        // the null gfid is never an object.
        Gfid::from_slice(bytes)
            .filter(|g| !g.is_null())
            .map(GfidHandle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_round_trips_and_junk_is_refused() {
        let g = Gfid::random();
        let h = GfidHandle(g);
        assert_eq!(GfidHandle::from_bytes(h.as_bytes()), Some(h));
        assert_eq!(GfidHandle::from_bytes(&[1, 2, 3]), None);
        assert_eq!(GfidHandle::from_bytes(&[0; 16]), None);
        assert_eq!(GfidHandle::from_bytes(&[7; 17]), None);
    }
}
