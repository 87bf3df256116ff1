//! Console sessions: signing in with an admin token gives a random session
//! id in a cookie (HttpOnly: no script reads it; SameSite=Strict: no other
//! site's page sends it; Secure off loopback, where the console is HTTPS)
//! and a CSRF token every form that changes something carries back. Kept
//! in this node's memory, bounded; signing out or a restart ends them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, HeaderValue};

pub const COOKIE: &str = "vnas_session";
/// Sessions kept at once: a new one past this ends the least recently used.
const MAX_SESSIONS: usize = 256;
/// A session unused this long is over.
const IDLE: Duration = Duration::from_secs(8 * 3600);

/// Who signed in (the token's name), and the session's CSRF token.
#[derive(Clone, Debug)]
pub struct Session {
    pub id: String,
    pub who: String,
    pub csrf: String,
}

struct Entry {
    who: String,
    csrf: String,
    used: Instant,
}

#[derive(Default)]
pub struct Sessions {
    open: Mutex<HashMap<String, Entry>>,
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the system's random numbers");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares secrets in time that does not depend on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

impl Sessions {
    pub fn open(&self, who: &str) -> Session {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        open.retain(|_, e| now.duration_since(e.used) < IDLE);
        if open.len() >= MAX_SESSIONS {
            if let Some(oldest) = open.iter().min_by_key(|(_, e)| e.used).map(|(id, _)| id.clone()) {
                open.remove(&oldest);
            }
        }
        let session = Session { id: random_hex(), who: who.to_string(), csrf: random_hex() };
        open.insert(
            session.id.clone(),
            Entry { who: session.who.clone(), csrf: session.csrf.clone(), used: now },
        );
        session
    }

    /// The session the request's cookie names, if it is open.
    pub fn of(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers)?;
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let entry = open.get_mut(&id)?;
        if entry.used.elapsed() >= IDLE {
            open.remove(&id);
            return None;
        }
        entry.used = Instant::now();
        Some(Session { id, who: entry.who.clone(), csrf: entry.csrf.clone() })
    }

    pub fn close(&self, id: &str) {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }
}

/// The session id in the request's cookies.
fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The cookie that carries `id`; `secure` off loopback.
pub fn set_cookie(id: &str, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict{secure}"))
        .expect("hex is a valid header value")
}

/// The cookie that ends it in the browser.
pub fn clear_cookie(secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"))
        .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_cookie_only() {
        let sessions = Sessions::default();
        let s = sessions.open("admin");
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, format!("other=1; {COOKIE}={}", s.id).parse().unwrap());
        assert_eq!(sessions.of(&headers).unwrap().who, "admin");
        headers.insert(header::COOKIE, format!("{COOKIE}={}", "0".repeat(64)).parse().unwrap());
        assert!(sessions.of(&headers).is_none());
        sessions.close(&s.id);
        headers.insert(header::COOKIE, format!("{COOKIE}={}", s.id).parse().unwrap());
        assert!(sessions.of(&headers).is_none());
        assert!(same_secret(&s.csrf, &s.csrf.clone()) && !same_secret(&s.csrf, &s.id));
    }

    #[test]
    fn sessions_are_bounded() {
        let sessions = Sessions::default();
        let first = sessions.open("a");
        for _ in 0..MAX_SESSIONS {
            sessions.open("b");
        }
        assert_eq!(sessions.open.lock().unwrap().len(), MAX_SESSIONS);
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, format!("{COOKIE}={}", first.id).parse().unwrap());
        assert!(sessions.of(&headers).is_none(), "the least recently used went");
    }
}
