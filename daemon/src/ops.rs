//! Configuration changes: building them, checking them, applying them.
//!
//! - [`build_create`] turns a `volume create` request into a complete `VolumeConfig` (ids,
//!   secret, ports), on the node that drives the transaction.
//! - [`check`] is the configuration-level check every node makes when staging.
//! - [`check_local`] is what a node checks on its own disks when staging (its bricks).
//! - [`apply`] changes a configuration; it is pure, so every node gets the same result.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use cairn_api::{
    BrickConfig, ClusterConfig, NodeInfo, Op, VolumeConfig, VolumeCreate, VolumeState,
};

use crate::options;

/// Brick ports this node hands out, inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port.
    pub last: u16,
}

/// Checks a volume name: letters, digits, `-`, `_`, `.`; at most 64; not starting with `.`.
pub fn check_volume_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{name}' is not a valid volume name: use up to 64 letters, digits, '-', '_' or '.'"
        ))
    }
}

/// Splits `HOST:/PATH` and normalises the path (absolute, no `.`/`..`, no trailing `/`).
pub fn parse_brick(spec: &str) -> Result<(String, String), String> {
    let (host, path) = spec
        .split_once(":/")
        .ok_or_else(|| format!("'{spec}' is not a brick: write HOST:/ABSOLUTE/PATH"))?;
    if host.is_empty() {
        return Err(format!("'{spec}': the host is missing"));
    }
    let path = format!("/{path}");
    let mut norm = PathBuf::from("/");
    for c in Path::new(&path).components() {
        match c {
            Component::RootDir => {}
            Component::Normal(n) => norm.push(n),
            Component::CurDir | Component::ParentDir | Component::Prefix(_) => {
                return Err(format!("'{spec}': the path may not contain '.' or '..'"));
            }
        }
    }
    if norm == Path::new("/") {
        return Err(format!("'{spec}': the root directory cannot be a brick"));
    }
    Ok((host.to_string(), norm.display().to_string()))
}

fn nested(a: &str, b: &str) -> bool {
    let (a, b) = (Path::new(a), Path::new(b));
    a.starts_with(b) || b.starts_with(a)
}

/// Builds the full configuration of a new volume from a create request.
pub fn build_create(
    config: &ClusterConfig,
    req: &VolumeCreate,
    ports: PortRange,
    version: u64,
) -> Result<VolumeConfig, String> {
    check_volume_name(&req.name)?;
    if config.volumes.iter().any(|v| v.name == req.name) {
        return Err(format!("volume {} already exists", req.name));
    }
    let replica = req.replica.max(1);
    if req.bricks.is_empty() {
        return Err("a volume needs at least one brick".into());
    }
    if !req.bricks.len().is_multiple_of(replica as usize) {
        return Err(format!(
            "number of bricks ({}) is not a multiple of replica count ({replica})",
            req.bricks.len()
        ));
    }
    if req.bricks.len() > replica as usize {
        return Err(format!(
            "{} bricks with replica {replica} make {} replica sets; volumes of several sets need \
             cluster/distribute, which this release does not have yet: use {replica} brick(s)",
            req.bricks.len(),
            req.bricks.len() / replica as usize
        ));
    }
    if req.arbiter && replica != 3 {
        return Err("arbiter is supported with replica 3 only (replica 3 arbiter 1)".into());
    }
    let hosts: BTreeSet<&str> = config.nodes.iter().map(|n| n.host.as_str()).collect();
    let mut bricks: Vec<BrickConfig> = Vec::with_capacity(req.bricks.len());
    for (i, spec) in req.bricks.iter().enumerate() {
        let (host, path) = parse_brick(spec)?;
        if !hosts.contains(host.as_str()) {
            return Err(format!(
                "host {host} of brick {spec} is not in the pool (peer probe it first; pool members: {})",
                hosts.iter().copied().collect::<Vec<_>>().join(", ")
            ));
        }
        for b in &bricks {
            if b.host == host && b.path == path {
                return Err(format!("brick {spec} is given twice"));
            }
            if b.host == host && nested(&b.path, &path) {
                return Err(format!(
                    "brick {spec} is nested in brick {} (or holds it)",
                    b.spec()
                ));
            }
        }
        for v in &config.volumes {
            for b in &v.bricks {
                if b.host == host && nested(&b.path, &path) {
                    return Err(format!(
                        "brick {spec} is already part of volume {} (brick {}), or nested with it",
                        v.name,
                        b.spec()
                    ));
                }
            }
        }
        let arbiter = req.arbiter && i % replica as usize == replica as usize - 1;
        bricks.push(BrickConfig {
            id: format!("brick-{i}"),
            host,
            path,
            port: 0,
            arbiter,
        });
    }
    if replica > 1 && !req.force {
        for (g, set) in bricks.chunks(replica as usize).enumerate() {
            let mut seen = BTreeSet::new();
            for b in set {
                if !seen.insert(b.host.as_str()) {
                    return Err(format!(
                        "replica set {g} has more than one brick on host {}: losing that host would lose every copy. \
                         Use 'force' at the end of the command to create it anyway",
                        b.host
                    ));
                }
            }
        }
    }
    // Ports: the lowest free ones of the range on each host.
    let mut used: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
    for v in &config.volumes {
        for b in &v.bricks {
            used.entry(b.host.clone()).or_default().insert(b.port);
        }
    }
    for b in &mut bricks {
        let taken = used.entry(b.host.clone()).or_default();
        let port = (ports.first..=ports.last)
            .find(|p| !taken.contains(p))
            .ok_or_else(|| {
                format!(
                    "no free brick port left on {} in {}-{}",
                    b.host, ports.first, ports.last
                )
            })?;
        taken.insert(port);
        b.port = port;
    }
    Ok(VolumeConfig {
        name: req.name.clone(),
        id: uuid::Uuid::new_v4().to_string(),
        replica,
        arbiter: req.arbiter,
        bricks,
        state: VolumeState::Created,
        options: BTreeMap::new(),
        secret: crate::store::new_secret(),
        version,
    })
}

fn volume<'a>(config: &'a ClusterConfig, name: &str) -> Result<&'a VolumeConfig, String> {
    config
        .volumes
        .iter()
        .find(|v| v.name == name)
        .ok_or_else(|| format!("volume {name} does not exist"))
}

/// The configuration-level check of an op (every node, when staging).
pub fn check(config: &ClusterConfig, op: &Op) -> Result<(), String> {
    match op {
        Op::AddNode(n) => {
            if config
                .nodes
                .iter()
                .any(|m| m.uuid == n.uuid || m.host == n.host && m.port == n.port)
            {
                return Err(format!("{} is already in the pool", n.host));
            }
        }
        Op::RemoveNode { uuid } => {
            let node = config
                .nodes
                .iter()
                .find(|n| &n.uuid == uuid)
                .ok_or_else(|| format!("node {uuid} is not in the pool"))?;
            for v in &config.volumes {
                if v.bricks.iter().any(|b| b.host == node.host) {
                    return Err(format!(
                        "{} holds bricks of volume {}: remove them (or delete the volume) first",
                        node.host, v.name
                    ));
                }
            }
        }
        Op::CreateVolume(v) => {
            check_volume_name(&v.name)?;
            if config.volumes.iter().any(|x| x.name == v.name) {
                return Err(format!("volume {} already exists", v.name));
            }
            for b in &v.bricks {
                if !config.nodes.iter().any(|n| n.host == b.host) {
                    return Err(format!("host {} is not in the pool", b.host));
                }
            }
        }
        Op::StartVolume { name, force } => {
            let v = volume(config, name)?;
            if v.state == VolumeState::Started && !force {
                return Err(format!("volume {name} already started"));
            }
        }
        Op::StopVolume { name, .. } => {
            let v = volume(config, name)?;
            if v.state != VolumeState::Started {
                return Err(format!("volume {name} is not in the started state"));
            }
        }
        Op::DeleteVolume { name } => {
            let v = volume(config, name)?;
            if v.state == VolumeState::Started {
                return Err(format!(
                    "volume {name} has been started: stop it before deleting it"
                ));
            }
        }
        Op::SetOptions {
            name, set, reset, ..
        } => {
            volume(config, name)?;
            for (k, value) in set {
                options::validate(k, value)?;
            }
            for k in reset {
                if options::find(k).is_none() {
                    return Err(format!("option '{k}' does not exist"));
                }
            }
        }
    }
    Ok(())
}

/// Reads the identity xattr of a directory, if any.
fn identity_of(path: &Path) -> Option<String> {
    let mut buf = [0u8; 512];
    rustix::fs::lgetxattr(path, cairn_bricks::layout::XATTR_BRICK, &mut buf)
        .ok()
        .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// What a node checks on its own disks when staging an op: its bricks of a new volume
/// must be usable directories that belong to no brick, not on the root filesystem (unless
/// `force`), with their ports free.
pub fn check_local(op: &Op, me: &NodeInfo, listen_ip: &str, force: bool) -> Result<(), String> {
    let Op::CreateVolume(v) = op else {
        return Ok(());
    };
    let root_dev = std::fs::metadata("/").map(|m| m.dev()).ok();
    for b in v.bricks.iter().filter(|b| b.host == me.host) {
        let spec = b.spec();
        let path = Path::new(&b.path);
        match std::fs::symlink_metadata(path) {
            Ok(m) if !m.is_dir() => {
                return Err(format!("brick {spec}: {} is not a directory", b.path));
            }
            Ok(_) => {
                if let Some(id) = identity_of(path) {
                    return Err(format!("brick {spec} is already part of a volume ({id})"));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("brick {spec}: {e}")),
        }
        let mut existing = path;
        while !existing.exists() {
            existing = existing.parent().unwrap_or(Path::new("/"));
        }
        for anc in path.ancestors().skip(1) {
            if let Some(id) = identity_of(anc) {
                return Err(format!(
                    "brick {spec} is inside {}, which is already a brick ({id})",
                    anc.display()
                ));
            }
        }
        if !force
            && let (Some(root), Ok(m)) = (root_dev, std::fs::metadata(existing))
            && m.dev() == root
        {
            return Err(format!(
                "brick {spec} is on the root filesystem: a brick belongs on its own disk. \
                 Use 'force' at the end of the command to create it anyway"
            ));
        }
        match std::net::TcpListener::bind((listen_ip, b.port)) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                return Err(format!(
                    "brick {spec}: port {} on {} is in use by another program (see cairnd --brick-ports)",
                    b.port, me.host
                ));
            }
            Err(_) => {}
        }
    }
    Ok(())
}

/// Applies a committed op to a configuration.
pub fn apply(config: &mut ClusterConfig, op: &Op, version: u64) {
    match op {
        Op::AddNode(n) => {
            if !config.nodes.iter().any(|m| m.uuid == n.uuid) {
                config.nodes.push(n.clone());
            }
        }
        Op::RemoveNode { uuid } => config.nodes.retain(|n| &n.uuid != uuid),
        Op::CreateVolume(v) => {
            let mut v = v.clone();
            v.version = version;
            config.volumes.push(v);
        }
        Op::StartVolume { name, .. } => set_state(config, name, VolumeState::Started, version),
        Op::StopVolume { name, .. } => set_state(config, name, VolumeState::Stopped, version),
        Op::DeleteVolume { name } => config.volumes.retain(|v| &v.name != name),
        Op::SetOptions {
            name,
            set,
            reset,
            reset_all,
        } => {
            if let Some(v) = config.volumes.iter_mut().find(|v| &v.name == name) {
                if *reset_all {
                    v.options.clear();
                }
                for k in reset {
                    v.options.remove(k);
                }
                for (k, value) in set {
                    v.options.insert(k.clone(), value.clone());
                }
                v.version = version;
            }
        }
    }
    config.version = version;
}

fn set_state(config: &mut ClusterConfig, name: &str, state: VolumeState, version: u64) {
    if let Some(v) = config.volumes.iter_mut().find(|v| v.name == name) {
        v.state = state;
        v.version = version;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(hosts: &[&str]) -> ClusterConfig {
        ClusterConfig {
            version: 1,
            nodes: hosts
                .iter()
                .enumerate()
                .map(|(i, h)| NodeInfo {
                    uuid: format!("u{i}"),
                    host: h.to_string(),
                    port: 24007,
                })
                .collect(),
            volumes: vec![],
        }
    }

    fn req(name: &str, replica: u32, bricks: &[&str], force: bool) -> VolumeCreate {
        VolumeCreate {
            name: name.into(),
            replica,
            arbiter: false,
            bricks: bricks.iter().map(|s| s.to_string()).collect(),
            force,
        }
    }

    const PORTS: PortRange = PortRange {
        first: 24010,
        last: 24012,
    };

    #[test]
    fn create_refuses_what_gluster_refuses() {
        let c = pool(&["a", "b", "c"]);
        let e = build_create(&c, &req("v", 3, &["a:/b1", "b:/b1"], false), PORTS, 2).unwrap_err();
        assert!(e.contains("not a multiple of replica count"), "{e}");
        let e = build_create(&c, &req("v", 2, &["a:/b1", "a:/b2"], false), PORTS, 2).unwrap_err();
        assert!(
            e.contains("more than one brick on host a") && e.contains("force"),
            "{e}"
        );
        build_create(&c, &req("v", 2, &["a:/b1", "a:/b2"], true), PORTS, 2).unwrap();
        let e =
            build_create(&c, &req("v", 2, &["a:/d", "a:/d/inner"], true), PORTS, 2).unwrap_err();
        assert!(e.contains("nested"), "{e}");
        let e = build_create(&c, &req("v", 1, &["z:/d"], true), PORTS, 2).unwrap_err();
        assert!(e.contains("not in the pool"), "{e}");
        let e = build_create(&c, &req("v", 1, &["a:relative"], true), PORTS, 2).unwrap_err();
        assert!(e.contains("HOST:/ABSOLUTE/PATH"), "{e}");
        let e = build_create(&c, &req("v", 1, &["a:/x/../y"], true), PORTS, 2).unwrap_err();
        assert!(e.contains(".."), "{e}");
        let e = build_create(&c, &req("bad name", 1, &["a:/x"], true), PORTS, 2).unwrap_err();
        assert!(e.contains("not a valid volume name"), "{e}");
        let mut arb = req("v", 2, &["a:/1", "b:/1"], false);
        arb.arbiter = true;
        assert!(
            build_create(&c, &arb, PORTS, 2)
                .unwrap_err()
                .contains("replica 3")
        );

        let mut c2 = c.clone();
        let v = build_create(
            &c,
            &req("v", 3, &["a:/d1/", "b:/d1", "c:/d1"], false),
            PORTS,
            2,
        )
        .unwrap();
        assert_eq!(v.bricks[0].path, "/d1", "trailing slash normalised");
        apply(&mut c2, &Op::CreateVolume(v.clone()), 2);
        let e = build_create(&c2, &req("w", 1, &["a:/d1/sub"], true), PORTS, 3).unwrap_err();
        assert!(e.contains("already part of volume v"), "{e}");
        let e = build_create(&c2, &req("v", 1, &["a:/other"], true), PORTS, 3).unwrap_err();
        assert!(e.contains("already exists"), "{e}");
    }

    #[test]
    fn ports_are_the_lowest_free_per_host() {
        let mut c = pool(&["a", "b"]);
        let v = build_create(&c, &req("v", 3, &["a:/1", "a:/2", "b:/1"], true), PORTS, 2).unwrap();
        let ports: Vec<u16> = v.bricks.iter().map(|b| b.port).collect();
        assert_eq!(ports, vec![24010, 24011, 24010]);
        apply(&mut c, &Op::CreateVolume(v), 2);
        let w = build_create(&c, &req("w", 2, &["a:/3", "b:/2"], true), PORTS, 3).unwrap();
        assert_eq!(
            w.bricks.iter().map(|b| b.port).collect::<Vec<_>>(),
            vec![24012, 24011]
        );
        apply(&mut c, &Op::CreateVolume(w), 3);
        let e = build_create(&c, &req("x", 1, &["a:/4"], true), PORTS, 4).unwrap_err();
        assert!(e.contains("no free brick port"), "{e}");
        let e = build_create(&c, &req("y", 1, &["a:/5", "b:/5"], true), PORTS, 4).unwrap_err();
        assert!(
            e.contains("cluster/distribute"),
            "several sets are refused for now: {e}"
        );
    }

    #[test]
    fn checks_and_apply() {
        let mut c = pool(&["a"]);
        let v = build_create(&c, &req("v", 1, &["a:/1"], true), PORTS, 2).unwrap();
        let op = Op::CreateVolume(v);
        check(&c, &op).unwrap();
        apply(&mut c, &op, 2);
        assert_eq!((c.version, c.volumes[0].version), (2, 2));
        assert!(
            check(
                &c,
                &Op::StopVolume {
                    name: "v".into(),
                    force: false
                }
            )
            .unwrap_err()
            .contains("not in the started state")
        );
        apply(
            &mut c,
            &Op::StartVolume {
                name: "v".into(),
                force: false,
            },
            3,
        );
        assert!(
            check(
                &c,
                &Op::StartVolume {
                    name: "v".into(),
                    force: false
                }
            )
            .unwrap_err()
            .contains("already started")
        );
        check(
            &c,
            &Op::StartVolume {
                name: "v".into(),
                force: true,
            },
        )
        .unwrap();
        assert!(
            check(&c, &Op::DeleteVolume { name: "v".into() })
                .unwrap_err()
                .contains("stop it")
        );
        assert!(
            check(&c, &Op::RemoveNode { uuid: "u0".into() })
                .unwrap_err()
                .contains("holds bricks")
        );
        let mut set = BTreeMap::new();
        set.insert("network.ping-timeout".to_string(), "nope".to_string());
        let op = Op::SetOptions {
            name: "v".into(),
            set: set.clone(),
            reset: vec![],
            reset_all: false,
        };
        assert!(check(&c, &op).is_err());
        set.insert("network.ping-timeout".to_string(), "5".to_string());
        let op = Op::SetOptions {
            name: "v".into(),
            set,
            reset: vec![],
            reset_all: false,
        };
        check(&c, &op).unwrap();
        apply(&mut c, &op, 4);
        assert_eq!(
            c.volumes[0]
                .options
                .get("network.ping-timeout")
                .map(String::as_str),
            Some("5")
        );
        assert_eq!(c.volumes[0].version, 4);
        apply(
            &mut c,
            &Op::SetOptions {
                name: "v".into(),
                set: BTreeMap::new(),
                reset: vec![],
                reset_all: true,
            },
            5,
        );
        assert!(c.volumes[0].options.is_empty());
    }
}
