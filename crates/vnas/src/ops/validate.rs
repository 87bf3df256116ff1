//! Checks a vserver's configuration before anything is stored: a bad
//! request changes nothing.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use vnas_store::{ClientRule, Desired, Export, Volume, VolumeKind, VserverConfig};

use super::error::OpsError;
use super::types::CreateVserver;

/// The loopback network mode serves addresses in 127.0.0.0/8 (but not
/// 127.0.0.1, which the management API and other services use); the linux
/// mode any unicast IPv4 or IPv6 address, with its prefix
/// (`198.18.1.10/16`; a bare address is a host prefix).
pub fn check_address(address: &str, linux: bool) -> Result<(), OpsError> {
    if linux {
        let net = vnas_vserver::network::parse_address(address).map_err(|_| {
            OpsError::invalid(
                "bad_address",
                format!("{address:?} is not an address (with an optional /prefix)"),
            )
        })?;
        let ip = net.addr();
        if ip.is_loopback()
            || ip.is_unspecified()
            || ip.is_multicast()
            || net.network() == ip && net.prefix_len() < net.max_prefix_len()
        {
            return Err(OpsError::invalid(
                "address_out_of_range",
                format!("{address} cannot be a vserver address (loopback, multicast, unspecified or a network's own address)"),
            ));
        }
        return Ok(());
    }
    let ip: Ipv4Addr = address
        .parse()
        .map_err(|_| OpsError::invalid("bad_address", format!("{address:?} is not an IPv4 address")))?;
    let octets = ip.octets();
    let in_range =
        octets[0] == 127 && ip != Ipv4Addr::new(127, 0, 0, 1) && octets[3] != 0 && octets[3] != 255;
    if !in_range {
        return Err(OpsError::invalid(
            "address_out_of_range",
            format!("{address} is outside the loopback network mode's range (127.0.0.0/8, not 127.0.0.1)"),
        ));
    }
    Ok(())
}

fn check_rule(rule: &ClientRule) -> Result<(), OpsError> {
    for client in &rule.clients {
        if client.parse::<ipnet::IpNet>().is_err() && client.parse::<IpAddr>().is_err() {
            return Err(OpsError::invalid("bad_export", format!("bad client network {client:?}")));
        }
    }
    if !matches!(rule.access.as_str(), "rw" | "ro") {
        return Err(OpsError::invalid(
            "bad_export",
            format!("access must be rw or ro, not {:?}", rule.access),
        ));
    }
    if !matches!(rule.squash.as_str(), "none" | "root" | "all") {
        return Err(OpsError::invalid(
            "bad_export",
            format!("squash must be none, root or all, not {:?}", rule.squash),
        ));
    }
    Ok(())
}

pub fn config(request: CreateVserver, node: String, linux: bool) -> Result<VserverConfig, OpsError> {
    vnas_store::check_name(&request.name).map_err(OpsError::from)?;
    for name in request.home.iter().chain(&request.allowed_nodes) {
        vnas_store::check_name(name).map_err(OpsError::from)?;
    }
    let allowed =
        |name: &str| request.allowed_nodes.is_empty() || request.allowed_nodes.iter().any(|a| a == name);
    if let Some(home) = request.home.as_deref().filter(|home| !allowed(home)) {
        return Err(OpsError::invalid(
            "bad_node",
            format!("home node {home} is not among the allowed nodes"),
        ));
    }
    if !allowed(&node) {
        return Err(OpsError::invalid("bad_node", format!("node {node} is not among the allowed nodes")));
    }
    check_addresses(&request.addresses, linux)?;
    check_volumes(&request.volumes)?;
    let exports = if request.exports.is_empty() {
        request
            .volumes
            .iter()
            .map(|v| Export { path: v.mount.clone(), rules: vec![ClientRule::default()] })
            .collect()
    } else {
        request.exports
    };
    let mut config = VserverConfig {
        name: request.name,
        addresses: request.addresses,
        volumes: request.volumes,
        exports: vec![],
        routes: request.routes,
        node,
        desired: Desired::Running,
        home: request.home,
        allowed_nodes: request.allowed_nodes,
    };
    check_exports(&config, &exports)?;
    check_routes(&config, linux)?;
    config.exports = exports;
    Ok(config)
}

/// Addresses: at least one, each valid in the network mode, each once
/// (by address: a prefix is not another address).
pub fn check_addresses(addresses: &[String], linux: bool) -> Result<(), OpsError> {
    if addresses.is_empty() {
        return Err(OpsError::invalid("bad_address", "a vserver needs at least one address"));
    }
    let mut seen = HashSet::new();
    for address in addresses {
        check_address(address, linux)?;
        if !seen.insert(vnas_store::address_ip(address)) {
            return Err(OpsError::invalid("bad_address", format!("{address} is listed twice")));
        }
    }
    Ok(())
}

/// Routes: a destination network (or `default`) and a gateway of the
/// same family, one route per destination (`default` is `0.0.0.0/0` or
/// `::/0`), a destination without host bits (the kernel refuses
/// `10.1.0.1/16`); in the linux mode the gateway lies in one of the
/// vserver's networks (the kernel refuses a route to a gateway it cannot
/// reach directly).
pub fn check_routes(config: &VserverConfig, linux: bool) -> Result<(), OpsError> {
    let mut seen = HashSet::new();
    for route in &config.routes {
        let bad = |why: &str| {
            OpsError::invalid(
                "bad_route",
                format!("route {} via {}: {why}", route.destination, route.gateway),
            )
        };
        let Ok(gateway) = route.gateway.parse::<IpAddr>() else {
            return Err(bad("the gateway is not an address"));
        };
        let destination = match route.destination.as_str() {
            "default" if gateway.is_ipv4() => "0.0.0.0/0".parse::<ipnet::IpNet>().expect("a network"),
            "default" => "::/0".parse::<ipnet::IpNet>().expect("a network"),
            text => text
                .parse::<ipnet::IpNet>()
                .map_err(|_| bad("the destination is not a network (or default)"))?,
        };
        if destination.trunc() != destination {
            return Err(bad(&format!(
                "the destination has host bits set (the network is {})",
                destination.trunc()
            )));
        }
        if destination.addr().is_ipv4() != gateway.is_ipv4() {
            return Err(bad("the destination and the gateway are of different families"));
        }
        if !seen.insert(destination) {
            return Err(bad("a route to this destination is there already"));
        }
        let on_link = config
            .addresses
            .iter()
            .filter_map(|a| vnas_vserver::network::parse_address(a).ok())
            .any(|net| net.contains(&gateway) && net.addr() != gateway);
        if linux && !on_link {
            return Err(bad("the gateway is in none of the vserver's networks"));
        }
    }
    Ok(())
}

/// Volumes: at least one; absolute mount points; directories that exist
/// here, or block devices with a known filesystem, each unit once.
pub fn check_volumes(volumes: &[Volume]) -> Result<(), OpsError> {
    if volumes.is_empty() {
        return Err(OpsError::invalid("bad_volume", "a vserver needs at least one volume"));
    }
    for volume in volumes {
        if !volume.mount.starts_with('/') || volume.mount.contains("..") {
            return Err(OpsError::invalid(
                "bad_volume",
                format!("mount point {:?} must be an absolute path without ..", volume.mount),
            ));
        }
        let path = Path::new(&volume.path);
        match volume.kind {
            VolumeKind::Dir if !path.is_absolute() || !path.is_dir() => {
                return Err(OpsError::invalid(
                    "volume_path_missing",
                    format!("volume path {} does not exist or is not a directory", volume.path),
                ));
            }
            VolumeKind::Dir => {}
            VolumeKind::Block => check_unit(volume, path)?,
        }
    }
    let mut devices = HashSet::new();
    if let Some(volume) = volumes.iter().find(|v| v.kind == VolumeKind::Block && !devices.insert(&v.path)) {
        return Err(OpsError::invalid("bad_volume", format!("unit {} is listed twice", volume.path)));
    }
    let mut mounts = HashSet::new();
    if let Some(volume) = volumes.iter().find(|v| !mounts.insert(v.mount.trim_end_matches('/'))) {
        return Err(OpsError::invalid("bad_volume", format!("mount point {} is listed twice", volume.mount)));
    }
    Ok(())
}

/// Each export lies at or below a volume's mount point, once, with rules
/// that parse.
pub fn check_exports(config: &VserverConfig, exports: &[Export]) -> Result<(), OpsError> {
    let mut seen = HashSet::new();
    for export in exports {
        if !export.path.starts_with('/') || export.path.contains("..") {
            return Err(OpsError::invalid(
                "bad_export",
                format!("export path {:?} is not absolute", export.path),
            ));
        }
        if !seen.insert(export.path.trim_end_matches('/')) {
            return Err(OpsError::invalid("bad_export", format!("export {} is listed twice", export.path)));
        }
        if vnas_vserver::exports::export_dir(config, &export.path).is_none() {
            return Err(OpsError::invalid(
                "export_outside_volumes",
                format!("export {} is not at or below any volume's mount point", export.path),
            ));
        }
        export.rules.iter().try_for_each(check_rule)?;
    }
    Ok(())
}

/// A block volume names a block device here (device paths such as
/// /dev/disk/by-id/... are the same on every node of a SAN) and a
/// filesystem vnas knows how to check and mount.
fn check_unit(volume: &Volume, path: &Path) -> Result<(), OpsError> {
    use std::os::unix::fs::FileTypeExt;
    if !path.is_absolute() || !std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device()) {
        return Err(OpsError::invalid(
            "volume_device_missing",
            format!("{} is not a block device on this node", volume.path),
        ));
    }
    if let Some(fstype) = &volume.fstype {
        if !vnas_vserver::UNIT_FILESYSTEMS.contains(&fstype.as_str()) {
            return Err(OpsError::invalid(
                "bad_volume",
                format!("filesystem {fstype} is not one of {}", vnas_vserver::UNIT_FILESYSTEMS.join(", ")),
            ));
        }
    }
    Ok(())
}
