//! The specs a person types for volumes, exports, routes and rules (the
//! CLI's flags, the console's fields), as the operations' types.

use anyhow::{bail, Context};
use vnas_store::{ClientRule, Export, Volume};

/// `MOUNT=DIR`, or `MOUNT=block:DEVICE[:FSTYPE]` for a logical unit.
pub fn volume(spec: &str) -> anyhow::Result<Volume> {
    let (mount, path) = spec
        .split_once('=')
        .with_context(|| format!("volume {spec:?} is not MOUNT=PATH or MOUNT=block:DEVICE[:FSTYPE]"))?;
    if let Some(unit) = path.strip_prefix("block:") {
        let (device, fstype) = match unit.split_once(':') {
            Some((device, fstype)) => (device, Some(fstype.to_string())),
            None => (unit, None),
        };
        return Ok(Volume::block(mount, device, fstype));
    }
    let path = std::path::absolute(path).with_context(|| format!("volume path {path}"))?;
    Ok(Volume::dir(mount, path.display().to_string()))
}

pub fn route(spec: &str) -> anyhow::Result<vnas_store::Route> {
    let (destination, gateway) =
        spec.split_once('=').with_context(|| format!("route {spec:?} is not DESTINATION=GATEWAY"))?;
    Ok(vnas_store::Route { destination: destination.to_string(), gateway: gateway.to_string() })
}

pub fn export(spec: &str) -> anyhow::Result<Export> {
    let mut parts = spec.split(':');
    let path = parts.next().unwrap_or_default().to_string();
    let mut rule = ClientRule::default();
    for option in parts.flat_map(|p| p.split(',')).filter(|o| !o.is_empty()) {
        let (key, value) = option.split_once('=').unwrap_or((option, ""));
        match (key, value) {
            ("rw", "") | ("ro", "") => rule.access = key.to_string(),
            ("root_squash", "") => rule.squash = "root".into(),
            ("all_squash", "") => rule.squash = "all".into(),
            ("no_root_squash", "") => rule.squash = "none".into(),
            ("secure", "") => rule.secure = true,
            ("insecure", "") => rule.secure = false,
            ("clients", v) => rule.clients = v.split('+').map(str::to_string).collect(),
            ("anonuid", v) => rule.anon_uid = v.parse().with_context(|| format!("anonuid {v:?}"))?,
            ("anongid", v) => rule.anon_gid = v.parse().with_context(|| format!("anongid {v:?}"))?,
            _ => bail!("unknown export option {option:?} in {spec:?}"),
        }
    }
    Ok(Export { path, rules: vec![rule] })
}

/// `PATH:clients=CIDR[+CIDR...]`: a rule of an export, by its clients.
pub fn rule_ref(spec: &str) -> anyhow::Result<super::types::RuleRef> {
    let (path, clients) = spec
        .split_once(":clients=")
        .with_context(|| format!("rule {spec:?} is not PATH:clients=CIDR[+CIDR...]"))?;
    Ok(super::types::RuleRef {
        path: path.to_string(),
        clients: clients.split('+').map(str::to_string).collect(),
    })
}
