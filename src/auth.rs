//! Admin tokens and roles: who may read the panel and who may act on it.
//!
//! A token is a secret string with a role. [`Secret`] never prints its
//! value (not in `Debug`, not in logs), and [`TokenSet::authorize`] compares
//! in constant time so that response timing does not leak a prefix.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// GET routes: panel, task lists, metrics.
    Read,
    /// Everything: submit, cancel, rebuild, limits, reload.
    Operate,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Read => "read",
            Role::Operate => "operate",
        })
    }
}

/// A secret value that never shows itself in `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send or compare it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A fresh random token: 32 bytes from the OS, hex-encoded.
    pub fn generate() -> io::Result<Self> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(io::Error::other)?;
        Ok(Secret(bytes.iter().map(|b| format!("{b:02x}")).collect()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// One configured token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Token {
    /// Who holds it, for logs (`ops-team`, `ci`).
    pub name: String,
    /// The bearer value.
    pub token: Secret,
    /// What it may do.
    pub role: Role,
}

/// The tokens the admin API accepts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenSet {
    tokens: Vec<Token>,
}

impl TokenSet {
    /// A set of tokens.
    pub fn new(tokens: Vec<Token>) -> Self {
        Self { tokens }
    }

    /// The set of the generated admin token alone (role operate), in force
    /// when no token is configured.
    pub fn generated(secret: Secret) -> Self {
        Self::new(vec![Token {
            name: "generated".into(),
            token: secret,
            role: Role::Operate,
        }])
    }

    /// Whether no token is configured.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The token matching `presented`, if any. Every configured token is
    /// compared in full, whatever matches, so timing does not tell which.
    pub fn authorize(&self, presented: &str) -> Option<&Token> {
        let mut found = None;
        for t in &self.tokens {
            let equal: bool = t
                .token
                .expose()
                .as_bytes()
                .ct_eq(presented.as_bytes())
                .into();
            if equal && found.is_none() {
                found = Some(t);
            }
        }
        found
    }
}

/// Where the generated admin token lives in a data directory.
pub fn token_file(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.token")
}

/// Reads the generated admin token of `data_dir`, creating it (mode 0600)
/// on first start. Returns the token and whether it was created now.
pub fn load_or_create_token(data_dir: &Path) -> io::Result<(Secret, bool)> {
    let path = token_file(data_dir);
    match fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok((Secret::new(s.trim()), false)),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let secret = Secret::generate()?;
    // Written to a temporary name and renamed so that a crash never leaves
    // an empty or partial token file behind.
    let tmp = data_dir.join(".admin.token.tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(secret.expose().as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    fs::rename(&tmp, &path)?;
    fs::File::open(data_dir)?.sync_all()?;
    Ok((secret, true))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn secrets_never_print_themselves() {
        let t = Token {
            name: "ops".into(),
            token: Secret::new("hunter2"),
            role: Role::Operate,
        };
        assert!(!format!("{t:?}").contains("hunter2"));
    }

    #[test]
    fn authorize_finds_the_matching_token_only() {
        let set = TokenSet::new(vec![
            Token {
                name: "viewer".into(),
                token: Secret::new("aaaa"),
                role: Role::Read,
            },
            Token {
                name: "ops".into(),
                token: Secret::new("bbbb"),
                role: Role::Operate,
            },
        ]);
        assert_eq!(set.authorize("bbbb").map(|t| t.role), Some(Role::Operate));
        assert_eq!(
            set.authorize("aaaa").map(|t| t.name.as_str()),
            Some("viewer")
        );
        assert!(set.authorize("bbb").is_none());
        assert!(set.authorize("").is_none());
    }

    #[test]
    fn generated_token_file_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let (first, created) = load_or_create_token(dir.path()).unwrap();
        assert!(created);
        assert_eq!(first.expose().len(), 64);
        let mode = fs::metadata(token_file(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (again, created) = load_or_create_token(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(again, first);
    }
}
