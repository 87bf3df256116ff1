//! The health of one running vserver: its volumes are there, and its NFS
//! server answers a NULL call on its address in time. The first failure is
//! reported to the controller, which restarts the vserver or, after
//! repeated failures, marks it failed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use vnas_store::VserverConfig;

use crate::network::{parse_address, Attachment};
use crate::running::Params;

#[derive(Debug)]
pub struct Failure {
    pub name: String,
    pub epoch: u64,
    pub reason: String,
}

pub async fn watch(
    mut config: tokio::sync::watch::Receiver<VserverConfig>,
    epoch: u64,
    params: Params,
    attachment: Arc<dyn Attachment>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(params.monitor_interval) => {}
        }
        let checked = config.borrow_and_update().clone();
        if let Err(reason) = check(&checked, &params, &*attachment).await {
            // A vserver stopping, or changed while it was checked (an
            // address or a volume gone): nothing failed.
            if shutdown.is_cancelled() || config.has_changed().unwrap_or(false) {
                continue;
            }
            let _ = params.failures.send(Failure { name: checked.name.clone(), epoch, reason }).await;
            return;
        }
    }
}

async fn check(config: &VserverConfig, params: &Params, attachment: &dyn Attachment) -> Result<(), String> {
    let port = params.nfs_port;
    for volume in &config.volumes {
        let (volumes, v) = (params.volumes.clone(), volume.clone());
        let present = tokio::task::spawn_blocking(move || volumes.present(&v)).await.unwrap_or(false);
        if !present {
            return Err(format!("volume {} is gone ({})", volume.mount, volume.path));
        }
    }
    for address in &config.addresses {
        let ip = parse_address(address)?.addr();
        let addr = SocketAddr::new(ip, port);
        // From where the vserver's addresses are reachable on this node.
        let socket = attachment.client_socket(addr).map_err(|e| format!("cannot reach {addr}: {e}"))?;
        let stream = tokio::net::TcpSocket::from_std_stream(socket);
        match tokio::time::timeout(Duration::from_secs(2), null_call(stream.connect(addr))).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("NULL call to {addr} failed: {e}")),
            Err(_) => return Err(format!("NULL call to {addr} not answered within 2 s")),
        }
    }
    Ok(())
}

/// An NFS NULL call: the cheapest proof that the server reads, dispatches
/// and answers.
pub async fn null_call(
    connect: impl std::future::Future<Output = std::io::Result<tokio::net::TcpStream>>,
) -> std::io::Result<()> {
    let mut stream = connect.await?;
    let mut call = Vec::with_capacity(44);
    call.extend_from_slice(&(40u32 | 0x8000_0000).to_be_bytes());
    for word in [0x4e55_4c4cu32, 0, 2, 100_003, 3, 0, 0, 0, 0, 0] {
        call.extend_from_slice(&word.to_be_bytes());
    }
    stream.write_all(&call).await?;
    let mut reply = [0u8; 28];
    stream.read_exact(&mut reply).await?;
    // mark, xid, REPLY, MSG_ACCEPTED, verifier (flavor, length), SUCCESS
    let accepted = reply[8..12] == [0, 0, 0, 1] && reply[12..16] == [0; 4] && reply[24..28] == [0; 4];
    if accepted {
        Ok(())
    } else {
        Err(std::io::Error::other("the reply is not a successful NULL"))
    }
}
