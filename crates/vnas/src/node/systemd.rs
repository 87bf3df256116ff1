//! systemd's service notifications (sd_notify(3)) for a unit of
//! `Type=notify`: READY=1 once the node has read the store and started its
//! vservers, WATCHDOG=1 while its controller loop goes round (so a hung
//! node is restarted by `WatchdogSec=`), STOPPING=1 when it stops. Nothing
//! is sent without NOTIFY_SOCKET; no watchdog without WATCHDOG_USEC (or
//! with a WATCHDOG_PID that is another process's).

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

pub struct Systemd {
    socket: UnixDatagram,
    to: SocketAddr,
    ready: AtomicBool,
    /// When the controller last went round (ms since `started`).
    heartbeat: AtomicU64,
    started: Instant,
    /// The watchdog's interval, if systemd asks for pings.
    pub watchdog: Option<Duration>,
}

impl Systemd {
    /// From the environment systemd gives a `Type=notify` service.
    pub fn from_env() -> Option<Systemd> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
        let to = match bytes.strip_prefix(b"@") {
            // An abstract socket name.
            Some(name) => <SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(name),
            None => SocketAddr::from_pathname(&path),
        };
        let to = match to {
            Ok(to) => to,
            Err(error) => {
                tracing::warn!(%error, "NOTIFY_SOCKET is not a socket address; not telling systemd");
                return None;
            }
        };
        let socket = match UnixDatagram::unbound() {
            Ok(socket) => socket,
            Err(error) => {
                tracing::warn!(%error, "cannot make a socket to tell systemd");
                return None;
            }
        };
        let ours = std::env::var("WATCHDOG_PID").ok().is_none_or(|pid| pid == std::process::id().to_string());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|usec| usec.parse::<u64>().ok())
            .filter(|usec| *usec > 0 && ours)
            .map(Duration::from_micros);
        Some(Systemd {
            socket,
            to,
            ready: AtomicBool::new(false),
            heartbeat: AtomicU64::new(0),
            started: Instant::now(),
            watchdog,
        })
    }

    fn send(&self, message: &str) {
        if let Err(error) = self.socket.send_to_addr(message.as_bytes(), &self.to) {
            tracing::debug!(%error, message, "cannot tell systemd");
        }
    }

    /// The controller went round: the watchdog may be fed; the first time,
    /// the node is ready.
    pub fn went_round(&self) {
        self.heartbeat.store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
        if !self.ready.swap(true, Ordering::Relaxed) {
            self.send("READY=1\nSTATUS=serving");
        }
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping: vservers drain and stop");
    }

    /// Feeds the watchdog twice an interval, but only while the controller
    /// has gone round within the interval: a loop that hangs stops the
    /// pings, and systemd restarts the node.
    pub async fn feed_watchdog(&self, shutdown: CancellationToken) {
        let Some(interval) = self.watchdog else { return };
        let mut every = tokio::time::interval(interval / 2);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut said = false;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            let now = self.started.elapsed().as_millis() as u64;
            let age = Duration::from_millis(now.saturating_sub(self.heartbeat.load(Ordering::Relaxed)));
            if !self.ready.load(Ordering::Relaxed) {
                continue;
            }
            if age < interval {
                self.send("WATCHDOG=1");
                said = false;
            } else if !said {
                tracing::error!(stalled = ?age, "the controller loop has not gone round; systemd's watchdog is no longer fed");
                said = true;
            }
        }
    }
}
