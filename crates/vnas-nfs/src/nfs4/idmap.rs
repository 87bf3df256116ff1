//! owner and owner_group as text (RFC 8881 section 5.9). Without an
//! ID-mapping domain they are numeric ids ("1000"), as Linux sends and
//! expects them with AUTH_SYS (its default, `nfs4_disable_idmapping`).
//! With one, the server answers "name@domain" from its own user and group
//! databases (NSS: /etc/passwd, LDAP, ...), the id where an id has no
//! name, and takes either form, so clients that map names (macOS, FreeBSD,
//! Linux with idmapping on) show names. A name of another domain, or one
//! not known, is NFS4ERR_BADOWNER.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lookups kept, both ways together; past it the cache starts again.
const CACHED_MAX: usize = 4096;
/// How long a lookup is believed: a renamed user shows within a minute.
const CACHED_FOR: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    User,
    Group,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    Id(Kind, u32),
    Name(Kind, String),
}

#[derive(Clone)]
enum Found {
    Name(Option<String>),
    Id(Option<u32>),
}

pub struct IdMap {
    domain: Option<String>,
    cache: Mutex<HashMap<Key, (Found, Instant)>>,
}

impl IdMap {
    pub fn new(domain: Option<String>) -> IdMap {
        IdMap { domain: domain.filter(|d| !d.is_empty()), cache: Mutex::default() }
    }

    pub fn domain(&self) -> Option<&str> {
        self.domain.as_deref()
    }

    /// The text a client is told for `id`.
    pub fn to_text(&self, kind: Kind, id: u32) -> String {
        let Some(domain) = &self.domain else { return id.to_string() };
        let found = self.cached(Key::Id(kind, id), || Found::Name(name_of(kind, id)));
        match found {
            Found::Name(Some(name)) => format!("{name}@{domain}"),
            _ => id.to_string(),
        }
    }

    /// The id a client's text names; `None` (NFS4ERR_BADOWNER) if it names
    /// none here.
    pub fn to_id(&self, kind: Kind, text: &[u8]) -> Option<u32> {
        let text = std::str::from_utf8(text).ok()?;
        if let Ok(id) = text.parse::<u32>() {
            return Some(id);
        }
        let domain = self.domain.as_deref()?;
        let name = match text.rsplit_once('@') {
            Some((name, theirs)) if theirs.eq_ignore_ascii_case(domain) => name,
            Some(_) => return None,
            None => text,
        };
        if name.is_empty() {
            return None;
        }
        match self.cached(Key::Name(kind, name.to_string()), || Found::Id(id_of(kind, name))) {
            Found::Id(id) => id,
            Found::Name(_) => None,
        }
    }

    fn cached(&self, key: Key, look_up: impl FnOnce() -> Found) -> Found {
        let now = Instant::now();
        if let Some((found, at)) = self.cache.lock().expect("not poisoned").get(&key) {
            if now.duration_since(*at) < CACHED_FOR {
                return found.clone();
            }
        }
        // Looked up outside the lock: NSS may ask a directory server.
        let found = look_up();
        let mut cache = self.cache.lock().expect("not poisoned");
        if cache.len() >= CACHED_MAX {
            cache.clear();
        }
        cache.insert(key, (found.clone(), now));
        found
    }
}

/// Runs a reentrant NSS lookup with a buffer that grows on ERANGE (a
/// group with many members), up to 1 MiB.
fn with_buffer(mut call: impl FnMut(&mut [libc::c_char]) -> libc::c_int) -> bool {
    let mut size = 4096;
    loop {
        let mut buf = vec![0 as libc::c_char; size];
        match call(&mut buf) {
            libc::ERANGE if size < 1 << 20 => size *= 4,
            0 => return true,
            _ => return false,
        }
    }
}

fn name_of(kind: Kind, id: u32) -> Option<String> {
    let mut name = None;
    match kind {
        Kind::User => {
            with_buffer(|buf| {
                // SAFETY: every pointer is to a live local of the right
                // type; `buf` outlives the call and the name is copied
                // out before it goes.
                let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
                let mut result = std::ptr::null_mut();
                let rc = unsafe { libc::getpwuid_r(id, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
                if rc == 0 && !result.is_null() {
                    name = Some(unsafe { CStr::from_ptr(pwd.pw_name) }.to_string_lossy().into_owned());
                }
                rc
            });
        }
        Kind::Group => {
            with_buffer(|buf| {
                // SAFETY: as above.
                let mut grp: libc::group = unsafe { std::mem::zeroed() };
                let mut result = std::ptr::null_mut();
                let rc = unsafe { libc::getgrgid_r(id, &mut grp, buf.as_mut_ptr(), buf.len(), &mut result) };
                if rc == 0 && !result.is_null() {
                    name = Some(unsafe { CStr::from_ptr(grp.gr_name) }.to_string_lossy().into_owned());
                }
                rc
            });
        }
    }
    name
}

fn id_of(kind: Kind, name: &str) -> Option<u32> {
    let cname = CString::new(name).ok()?;
    let mut id = None;
    match kind {
        Kind::User => {
            with_buffer(|buf| {
                // SAFETY: as in `name_of`.
                let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
                let mut result = std::ptr::null_mut();
                let rc = unsafe {
                    libc::getpwnam_r(cname.as_ptr(), &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result)
                };
                if rc == 0 && !result.is_null() {
                    id = Some(pwd.pw_uid);
                }
                rc
            });
        }
        Kind::Group => {
            with_buffer(|buf| {
                // SAFETY: as in `name_of`.
                let mut grp: libc::group = unsafe { std::mem::zeroed() };
                let mut result = std::ptr::null_mut();
                let rc = unsafe {
                    libc::getgrnam_r(cname.as_ptr(), &mut grp, buf.as_mut_ptr(), buf.len(), &mut result)
                };
                if rc == 0 && !result.is_null() {
                    id = Some(grp.gr_gid);
                }
                rc
            });
        }
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_without_a_domain_names_with_one() {
        let plain = IdMap::new(None);
        assert_eq!(plain.to_text(Kind::User, 0), "0");
        assert_eq!(plain.to_id(Kind::User, b"1000"), Some(1000));
        assert_eq!(plain.to_id(Kind::User, b"root@example.test"), None, "no domain: names are not taken");

        let named = IdMap::new(Some("example.test".into()));
        // Every Linux has root, uid and gid 0.
        assert_eq!(named.to_text(Kind::User, 0), "root@example.test");
        assert_eq!(named.to_text(Kind::Group, 0), "root@example.test");
        assert_eq!(named.to_id(Kind::User, b"root@EXAMPLE.test"), Some(0), "domains compare without case");
        assert_eq!(named.to_id(Kind::Group, b"root@example.test"), Some(0));
        assert_eq!(named.to_id(Kind::User, b"root@elsewhere.test"), None, "another domain");
        assert_eq!(named.to_id(Kind::User, b"no-such-user-here@example.test"), None);
        assert_eq!(named.to_id(Kind::User, b"4242"), Some(4242), "numeric ids are still taken");
        // An id with no name goes out as the number.
        assert_eq!(named.to_text(Kind::User, 4_000_000_000), "4000000000");
        assert_eq!(named.to_id(Kind::User, b"@example.test"), None);
    }
}
