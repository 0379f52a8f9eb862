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
    if req.arbiter && replica != 3 {
        return Err("arbiter is supported with replica 3 only (replica 3 arbiter 1)".into());
    }
    let bricks = new_bricks(
        config,
        &req.bricks,
        replica,
        req.arbiter,
        0,
        req.force,
        ports,
    )?;
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
        removing: Vec::new(),
    })
}

/// Checks and builds new bricks from `HOST:/PATH` specs (ids from `brick-{first_index}`,
/// the lowest free port of the range on each host).
fn new_bricks(
    config: &ClusterConfig,
    specs: &[String],
    replica: u32,
    arbiter: bool,
    first_index: usize,
    force: bool,
    ports: PortRange,
) -> Result<Vec<BrickConfig>, String> {
    let hosts: BTreeSet<&str> = config.nodes.iter().map(|n| n.host.as_str()).collect();
    let mut bricks: Vec<BrickConfig> = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
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
        let arbiter = arbiter && i % replica as usize == replica as usize - 1;
        bricks.push(BrickConfig {
            id: format!("brick-{}", first_index + i),
            host,
            path,
            port: 0,
            arbiter,
            disabled: false,
        });
    }
    if replica > 1 && !force {
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
    Ok(bricks)
}

/// Builds an add-brick: whole replica sets of the volume's replica count.
pub fn build_add_brick(
    config: &ClusterConfig,
    name: &str,
    req: &cairn_api::AddBrick,
    ports: PortRange,
) -> Result<Op, String> {
    let v = volume(config, name)?;
    if !v.removing.is_empty() {
        return Err(format!(
            "a remove-brick of volume {name} is in progress: commit or stop it first"
        ));
    }
    if let Some(r) = req.replica
        && r.max(1) != v.replica.max(1)
    {
        return Err(format!(
            "volume {name} has replica {}; changing the replica count with add-brick is not \
             supported: add whole sets of {} bricks",
            v.replica.max(1),
            v.replica.max(1)
        ));
    }
    let replica = v.replica.max(1);
    if req.bricks.is_empty() {
        return Err("no bricks given: list them as HOST:/PATH".into());
    }
    if !req.bricks.len().is_multiple_of(replica as usize) {
        return Err(format!(
            "number of bricks ({}) is not a multiple of the volume's replica count ({replica}): \
             add whole replica sets",
            req.bricks.len()
        ));
    }
    let next = v
        .bricks
        .iter()
        .filter_map(|b| {
            b.id.strip_prefix("brick-")
                .and_then(|n| n.parse::<usize>().ok())
        })
        .max()
        .map_or(0, |n| n + 1);
    let bricks = new_bricks(
        config,
        &req.bricks,
        replica,
        v.arbiter,
        next,
        req.force,
        ports,
    )?;
    if v.bricks.len() + bricks.len() > 120 * replica as usize {
        return Err("a volume holds at most 120 replica sets".into());
    }
    Ok(Op::AddBrick {
        name: name.to_string(),
        bricks,
    })
}

/// The replica sets of `v` (bricks consecutive).
fn sets(v: &VolumeConfig) -> std::slice::Chunks<'_, BrickConfig> {
    v.bricks.chunks(v.replica.max(1) as usize)
}

/// Checks that `ids` are whole replica sets of `v` and that at least one set stays.
fn check_leaving(v: &VolumeConfig, ids: &[String]) -> Result<(), String> {
    if ids.is_empty() {
        return Err("no bricks given: list the leaving bricks as HOST:/PATH".into());
    }
    let mut staying = 0;
    for set in sets(v) {
        let leaving = set.iter().filter(|b| ids.contains(&b.id)).count();
        if leaving == 0 {
            staying += 1;
        } else if leaving < set.len() {
            let all: Vec<String> = set.iter().map(BrickConfig::spec).collect();
            return Err(format!(
                "remove whole replica sets: {} belong to one set, give them all",
                all.join(" ")
            ));
        }
    }
    if let Some(id) = ids.iter().find(|id| !v.bricks.iter().any(|b| &b.id == *id)) {
        return Err(format!("volume {} has no brick {id}", v.name));
    }
    if staying == 0 {
        return Err(format!(
            "that would remove every replica set of volume {}: delete the volume instead",
            v.name
        ));
    }
    Ok(())
}

/// Builds a remove-brick start: the leaving bricks (`HOST:/PATH`) as ids, whole sets.
pub fn build_remove_brick_start(
    config: &ClusterConfig,
    name: &str,
    specs: &[String],
) -> Result<Op, String> {
    let v = volume(config, name)?;
    if !v.removing.is_empty() {
        return Err(format!(
            "a remove-brick of volume {name} is in progress: commit or stop it first"
        ));
    }
    let mut ids = Vec::new();
    for spec in specs {
        let (host, path) = parse_brick(spec)?;
        let b = v
            .bricks
            .iter()
            .find(|b| b.host == host && b.path == path)
            .ok_or_else(|| format!("{spec} is not a brick of volume {name}"))?;
        if ids.contains(&b.id) {
            return Err(format!("{spec} is given twice"));
        }
        ids.push(b.id.clone());
    }
    check_leaving(v, &ids)?;
    Ok(Op::RemoveBrickStart {
        name: name.to_string(),
        bricks: ids,
    })
}

/// Checks that the bricks named (`HOST:/PATH`) are exactly those being removed.
pub fn check_removing(config: &ClusterConfig, name: &str, specs: &[String]) -> Result<(), String> {
    let v = volume(config, name)?;
    if v.removing.is_empty() {
        return Err(format!("no remove-brick of volume {name} is in progress"));
    }
    let mut given = Vec::new();
    for spec in specs {
        let (host, path) = parse_brick(spec)?;
        match v.bricks.iter().find(|b| b.host == host && b.path == path) {
            Some(b) => given.push(b.id.clone()),
            None => return Err(format!("{spec} is not a brick of volume {name}")),
        }
    }
    given.sort();
    let mut removing = v.removing.clone();
    removing.sort();
    if given != removing {
        return Err(format!(
            "the bricks being removed from volume {name} are {}",
            leaving_specs(v)
        ));
    }
    Ok(())
}

/// The bricks a remove-brick is draining, as `HOST:/PATH` separated by spaces.
pub fn leaving_specs(v: &VolumeConfig) -> String {
    v.bricks
        .iter()
        .filter(|b| v.removing.contains(&b.id))
        .map(BrickConfig::spec)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Builds a replace-brick: the brick keeps its id and role and gets the new place and, on a
/// new host, the lowest free port there.
pub fn build_replace(
    config: &ClusterConfig,
    name: &str,
    old: &str,
    new: &str,
    ports: PortRange,
) -> Result<Op, String> {
    let v = volume(config, name)?;
    let (oh, op) = parse_brick(old)?;
    let (nh, np) = parse_brick(new)?;
    if (oh.as_str(), op.as_str()) == (nh.as_str(), np.as_str()) {
        return Err(format!(
            "{new} is the brick being replaced: to rebuild a brick in place use \
             'volume reset-brick {name} {old} {old} commit force'"
        ));
    }
    let b = v
        .bricks
        .iter()
        .find(|b| b.host == oh && b.path == op)
        .ok_or_else(|| format!("{old} is not a brick of volume {name}"))?;
    if !config.nodes.iter().any(|n| n.host == nh) {
        return Err(format!("host {nh} of {new} is not in the pool"));
    }
    for other in config
        .volumes
        .iter()
        .flat_map(|x| x.bricks.iter().map(move |b| (x, b)))
    {
        if other.1.host == nh
            && nested(&other.1.path, &np)
            && !(other.0.name == name && other.1.id == b.id)
        {
            return Err(format!(
                "{new} is nested with brick {} of volume {}",
                other.1.spec(),
                other.0.name
            ));
        }
    }
    let port = if nh == b.host {
        b.port
    } else {
        let taken: BTreeSet<u16> = config
            .volumes
            .iter()
            .flat_map(|x| x.bricks.iter())
            .filter(|x| x.host == nh)
            .map(|x| x.port)
            .collect();
        (ports.first..=ports.last)
            .find(|p| !taken.contains(p))
            .ok_or_else(|| format!("no free brick port left on {nh}"))?
    };
    Ok(Op::ReplaceBrick {
        name: name.to_string(),
        brick_id: b.id.clone(),
        new: BrickConfig {
            id: b.id.clone(),
            host: nh,
            path: np,
            port,
            arbiter: b.arbiter,
            disabled: false,
        },
    })
}

/// Builds a reset-brick.
pub fn build_reset(
    config: &ClusterConfig,
    name: &str,
    brick: &str,
    commit: bool,
) -> Result<Op, String> {
    let v = volume(config, name)?;
    let (h, p) = parse_brick(brick)?;
    let b = v
        .bricks
        .iter()
        .find(|b| b.host == h && b.path == p)
        .ok_or_else(|| format!("{brick} is not a brick of volume {name}"))?;
    Ok(Op::ResetBrick {
        name: name.to_string(),
        brick_id: b.id.clone(),
        commit,
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
        Op::ReplaceBrick {
            name,
            brick_id,
            new,
        } => {
            let v = volume(config, name)?;
            if !v.bricks.iter().any(|b| &b.id == brick_id) {
                return Err(format!("volume {name} has no brick {brick_id}"));
            }
            if !config.nodes.iter().any(|n| n.host == new.host) {
                return Err(format!("host {} is not in the pool", new.host));
            }
        }
        Op::AddBrick { name, bricks } => {
            let v = volume(config, name)?;
            let replica = v.replica.max(1) as usize;
            if bricks.is_empty() || !bricks.len().is_multiple_of(replica) {
                return Err(format!("add-brick needs whole replica sets of {replica}"));
            }
            for b in bricks {
                if v.bricks.iter().any(|o| o.id == b.id) {
                    return Err(format!("volume {name} already has a brick {}", b.id));
                }
                if !config.nodes.iter().any(|n| n.host == b.host) {
                    return Err(format!("host {} is not in the pool", b.host));
                }
            }
        }
        Op::ResetBrick { name, brick_id, .. } => {
            let v = volume(config, name)?;
            if !v.bricks.iter().any(|b| &b.id == brick_id) {
                return Err(format!("volume {name} has no brick {brick_id}"));
            }
        }
        Op::RemoveBrickStart { name, bricks } => {
            let v = volume(config, name)?;
            if !v.removing.is_empty() {
                return Err(format!("a remove-brick of volume {name} is in progress"));
            }
            check_leaving(v, bricks)?;
        }
        Op::RemoveBrickStop { name } | Op::RemoveBrickCommit { name } => {
            if volume(config, name)?.removing.is_empty() {
                return Err(format!("no remove-brick of volume {name} is in progress"));
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

/// What a node checks on its own disks when staging an op, so that a change that cannot
/// be carried out fails before anything is committed anywhere:
/// - its bricks of a new volume, and a replacement brick placed on it, must be usable
///   directories that belong to no brick, not nested in one, not on the root filesystem
///   (unless `force`), with their ports free;
/// - a brick reset in place must be a directory (or absent) that belongs to no other
///   volume or brick.
pub fn check_local(
    config: &ClusterConfig,
    op: &Op,
    me: &NodeInfo,
    listen_ip: &str,
    force: bool,
) -> Result<(), String> {
    match op {
        Op::CreateVolume(v) => {
            for b in v.bricks.iter().filter(|b| b.host == me.host) {
                check_new_brick(b, me, listen_ip, force, true)?;
            }
        }
        Op::AddBrick { bricks, .. } => {
            for b in bricks.iter().filter(|b| b.host == me.host) {
                check_new_brick(b, me, listen_ip, force, true)?;
            }
        }
        Op::ReplaceBrick {
            name,
            brick_id,
            new,
        } if new.host == me.host => {
            let old = volume(config, name)?
                .bricks
                .iter()
                .find(|b| &b.id == brick_id)
                .ok_or_else(|| format!("volume {name} has no brick {brick_id}"))?;
            // On the same node the replacement keeps the old brick's port, which that brick
            // may still hold.
            let same_port = old.host == new.host && old.port == new.port;
            check_new_brick(new, me, listen_ip, force, !same_port)?;
        }
        Op::ResetBrick {
            name,
            brick_id,
            commit: true,
        } => {
            let v = volume(config, name)?;
            let Some(b) = v
                .bricks
                .iter()
                .find(|b| &b.id == brick_id && b.host == me.host)
            else {
                return Ok(());
            };
            let path = Path::new(&b.path);
            match std::fs::symlink_metadata(path) {
                Ok(m) if !m.is_dir() => {
                    return Err(format!("brick {}: {} is not a directory", b.spec(), b.path));
                }
                Ok(_) => {
                    if let Some(found) = cairn_bricks::layout::read_identity(path)
                        .map_err(|e| format!("brick {}: {e}", b.spec()))?
                        && (found.volume_id != v.id || found.brick_id != b.id)
                    {
                        return Err(format!(
                            "brick {}: the directory belongs to brick {} of volume id {};                              reset-brick re-initialises only an empty directory or this brick's own",
                            b.spec(),
                            found.brick_id,
                            found.volume_id
                        ));
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("brick {}: {e}", b.spec())),
            }
        }
        _ => {}
    }
    Ok(())
}

/// Checks a directory that is to become a brick on this node.
fn check_new_brick(
    b: &BrickConfig,
    me: &NodeInfo,
    listen_ip: &str,
    force: bool,
    check_port: bool,
) -> Result<(), String> {
    let root_dev = std::fs::metadata("/").map(|m| m.dev()).ok();
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
    if check_port {
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
        Op::ReplaceBrick {
            name,
            brick_id,
            new,
        } => {
            if let Some(v) = config.volumes.iter_mut().find(|v| &v.name == name) {
                for b in v.bricks.iter_mut().filter(|b| &b.id == brick_id) {
                    *b = new.clone();
                }
                v.version = version;
            }
        }
        Op::AddBrick { name, bricks } => {
            if let Some(v) = config.volumes.iter_mut().find(|v| &v.name == name) {
                v.bricks.extend(bricks.iter().cloned());
                v.version = version;
            }
        }
        Op::RemoveBrickStart { name, bricks } => {
            if let Some(v) = config.volumes.iter_mut().find(|v| &v.name == name) {
                v.removing = bricks.clone();
                v.version = version;
            }
        }
        Op::RemoveBrickStop { name } => {
            if let Some(v) = config.volumes.iter_mut().find(|v| &v.name == name) {
                v.removing.clear();
                v.version = version;
            }
        }
        Op::RemoveBrickCommit { name } => {
            if let Some(v) = config.volumes.iter_mut().find(|v| &v.name == name) {
                let leaving = std::mem::take(&mut v.removing);
                v.bricks.retain(|b| !leaving.contains(&b.id));
                v.version = version;
            }
        }
        Op::ResetBrick {
            name,
            brick_id,
            commit,
        } => {
            if let Some(v) = config.volumes.iter_mut().find(|v| &v.name == name) {
                for b in v.bricks.iter_mut().filter(|b| &b.id == brick_id) {
                    b.disabled = !commit;
                }
                v.version = version;
            }
        }
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
    fn replace_and_reset_brick_are_checked_before_anything_changes() {
        let mut c = pool(&["a", "b", "c", "d"]);
        let v = build_create(
            &c,
            &req("v", 3, &["a:/d1", "b:/d1", "c:/d1"], false),
            PORTS,
            2,
        )
        .unwrap();
        apply(&mut c, &Op::CreateVolume(v.clone()), 2);
        let e = build_replace(&c, "v", "a:/d1", "a:/d1", PORTS).unwrap_err();
        assert!(e.contains("reset-brick"), "{e}");
        let e = build_replace(&c, "v", "a:/gone", "d:/d1", PORTS).unwrap_err();
        assert!(e.contains("not a brick of volume v"), "{e}");
        let e = build_replace(&c, "v", "a:/d1", "z:/d1", PORTS).unwrap_err();
        assert!(e.contains("not in the pool"), "{e}");
        let e = build_replace(&c, "v", "a:/d1", "b:/d1/inner", PORTS).unwrap_err();
        assert!(e.contains("nested"), "{e}");
        // Moving to another node takes a free port there and keeps the brick's id.
        let op = build_replace(&c, "v", "a:/d1", "d:/new", PORTS).unwrap();
        let Op::ReplaceBrick { new, brick_id, .. } = &op else {
            panic!("{op:?}")
        };
        assert_eq!((new.host.as_str(), new.port), ("d", 24010));
        assert_eq!(brick_id, &v.bricks[0].id);
        check(&c, &op).unwrap();

        // Local checks on the node that gets the new brick.
        if !nix::unistd::Uid::effective().is_root() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let me = c.nodes[3].clone();
        let other = tmp.path().join("other");
        std::fs::create_dir(&other).unwrap();
        cairn_bricks::layout::prepare(
            &other,
            &cairn_bricks::layout::Identity {
                volume_id: "another-volume".into(),
                brick_id: "brick-9".into(),
            },
            true,
        )
        .unwrap();
        let target = format!("d:{}", other.display());
        let op = build_replace(&c, "v", "a:/d1", &target, PORTS).unwrap();
        let e = check_local(&c, &op, &me, "127.0.0.1", true).unwrap_err();
        assert!(e.contains("already part of a volume"), "{e}");
        let fresh = format!("d:{}", tmp.path().join("fresh").display());
        let op = build_replace(&c, "v", "a:/d1", &fresh, PORTS).unwrap();
        check_local(&c, &op, &me, "127.0.0.1", true).unwrap();

        // reset-brick commit re-initialises an empty directory or the brick's own only.
        let mut c2 = c.clone();
        c2.volumes[0].bricks[0].host = "d".into();
        c2.volumes[0].bricks[0].path = other.display().to_string();
        let spec = c2.volumes[0].bricks[0].spec();
        let reset = build_reset(&c2, "v", &spec, true).unwrap();
        let e = check_local(&c2, &reset, &me, "127.0.0.1", true).unwrap_err();
        assert!(e.contains("belongs to brick brick-9"), "{e}");
        c2.volumes[0].bricks[0].path = tmp.path().join("wiped").display().to_string();
        let spec = c2.volumes[0].bricks[0].spec();
        let reset = build_reset(&c2, "v", &spec, true).unwrap();
        check_local(&c2, &reset, &me, "127.0.0.1", true).unwrap();
        assert!(
            build_reset(&c2, "v", "d:/not-a-brick", true)
                .unwrap_err()
                .contains("not a brick of volume v")
        );
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
    }

    #[test]
    fn add_brick_adds_whole_sets_with_fresh_ids_and_ports() {
        let mut c = pool(&["a", "b", "c"]);
        let v = build_create(&c, &req("v", 3, &["a:/1", "b:/1", "c:/1"], false), PORTS, 2).unwrap();
        apply(&mut c, &Op::CreateVolume(v), 2);
        let add = |bricks: &[&str], replica: Option<u32>| cairn_api::AddBrick {
            replica,
            bricks: bricks.iter().map(|s| s.to_string()).collect(),
            force: false,
        };
        let e = build_add_brick(&c, "v", &add(&["a:/2"], None), PORTS).unwrap_err();
        assert!(e.contains("multiple"), "{e}");
        let e = build_add_brick(&c, "v", &add(&["a:/2", "b:/2"], Some(2)), PORTS).unwrap_err();
        assert!(e.contains("replica 3"), "{e}");
        let e = build_add_brick(&c, "v", &add(&["a:/2", "a:/3", "c:/2"], None), PORTS).unwrap_err();
        assert!(e.contains("more than one brick on host a"), "{e}");
        let e =
            build_add_brick(&c, "v", &add(&["a:/1/x", "b:/2", "c:/2"], None), PORTS).unwrap_err();
        assert!(e.contains("already part of volume v"), "{e}");
        let e =
            build_add_brick(&c, "nope", &add(&["a:/2", "b:/2", "c:/2"], None), PORTS).unwrap_err();
        assert!(e.contains("does not exist"), "{e}");
        let op = build_add_brick(&c, "v", &add(&["a:/2", "b:/2", "c:/2"], Some(3)), PORTS).unwrap();
        check(&c, &op).unwrap();
        apply(&mut c, &op, 3);
        let v = &c.volumes[0];
        assert_eq!(v.bricks.len(), 6);
        assert_eq!(v.bricks[3].id, "brick-3");
        assert_eq!(v.bricks[3].port, 24011, "the next free port on a");
        assert_eq!(v.version, 3);
    }

    #[test]
    fn remove_brick_takes_whole_sets_and_commit_drops_exactly_them() {
        let mut c = pool(&["a", "b", "c"]);
        let specs = [
            "a:/1", "b:/1", "c:/1", "a:/2", "b:/2", "c:/2", "a:/3", "b:/3", "c:/3",
        ];
        let v = build_create(&c, &req("v", 3, &specs, false), PORTS, 2).unwrap();
        apply(&mut c, &Op::CreateVolume(v), 2);
        let s = |l: &[&str]| l.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let e = build_remove_brick_start(&c, "v", &s(&["a:/2", "b:/2"])).unwrap_err();
        assert!(e.contains("whole replica sets"), "{e}");
        let e = build_remove_brick_start(&c, "v", &s(&specs)).unwrap_err();
        assert!(e.contains("every replica set"), "{e}");
        let e = build_remove_brick_start(&c, "v", &s(&["a:/9", "b:/2", "c:/2"])).unwrap_err();
        assert!(e.contains("not a brick of volume v"), "{e}");
        let e = build_remove_brick_start(&c, "v", &s(&["a:/2", "a:/2", "b:/2"])).unwrap_err();
        assert!(e.contains("twice"), "{e}");
        let e = check(&c, &Op::RemoveBrickCommit { name: "v".into() }).unwrap_err();
        assert!(e.contains("no remove-brick"), "{e}");

        // The middle set leaves.
        let op = build_remove_brick_start(&c, "v", &s(&["c:/2", "a:/2", "b:/2"])).unwrap();
        check(&c, &op).unwrap();
        apply(&mut c, &op, 3);
        assert_eq!(c.volumes[0].removing, s(&["brick-5", "brick-3", "brick-4"]));
        assert_eq!(c.volumes[0].version, 3);
        let e = build_remove_brick_start(&c, "v", &s(&["a:/3", "b:/3", "c:/3"])).unwrap_err();
        assert!(e.contains("in progress"), "{e}");
        let e = build_add_brick(
            &c,
            "v",
            &cairn_api::AddBrick {
                replica: None,
                bricks: s(&["a:/4", "b:/4", "c:/4"]),
                force: false,
            },
            PORTS,
        )
        .unwrap_err();
        assert!(e.contains("in progress"), "{e}");
        let e = check_removing(&c, "v", &s(&["a:/3", "b:/3", "c:/3"])).unwrap_err();
        assert!(
            e.contains("being removed from volume v are a:/2 b:/2 c:/2"),
            "{e}"
        );
        check_removing(&c, "v", &s(&["b:/2", "a:/2", "c:/2"])).unwrap();

        // stop keeps them; a new start and a commit drop exactly them.
        apply(&mut c, &Op::RemoveBrickStop { name: "v".into() }, 4);
        assert!(c.volumes[0].removing.is_empty());
        assert_eq!(c.volumes[0].bricks.len(), 9);
        let op = build_remove_brick_start(&c, "v", &s(&["a:/2", "b:/2", "c:/2"])).unwrap();
        apply(&mut c, &op, 5);
        check(&c, &Op::RemoveBrickCommit { name: "v".into() }).unwrap();
        apply(&mut c, &Op::RemoveBrickCommit { name: "v".into() }, 6);
        let v = &c.volumes[0];
        let ids: Vec<&str> = v.bricks.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "brick-0", "brick-1", "brick-2", "brick-6", "brick-7", "brick-8"
            ]
        );
        assert!(v.removing.is_empty());
        assert_eq!(v.version, 6);
        // A later add-brick does not reuse the ids of the removed bricks.
        let op = build_add_brick(
            &c,
            "v",
            &cairn_api::AddBrick {
                replica: None,
                bricks: s(&["a:/4", "b:/4", "c:/4"]),
                force: false,
            },
            PORTS,
        )
        .unwrap();
        apply(&mut c, &op, 7);
        assert_eq!(c.volumes[0].bricks[6].id, "brick-9");
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
