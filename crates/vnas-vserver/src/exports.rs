//! From a vserver's mount table and exports to what the NFS server serves:
//! directories, export ids that go into file handles, client rules.

use std::net::IpAddr;
use std::path::PathBuf;

use vnas_nfs::{Access, ExportConfig, Squash};
use vnas_store::VserverConfig;

use crate::volumes::{Claim, Volumes};

/// Export ids go into file handles: the same vserver and export path give
/// the same id on every node and in every version (FNV-1a).
pub fn export_id(vserver: &str, export: &str) -> u32 {
    let mut hash = 0x811c_9dc5u32;
    for byte in vserver.bytes().chain([0]).chain(export.bytes()) {
        hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
    }
    hash
}

/// The directory an export path of the vserver's namespace maps to through
/// its mount table.
pub fn export_dir(config: &VserverConfig, export: &str) -> Option<PathBuf> {
    config
        .volumes
        .iter()
        .filter_map(|volume| {
            let mount = volume.mount.trim_end_matches('/');
            let rest = if export == mount || mount.is_empty() {
                Some(export.strip_prefix(mount).unwrap_or(""))
            } else {
                export.strip_prefix(mount).filter(|r| r.starts_with('/'))
            }?;
            Some((mount.len(), PathBuf::from(&volume.path).join(rest.trim_start_matches('/'))))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, dir)| dir)
}

fn rule(rule: &vnas_store::ClientRule) -> Result<vnas_nfs::ClientRule, String> {
    Ok(vnas_nfs::ClientRule {
        clients: rule
            .clients
            .iter()
            .map(|c| {
                c.parse()
                    .or_else(|_| c.parse::<IpAddr>().map(Into::into))
                    .map_err(|_| format!("bad client network {c}"))
            })
            .collect::<Result<_, _>>()?,
        access: if rule.access == "ro" { Access::ReadOnly } else { Access::ReadWrite },
        squash: match rule.squash.as_str() {
            "root" => Squash::Root,
            "all" => Squash::All,
            _ => Squash::None,
        },
        anon_uid: rule.anon_uid,
        anon_gid: rule.anon_gid,
        secure: rule.secure,
    })
}

/// Attaches the vserver's volumes through `volumes` (all or, on an error,
/// none): the configuration with each volume's path where it is here.
pub fn attach(config: &VserverConfig, volumes: &dyn Volumes, claim: &Claim) -> Result<VserverConfig, String> {
    let mut attached = config.clone();
    for (i, volume) in attached.volumes.iter_mut().enumerate() {
        match volumes.attach(volume, claim) {
            Ok(path) => volume.path = path.display().to_string(),
            Err(error) => {
                for volume in &config.volumes[..i] {
                    volumes.detach(volume);
                }
                return Err(error);
            }
        }
    }
    Ok(attached)
}

/// The NFS exports of a configuration whose volumes are attached.
pub fn exports(attached: &VserverConfig) -> Result<Vec<ExportConfig>, String> {
    let config = attached;
    let mut out = Vec::new();
    for export in &config.exports {
        let dir = export_dir(config, &export.path)
            .ok_or_else(|| format!("export {} is not under any volume", export.path))?;
        let mut nfs = ExportConfig::new(export.path.clone(), dir);
        nfs.id = Some(export_id(&config.name, &export.path));
        nfs.rules = export.rules.iter().map(rule).collect::<Result<_, _>>()?;
        out.push(nfs);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vnas_store::{Desired, Volume};

    fn config(volumes: &[(&str, &str)]) -> VserverConfig {
        VserverConfig {
            name: "v".into(),
            addresses: vec![],
            volumes: volumes.iter().map(|(m, p)| Volume::dir(*m, *p)).collect(),
            exports: vec![],
            routes: vec![],
            node: "n1".into(),
            desired: Desired::Running,
            home: None,
            allowed_nodes: vec![],
        }
    }

    #[test]
    fn exports_map_through_the_mount_table() {
        let c = config(&[("/data", "/srv/a"), ("/data/deep", "/srv/b")]);
        assert_eq!(export_dir(&c, "/data"), Some("/srv/a".into()));
        assert_eq!(export_dir(&c, "/data/x/y"), Some("/srv/a/x/y".into()));
        assert_eq!(export_dir(&c, "/data/deep/z"), Some("/srv/b/z".into()));
        assert_eq!(export_dir(&c, "/database"), None);
        assert_eq!(export_dir(&c, "/other"), None);
    }

    #[test]
    fn export_ids_are_stable() {
        assert_eq!(export_id("demo", "/data"), export_id("demo", "/data"));
        assert_ne!(export_id("demo", "/data"), export_id("demo2", "/data"));
        // Pinned: handles issued by one version must resolve in the next.
        assert_eq!(export_id("demo", "/data"), 1_772_401_759);
    }
}
