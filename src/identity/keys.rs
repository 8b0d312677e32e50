//! The key store: password-locked key files in `$CARDFS_HOME/keys/NAME.key`.
//!
//! Invariants: key files are created without clobbering and replaced
//! atomically (see `fsutil`), with mode 0600 in a 0700 directory; the store
//! never holds an unlocked key.

use super::fsutil::{Existing, list_files, read_optional, write_atomic};
use super::{FileError, KeyStoreError};
use crate::format::key::{UserKey, check_name};
use crate::format::keyfile::{KeyFile, Password};
use std::path::{Path, PathBuf};

/// The key files of one cardfs home.
#[derive(Debug, Clone)]
pub struct KeyStore {
    dir: PathBuf,
}

impl KeyStore {
    pub fn new(home: &Path) -> Self {
        Self {
            dir: home.join("keys"),
        }
    }

    /// Where the key named `name` lives.
    pub fn path(&self, name: &str) -> Result<PathBuf, KeyStoreError> {
        check_name(name)?;
        Ok(self.dir.join(format!("{name}.key")))
    }

    /// Stores a new key file; refuses to overwrite an existing key.
    pub fn create(&self, file: &KeyFile) -> Result<PathBuf, KeyStoreError> {
        let path = self.path(file.name())?;
        match write_atomic(&path, file.to_bytes(), Existing::Refuse) {
            Err(FileError { error, .. }) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(KeyStoreError::KeyExists(file.name().to_string()))
            }
            other => Ok(other.map(|()| path)?),
        }
    }

    /// Atomically replaces an existing key file (a crash leaves the old one).
    pub fn replace(&self, file: &KeyFile) -> Result<(), KeyStoreError> {
        self.load(file.name())?;
        Ok(write_atomic(
            &self.path(file.name())?,
            file.to_bytes(),
            Existing::Replace,
        )?)
    }

    /// Reads (without unlocking) the key named `name`.
    pub fn load(&self, name: &str) -> Result<KeyFile, KeyStoreError> {
        let path = self.path(name)?;
        let bytes = read_optional(&path)?.ok_or_else(|| KeyStoreError::KeyNotFound(name.into()))?;
        parse_at(&path, &bytes)
    }

    /// Every readable key file, sorted by name (an unreadable one is
    /// left out: see [`KeyStore::scan`]).
    pub fn list(&self) -> Result<Vec<KeyFile>, KeyStoreError> {
        Ok(self.scan()?.into_iter().filter_map(Result::ok).collect())
    }

    /// Every key file, sorted by name: parsed, or why it cannot be (a
    /// corrupt or unreadable file does not hide the others). Fails only
    /// when the directory cannot be listed.
    pub fn scan(&self) -> Result<Vec<Result<KeyFile, KeyStoreError>>, KeyStoreError> {
        Ok(list_files(&self.dir, "key")?
            .into_iter()
            .map(|path| {
                let bytes = std::fs::read(&path).map_err(|error| FileError {
                    action: "reading",
                    path: path.clone(),
                    error,
                })?;
                parse_at(&path, &bytes)
            })
            .collect())
    }

    /// Loads and unlocks the key named `name`.
    pub fn unlock(&self, name: &str, password: &Password) -> Result<UserKey, KeyStoreError> {
        let file = self.load(name)?;
        file.unlock(password)
            .map_err(|error| KeyStoreError::KeyFile {
                path: self.path(name).unwrap_or_default(),
                error,
            })
    }
}

fn parse_at(path: &Path, bytes: &[u8]) -> Result<KeyFile, KeyStoreError> {
    KeyFile::parse(bytes).map_err(|error| KeyStoreError::KeyFile {
        path: path.to_path_buf(),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::keyfile::KdfParams;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn create_list_unlock_replace() {
        let home = tempfile::tempdir().unwrap();
        let store = KeyStore::new(home.path());
        let key = UserKey::generate("alice").unwrap();
        let pw = Password::new("secret");
        let file = KeyFile::lock(&key, &pw, KdfParams::INSECURE_TEST_ONLY).unwrap();
        let path = store.create(&file).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(matches!(
            store.create(&file),
            Err(KeyStoreError::KeyExists(_))
        ));
        assert_eq!(store.list().unwrap().len(), 1);
        // A corrupt key file is reported by `scan` and hides nothing.
        std::fs::write(home.path().join("keys/broken.key"), b"not a key").unwrap();
        assert_eq!(store.list().unwrap().len(), 1);
        let scanned = store.scan().unwrap();
        assert_eq!(scanned.len(), 2);
        assert!(scanned.iter().any(|k| matches!(
            k,
            Err(KeyStoreError::KeyFile { path, .. }) if path.ends_with("broken.key")
        )));
        assert_eq!(scanned.iter().filter(|k| k.is_ok()).count(), 1);
        std::fs::remove_file(home.path().join("keys/broken.key")).unwrap();
        let unlocked = store.unlock("alice", &pw).unwrap();
        assert_eq!(unlocked.x25519_public(), key.x25519_public());
        assert!(matches!(
            store.unlock("alice", &Password::new("wrong")),
            Err(KeyStoreError::KeyFile { .. })
        ));
        assert!(matches!(
            store.unlock("bob", &pw),
            Err(KeyStoreError::KeyNotFound(_))
        ));
        let pw2 = Password::new("new");
        store
            .replace(&KeyFile::lock(&unlocked, &pw2, KdfParams::INSECURE_TEST_ONLY).unwrap())
            .unwrap();
        assert!(store.unlock("alice", &pw).is_err());
        store.unlock("alice", &pw2).unwrap();
        let names: Vec<_> = std::fs::read_dir(home.path().join("keys"))
            .unwrap()
            .collect();
        assert_eq!(names.len(), 1, "no temporary files are left behind");
    }
}
