//! What a node keeps on disk: its identity, the pool secret and the cluster configuration.
//!
//! `STATE_DIR/state.json` holds everything, with a `format` version; it is written to a
//! temporary file, fsynced, renamed over the old one and the directory fsynced, so a crash
//! leaves either the old or the new state, never a torn file. The pool secret is also kept
//! alone in `STATE_DIR/pool-secret` (mode 0600) for the local CLI.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use cairn_api::{ClusterConfig, NodeInfo};
use serde::{Deserialize, Serialize};

/// The state file format this release writes and reads.
pub const STATE_FORMAT: u32 = 1;

/// A node's persistent state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Persisted {
    /// Layout version of this file.
    pub format: u32,
    /// This node.
    pub node: NodeInfo,
    /// Shared by the pool's members; authenticates their calls to each other.
    pub pool_secret: String,
    /// What the pool agrees on.
    pub config: ClusterConfig,
}

/// A fresh random secret (256 bits, hex).
pub fn new_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

impl Persisted {
    /// A node alone in its own pool.
    pub fn standalone(node: NodeInfo) -> Persisted {
        Persisted {
            format: STATE_FORMAT,
            config: ClusterConfig {
                version: 0,
                nodes: vec![node.clone()],
                volumes: Vec::new(),
            },
            node,
            pool_secret: new_secret(),
        }
    }
}

/// Where the state lives.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// A store in `dir` (created if missing, mode 0700).
    pub fn open(dir: &Path) -> Result<Store, String> {
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
        Ok(Store {
            dir: dir.to_path_buf(),
        })
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn state_file(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// Reads the state, if this node has any.
    pub fn load(&self) -> Result<Option<Persisted>, String> {
        let path = self.state_file();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        #[derive(Deserialize)]
        struct Head {
            format: u32,
        }
        let head: Head = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not a Cairn state file: {e}", path.display()))?;
        if head.format > STATE_FORMAT {
            return Err(format!(
                "{}: state format {} is newer than this release understands ({STATE_FORMAT}); upgrade Cairn",
                path.display(),
                head.format
            ));
        }
        let state: Persisted = serde_json::from_str(&text)
            .map_err(|e| format!("{}: damaged state file: {e}", path.display()))?;
        Ok(Some(state))
    }

    /// Writes the state atomically, and the pool secret beside it.
    pub fn save(&self, state: &Persisted) -> Result<(), String> {
        let text = serde_json::to_vec_pretty(state).map_err(|e| e.to_string())?;
        write_atomic(&self.state_file(), &text, 0o600)?;
        write_atomic(
            &self.dir.join("pool-secret"),
            state.pool_secret.as_bytes(),
            0o600,
        )
    }
}

/// Writes `bytes` to `path` so that a crash leaves the old or the new content.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    let err = |what: &str, e: std::io::Error| format!("{what} {}: {e}", path.display());
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut f = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| err("create", e))?;
    f.write_all(bytes).map_err(|e| err("write", e))?;
    f.sync_all().map_err(|e| err("fsync", e))?;
    drop(f);
    fs::rename(&tmp, path).map_err(|e| err("rename", e))?;
    if let Some(dir) = path.parent()
        && let Ok(d) = fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_newer_formats_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.load().unwrap(), None);
        let node = NodeInfo {
            uuid: "u".into(),
            host: "h".into(),
            port: 1,
        };
        let st = Persisted::standalone(node);
        store.save(&st).unwrap();
        assert_eq!(store.load().unwrap(), Some(st.clone()));
        assert_eq!(
            fs::read_to_string(dir.path().join("pool-secret")).unwrap(),
            st.pool_secret
        );
        let mode = fs::metadata(dir.path().join("state.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        fs::write(dir.path().join("state.json"), r#"{"format": 9}"#).unwrap();
        assert!(store.load().unwrap_err().contains("newer"));
        fs::write(dir.path().join("state.json"), "{garbage").unwrap();
        assert!(store.load().unwrap_err().contains("not a Cairn state file"));
        assert_ne!(new_secret(), new_secret());
        assert_eq!(new_secret().len(), 64);
    }
}
