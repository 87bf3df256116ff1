//! A second, independent client for transfer tests: the nfs3_client crate,
//! driven the way a hard-mounted client behaves — on a broken connection it
//! reconnects and retries the same call. It writes numbered blocks with
//! FILE_SYNC and reads each back, so every acknowledged block is checked
//! after every transfer.
//!
//! nfs3_client 0.9's `async_read_exact` loops forever when the server
//! closes the connection (a read of 0 bytes is not treated as the end);
//! the connector here turns end-of-stream into an error so the client can
//! reconnect.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nfs3_client::io::{AsyncRead, AsyncWrite};
use nfs3_client::net::Connector;
use nfs3_client::Nfs3ConnectionBuilder;
use nfs3_types::nfs3::*;
use nfs3_types::xdr_codec::Opaque;

pub struct EofIsError(tokio::net::TcpStream);

impl AsyncRead for EofIsError {
    async fn async_read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match tokio::io::AsyncReadExt::read(&mut self.0, buf).await? {
            0 if !buf.is_empty() => Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => Ok(n),
        }
    }
}

impl AsyncWrite for EofIsError {
    async fn async_write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        tokio::io::AsyncWriteExt::write(&mut self.0, buf).await
    }
}

pub struct Reconnecting;

impl Connector for Reconnecting {
    type Connection = EofIsError;

    async fn connect(&self, addr: SocketAddr) -> std::io::Result<EofIsError> {
        let stream = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        Ok(EofIsError(stream))
    }

    async fn connect_with_port(&self, addr: SocketAddr, _local_port: u16) -> std::io::Result<EofIsError> {
        self.connect(addr).await
    }
}

type Conn = nfs3_client::Nfs3Connection<EofIsError>;

async fn mount(ip: &str) -> Conn {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let attempt = Nfs3ConnectionBuilder::new(Reconnecting, ip, "/data")
            .mount_port(2049)
            .nfs3_port(2049)
            .connect_from_privileged_port(false)
            .credential(crate::support::auth(0, 0))
            .mount();
        if let Ok(Ok(conn)) = tokio::time::timeout(Duration::from_secs(3), attempt).await {
            return conn;
        }
        assert!(Instant::now() < deadline, "could not reach {ip} for 20 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn block(i: u64) -> Vec<u8> {
    (0..4096u64).map(|j| ((i * 7919 + j * 31) % 251) as u8).collect()
}

/// Writes and verifies blocks for `seconds`; returns how many blocks were
/// acknowledged, all of which read back intact at the end. Panics on any
/// NFS error (a STALE handle included) or corruption.
pub async fn run(ip: String, seconds: u64) -> u64 {
    let mut nfs = mount(&ip).await;
    // The transfer may begin before the first call: a broken connection
    // here is retried like any other (CREATE UNCHECKED may be repeated).
    let file = loop {
        let root = nfs.root_nfs_fh3();
        let args = CREATE3args {
            where_: diropargs3 { dir: root, name: filename3::from(b"verified.bin".to_vec()) },
            how: createhow3::UNCHECKED(sattr3::default()),
        };
        match tokio::time::timeout(Duration::from_secs(3), nfs.create(&args)).await {
            Ok(Ok(Nfs3Result::Ok(created))) => {
                let Nfs3Option::Some(file) = created.obj else { panic!("no handle") };
                break file;
            }
            Ok(Ok(Nfs3Result::Err((stat, _)))) => panic!("CREATE failed with {stat:?}"),
            _ => nfs = mount(&ip).await,
        }
    };
    let started = Instant::now();
    let mut acknowledged = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        let data = block(acknowledged);
        let args = WRITE3args {
            file: file.clone(),
            offset: acknowledged * 4096,
            count: 4096,
            stable: stable_how::FILE_SYNC,
            data: Opaque::borrowed(&data),
        };
        match tokio::time::timeout(Duration::from_secs(3), nfs.write(&args)).await {
            Ok(Ok(Nfs3Result::Ok(_))) => {}
            Ok(Ok(Nfs3Result::Err((stat, _)))) => panic!("WRITE failed with {stat:?}"),
            // Connection broken or no answer: reconnect, retry the same write.
            _ => {
                nfs = mount(&ip).await;
                continue;
            }
        }
        let read = READ3args { file: file.clone(), offset: acknowledged * 4096, count: 4096 };
        match tokio::time::timeout(Duration::from_secs(3), nfs.read(&read)).await {
            Ok(Ok(Nfs3Result::Ok(ok))) => {
                assert!(ok.data.as_ref() == data.as_slice(), "block {acknowledged} corrupted")
            }
            Ok(Ok(Nfs3Result::Err((stat, _)))) => panic!("READ failed with {stat:?}"),
            _ => {
                nfs = mount(&ip).await;
                continue;
            }
        }
        acknowledged += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Everything acknowledged is still there, through the same handle.
    for i in 0..acknowledged {
        let read = READ3args { file: file.clone(), offset: i * 4096, count: 4096 };
        let data = loop {
            match tokio::time::timeout(Duration::from_secs(3), nfs.read(&read)).await {
                Ok(Ok(Nfs3Result::Ok(ok))) => break ok.data,
                Ok(Ok(Nfs3Result::Err((stat, _)))) => panic!("READ failed with {stat:?}"),
                _ => nfs = mount(&ip).await,
            }
        };
        assert!(data.as_ref() == block(i).as_slice(), "acknowledged block {i} lost or corrupted");
    }
    acknowledged
}
