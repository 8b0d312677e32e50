//! Where cardfs keeps its local files: the cardfs home (identity's
//! `home_from_env`: `$CARDFS_HOME`, default `~/.config/cardfs`) holds
//! `keys/`, `cards/`, `run/` (control sockets) and `cache/` (one cache
//! directory per store unless `--cache-dir` says otherwise).

use std::path::{Path, PathBuf};

/// The cardfs home.
pub fn home() -> anyhow::Result<PathBuf> {
    Ok(cardfs::identity::home_from_env()?)
}

/// The default cache directory of the store named `store` (as given on the
/// command line): stable per store, distinct between stores.
pub fn default_cache_dir(store: &str) -> anyhow::Result<PathBuf> {
    Ok(home()?.join("cache").join(short_hash(store.as_bytes())))
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
