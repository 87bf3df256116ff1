//! Admin tokens: the secret every management call carries.
//!
//! A token file holds one token per line, `NAME TOKEN` (or a bare `TOKEN`,
//! named `admin`); `#` starts a comment. A node creates the file with one
//! random token at its first start if it is missing; the file must be
//! readable by its owner alone, as an ssh key. The CLI sends the first
//! token of the file; nodes accept any token in it, and name it in the
//! audit log, so several admins can hold tokens of their own.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// Where the token lives when no setting names a file: `/etc/vnas` for
/// root (the node runs as root in production), the user's configuration
/// directory otherwise (`vnas cluster up` as a user).
pub fn default_path() -> PathBuf {
    if rustix::process::geteuid().is_root() {
        return PathBuf::from("/etc/vnas/admin.token");
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    config.join("vnas/admin.token")
}

/// One token and who holds it.
#[derive(Clone)]
pub struct Token {
    pub name: String,
    pub secret: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token({})", self.name)
    }
}

/// The tokens a node accepts.
#[derive(Debug)]
pub struct Tokens {
    tokens: Vec<Token>,
}

/// Tokens shorter than this are refused: they could be guessed.
const SECRET_LEN_MIN: usize = 16;

impl Tokens {
    pub fn new(tokens: Vec<Token>) -> Tokens {
        assert!(!tokens.is_empty(), "a node needs at least one token");
        Tokens { tokens }
    }

    /// The token this node itself sends to its peers.
    pub fn own(&self) -> &Token {
        &self.tokens[0]
    }

    /// The holder of `secret`, compared in constant time so the answer's
    /// timing tells nothing about how much of a guess was right.
    pub fn check(&self, secret: &str) -> Option<&Token> {
        let mut found = None;
        for token in &self.tokens {
            if constant_time_eq(token.secret.as_bytes(), secret.as_bytes()) {
                found = Some(token);
            }
        }
        found
    }

    /// Reads the token file, creating it with one fresh token when it does
    /// not exist yet. Refuses a file others can read.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Tokens> {
        if !path.exists() {
            create(path)?;
        }
        check_private(path)?;
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(Tokens::new(parse(&text).with_context(|| format!("in the token file {}", path.display()))?))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn parse(text: &str) -> anyhow::Result<Vec<Token>> {
    let mut tokens = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (name, secret) = match fields.as_slice() {
            [secret] => ("admin", *secret),
            [name, secret] => (*name, *secret),
            _ => bail!("line {}: expected NAME TOKEN", i + 1),
        };
        if secret.len() < SECRET_LEN_MIN || !secret.chars().all(|c| c.is_ascii_graphic()) {
            bail!("line {}: the token of {name} is shorter than {SECRET_LEN_MIN} characters", i + 1);
        }
        tokens.push(Token { name: name.to_string(), secret: secret.to_string() });
    }
    if tokens.is_empty() {
        bail!("no token in it");
    }
    Ok(tokens)
}

/// A new random token: 32 bytes from the kernel, in hex.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the kernel's random source is available");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes a token file with one fresh token. Written aside and linked into
/// place, so two nodes starting at once on one machine end up sharing the
/// one token that won, never a half-written file.
fn create(path: &Path) -> anyhow::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let aside = dir.join(format!(".admin-token.{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&aside)
        .with_context(|| format!("creating {}", aside.display()))?;
    let written = writeln!(file, "# vnas admin tokens: NAME TOKEN per line; keep this file mode 600")
        .and_then(|_| writeln!(file, "admin {}", generate()))
        .and_then(|_| file.sync_all());
    let linked = written.and_then(|_| std::fs::hard_link(&aside, path));
    let _ = std::fs::remove_file(&aside);
    match linked {
        Ok(()) => {
            tracing::info!(path = %path.display(), "created the admin token");
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("writing {}", path.display())),
    }
}

fn check_private(path: &Path) -> anyhow::Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "the token file {} can be read by others (mode {mode:03o}); run: chmod 600 {}",
            path.display(),
            path.display()
        );
    }
    Ok(())
}

/// The token the CLI sends: `VNAS_TOKEN` if set, else the first token of
/// the token file. `Err` says why there is none, for the error message
/// when the API then refuses the call.
pub fn for_client(token_file: Option<&Path>) -> Result<String, String> {
    if let Ok(secret) = std::env::var("VNAS_TOKEN") {
        if !secret.is_empty() {
            return Ok(secret);
        }
    }
    let path = token_file.map(Path::to_path_buf).unwrap_or_else(default_path);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let tokens = parse(&text).map_err(|e| format!("{}: {e:#}", path.display()))?;
    Ok(tokens[0].secret.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_named_and_bare_tokens() {
        let tokens =
            parse("# c\nadmin 0123456789abcdef0123\n\nops fedcba9876543210fedc # ops team\n").unwrap();
        assert_eq!(tokens.len(), 2);
        assert_eq!((tokens[0].name.as_str(), tokens[1].name.as_str()), ("admin", "ops"));
        assert_eq!(parse("0123456789abcdef0123").unwrap()[0].name, "admin");
        assert!(parse("").is_err(), "an empty file holds no token");
        assert!(parse("admin short").is_err(), "a short token is refused");
        assert!(parse("a b c").is_err());
    }

    #[test]
    fn checks_every_token_and_nothing_else() {
        let tokens = Tokens::new(parse("a 0123456789abcdef0123\nb fedcba9876543210fedc").unwrap());
        assert_eq!(tokens.check("fedcba9876543210fedc").unwrap().name, "b");
        assert!(tokens.check("fedcba9876543210fedd").is_none());
        assert!(tokens.check("").is_none());
        assert!(tokens.check("0123456789abcdef012").is_none());
    }

    #[test]
    fn creates_a_private_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/admin.token");
        let first = Tokens::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
        let again = Tokens::load_or_create(&path).unwrap();
        assert_eq!(first.own().secret, again.own().secret, "the second start reads the same token");
        assert_eq!(first.own().secret.len(), 64);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let refused = Tokens::load_or_create(&path).unwrap_err().to_string();
        assert!(refused.contains("chmod 600"), "{refused}");
    }
}
