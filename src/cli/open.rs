//! What `init` and `mount` share: unlocking the user's key into the
//! engine's [`Identity`], opening the store a command line names, and
//! turning the failures of both into the [`UserError`]s of docs/CLI.md.

use super::exit::UserError;
use anyhow::Context;
use cardfs::drive::{DriveError, Identity};
use cardfs::format::card::Card;
use cardfs::format::keyfile::{KeyFileError, Password};
use cardfs::identity::{self, StoreError as KeyStoreError, cards::CardStore, keys::KeyStore};
use cardfs::store::{LocalStore, ObjectStore, StoreError};
use std::path::PathBuf;
use std::sync::Arc;

/// Which key, and where its password comes from.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KeyArgs {
    /// The key to use (default: the only key there is).
    #[arg(long, value_name = "NAME")]
    pub key: Option<String>,
    /// Read the key's password from the first line of FILE instead of
    /// CARDFS_PASSWORD or a prompt.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
}

/// How to reach the store.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StoreArgs {
    /// S3 endpoint URL for s3:// stores (default: AWS_ENDPOINT_URL, else AWS).
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
}

/// The unlocked key as the engine and `init` need it.
pub struct Unlocked {
    pub identity: Identity,
    pub card: Card,
}

/// The key name to use: the one given, or the only one there is.
fn key_name(args: &KeyArgs, keys: &KeyStore) -> anyhow::Result<String> {
    if let Some(name) = &args.key {
        return Ok(name.clone());
    }
    let all = keys.list()?;
    match all.as_slice() {
        [only] => Ok(only.name().to_string()),
        [] => Err(UserError::MissingKey {
            key: "(none)".into(),
        }
        .into()),
        _ => anyhow::bail!("there are several keys; say which one with --key NAME"),
    }
}

/// The password from `--password-file`, `CARDFS_PASSWORD`, or a prompt.
fn password(args: &KeyArgs, key: &str) -> anyhow::Result<Password> {
    if let Some(file) = &args.password_file {
        let text = std::fs::read(file)
            .with_context(|| format!("reading password file {}", file.display()))?;
        let line = text.split(|b| *b == b'\n').next().unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        return Ok(Password::new(line.to_vec()));
    }
    if let Some(pw) = std::env::var_os("CARDFS_PASSWORD") {
        use std::os::unix::ffi::OsStringExt;
        return Ok(Password::new(pw.into_vec()));
    }
    prompt(key).map(Password::new)
}

fn prompt(key: &str) -> anyhow::Result<String> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return Err(
            anyhow::Error::new(UserError::WrongPassword { key: key.into() })
                .context("no password given (use --password-file or CARDFS_PASSWORD)"),
        );
    }
    rpassword::prompt_password(format!("Password for key {key:?}: "))
        .context("reading the password")
}

/// For a background mount: the password the parent must hand to its
/// daemon child (typed at a prompt), or `None` when the child can read it
/// itself (password file or environment).
pub fn password_for_child(args: &KeyArgs) -> anyhow::Result<Option<String>> {
    if args.password_file.is_some() || std::env::var_os("CARDFS_PASSWORD").is_some() {
        return Ok(None);
    }
    let keys = KeyStore::new(&identity::home_from_env()?);
    let name = key_name(args, &keys)?;
    let pw = prompt(&name)?;
    // Check it now, so a typo is reported here rather than by the daemon.
    keys.unlock(&name, &Password::new(pw.clone()))
        .map_err(|e| key_error(e, &name))?;
    Ok(Some(pw))
}

/// Unlocks the key and finds its card.
pub fn unlock(args: &KeyArgs) -> anyhow::Result<Unlocked> {
    let home = identity::home_from_env()?;
    let keys = KeyStore::new(&home);
    let name = key_name(args, &keys)?;
    if !keys.path(&name).is_ok_and(|p| p.exists()) {
        return Err(UserError::MissingKey { key: name }.into());
    }
    let pw = password(args, &name)?;
    let key = keys.unlock(&name, &pw).map_err(|e| key_error(e, &name))?;
    let card = CardStore::new(&home)
        .list()?
        .into_iter()
        .find(|c| c.matches_key(&key))
        .ok_or(UserError::MissingCard { key: name })?;
    let identity = Identity::new(
        key.x25519_secret().clone(),
        key.signing_key().clone(),
        card.id().0,
    );
    Ok(Unlocked { identity, card })
}

fn key_error(err: KeyStoreError, name: &str) -> anyhow::Error {
    match err {
        KeyStoreError::KeyNotFound(_) => UserError::MissingKey { key: name.into() }.into(),
        KeyStoreError::KeyFile {
            source: KeyFileError::WrongPassword | KeyFileError::EmptyPassword,
            ..
        } => UserError::WrongPassword { key: name.into() }.into(),
        other => other.into(),
    }
}

/// Opens the store named on the command line and checks it is usable:
/// reachable, credentials accepted, bucket present, conditional writes
/// honoured.
pub async fn open_store(location: &str, args: &StoreArgs) -> anyhow::Result<Arc<dyn ObjectStore>> {
    // Interim until the store branch's `store::open` is merged: local
    // directories only.
    let _ = &args.endpoint;
    if location.contains("://") && !location.starts_with("file://") {
        anyhow::bail!("only local-directory stores are supported by this build");
    }
    let path = PathBuf::from(location.strip_prefix("file://").unwrap_or(location));
    let store: Arc<dyn ObjectStore> = Arc::new(
        tokio::task::spawn_blocking(move || LocalStore::open(path))
            .await?
            .map_err(|e| store_error(e, location))?,
    );
    store
        .check_conditional_writes()
        .await
        .map_err(|e| store_error(e, location))?;
    Ok(store)
}

/// The user error for a store failure, or the failure itself.
pub fn store_error(err: StoreError, location: &str) -> anyhow::Error {
    let store = location.to_string();
    match err {
        StoreError::Transient { message, .. } => UserError::StoreUnreachable {
            store,
            reason: message,
        }
        .into(),
        StoreError::Auth { message } => UserError::CredentialsRejected {
            store,
            reason: message,
        }
        .into(),
        StoreError::ConditionalWritesIgnored { .. } => {
            UserError::NoConditionalWrites { store }.into()
        }
        // The S3 store reports a missing bucket only in words.
        StoreError::Other { message } if message.starts_with("bucket does not exist") => {
            let bucket = location
                .strip_prefix("s3://")
                .map(|r| r.split('/').next().unwrap_or(r).to_string())
                .unwrap_or(store);
            UserError::BucketMissing { bucket }.into()
        }
        other => other.into(),
    }
}

/// The user error for an engine failure to create or open a drive.
pub fn drive_error(err: DriveError, location: &str) -> anyhow::Error {
    match err {
        DriveError::Store(e) => store_error(e, location),
        DriveError::Exists => UserError::DriveExists {
            store: location.into(),
        }
        .into(),
        // The engine reports a format it cannot read as a failed
        // verification; its reason names the version or feature flags
        // (format::wire::FormatError).
        DriveError::Tampered { object, reason }
            if reason.starts_with("unsupported version")
                || reason.starts_with("unknown feature flags") =>
        {
            UserError::NewerFormat {
                detail: format!("{object}: {reason}"),
            }
            .into()
        }
        other => other.into(),
    }
}

/// Fails with [`UserError::NoDrive`] when the store holds no object at all
/// (a store with objects but no valid drive is a verification failure,
/// reported by the engine).
pub async fn ensure_not_empty(store: &dyn ObjectStore, location: &str) -> anyhow::Result<()> {
    let page = store
        .list("", None, 1)
        .await
        .map_err(|e| store_error(e, location))?;
    if page.objects.is_empty() {
        return Err(UserError::NoDrive {
            store: location.into(),
        }
        .into());
    }
    Ok(())
}
