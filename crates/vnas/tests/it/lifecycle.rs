//! Graceful stop: a server told to stop answers what it already received,
//! closes its connections and exits, whatever its clients are doing.

use std::time::{Duration, Instant};

use nfs3_types::nfs3::*;
use nfs3_types::xdr_codec::{Opaque, Pack};

use crate::support::*;

#[tokio::test]
async fn stop_with_idle_and_busy_clients() {
    let dir = temp_dir();
    let served = Served::start(dir.path(), "");
    // An idle client holding a connection open.
    let idle = RawClient::connect(served.addr);
    let mut nfs = mount(&served).await;
    let root = nfs.root_nfs_fh3();
    let created = nfs
        .create(&CREATE3args {
            where_: diropargs3 { dir: root, name: filename3::from(b"busy".to_vec()) },
            how: createhow3::UNCHECKED(sattr3::default()),
        })
        .await
        .unwrap()
        .unwrap();
    let Nfs3Option::Some(file) = created.obj else { panic!("no handle") };

    // A busy client writing stable data as fast as it can, counting what
    // the server acknowledged, until the server goes away.
    let addr = served.addr;
    let writer = std::thread::spawn(move || {
        let mut raw = RawClient::connect(addr);
        let block = vec![7u8; 256 * 1024];
        let mut acknowledged = 0u64;
        for i in 0..100_000u64 {
            let args = WRITE3args {
                file: file.clone(),
                offset: i * block.len() as u64,
                count: block.len() as u32,
                stable: stable_how::FILE_SYNC,
                data: Opaque::borrowed(&block),
            };
            let mut record = raw.call_header(100003, 3, 7);
            args.pack(&mut record).unwrap();
            raw.send_record(&record);
            match raw.read_reply() {
                Some(reply) if results(&reply)[..4] == [0; 4] => {
                    acknowledged = (i + 1) * block.len() as u64;
                }
                _ => break,
            }
        }
        acknowledged
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    served.stop();
    assert!(started.elapsed() < Duration::from_secs(4), "stopped within the drain timeout");
    let acknowledged = writer.join().unwrap();
    assert!(acknowledged > 0, "the writer made progress before the stop");
    // Every write the server acknowledged as stable is on disk.
    let on_disk = std::fs::metadata(dir.path().join("busy")).unwrap().len();
    assert!(on_disk >= acknowledged, "{on_disk} bytes on disk, {acknowledged} acknowledged");
    drop(idle);
}
