//! Where cardfs keeps its local files: `$CARDFS_HOME` (default
//! `~/.cardfs`) holds `keys/`, `run/` (control sockets) and `cache/` (one
//! cache directory per store unless `--cache-dir` says otherwise).

use std::path::{Path, PathBuf};

/// `$CARDFS_HOME`, or `~/.cardfs`.
pub fn home() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARDFS_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let user_home = std::env::var_os("HOME")
        .filter(|d| !d.is_empty())
        .map_or_else(|| PathBuf::from("/"), PathBuf::from);
    user_home.join(".cardfs")
}

/// The default cache directory of the store named `store` (as given on the
/// command line): stable per store, distinct between stores.
pub fn default_cache_dir(store: &str) -> PathBuf {
    home().join("cache").join(short_hash(store.as_bytes()))
}

/// A short, stable file name for `bytes`: 20 hex digits of SHA-256.
pub fn short_hash(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    digest[..10].iter().map(|b| format!("{b:02x}")).collect()
}

/// The log file of a background mount daemon using `cache_dir`.
pub fn daemon_log(cache_dir: &Path) -> PathBuf {
    cache_dir.join("daemon.log")
}
