//! What `init` and `mount` share: unlocking the user's key into the
//! engine's [`Identity`], opening the store a command line names, and
//! turning the failures of both into the [`UserError`]s of docs/CLI.md.

use super::exit::UserError;
use super::password::{self, PasswordArgs};
use cardfs::drive::{DriveError, Identity};
use cardfs::format::card::Card;
use cardfs::format::key::UserKey;
use cardfs::format::keyfile::KeyFileError;
use cardfs::identity::KeyStoreError;
use cardfs::store::{self, ObjectStore, OpenError, StoreError};
use std::sync::Arc;

/// Which key, and where its password comes from.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KeyArgs {
    /// The key to use (default: the only key there is).
    #[arg(long, value_name = "NAME")]
    pub key: Option<String>,
    #[command(flatten)]
    pub password: PasswordArgs,
}

/// How to reach the store.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StoreArgs {
    /// S3 endpoint URL for s3:// stores (default: AWS_ENDPOINT_URL, else AWS).
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// Seconds the store may take to answer a small request, retries
    /// included, before it counts as unreachable (default 30): `status`
    /// says so, and writers held back by a full cache get ENOSPC.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(3..=3600))]
    pub store_timeout: Option<u64>,
}

/// Default of `--store-timeout`, in seconds.
pub const DEFAULT_STORE_TIMEOUT_SECS: u64 = 30;

impl StoreArgs {
    /// `--store-timeout`, or its default.
    pub fn store_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.store_timeout.unwrap_or(DEFAULT_STORE_TIMEOUT_SECS))
    }
}

/// The unlocked key as the engine and `init` need it.
pub struct Unlocked {
    pub identity: Identity,
    pub card: Card,
}

/// The key name to use: the one given, or the only one there is.
fn key_name(args: &KeyArgs) -> anyhow::Result<String> {
    if let Some(name) = &args.key {
        return Ok(name.clone());
    }
    let all = password::key_store()?.list()?;
    match all.as_slice() {
        [only] => Ok(only.name().to_string()),
        [] => Err(UserError::MissingKey {
            key: "(none)".into(),
        }
        .into()),
        _ => anyhow::bail!("there are several keys; say which one with --key NAME"),
    }
}

/// For a background mount: the password the parent hands to its daemon
/// child on stdin, or `None` when the child reads it itself (a password
/// file). A password from `--password-command`, `CARDFS_PASSWORD` or the
/// terminal is read here, so the daemon never runs the command and never
/// has the password in its environment. The key file is checked here (a
/// missing or unreadable key is reported before any prompt), but the key
/// is unlocked only by the daemon: Argon2id is the largest fixed cost of a
/// mount, and deriving it twice doubled it. A wrong password comes back
/// from the daemon's report with the same message and exit code.
pub fn password_for_child(args: &KeyArgs) -> anyhow::Result<Option<password::Secret>> {
    if args.password.password_file.is_some() {
        return Ok(None);
    }
    let name = key_name(args)?;
    password::key_store()?
        .load(&name)
        .map_err(|e| key_error(e.into(), &name))?;
    let secret = password::secret_for_child(
        &args.password,
        password::PASSWORD_ENV,
        &format!("Password for key {name}: "),
    )
    .map_err(|e| key_error(e, &name))?;
    Ok(Some(secret))
}

/// Unlocks the key (identity's [`password::unlock_key`]) and finds its card.
pub fn unlock(args: &KeyArgs) -> anyhow::Result<Unlocked> {
    with_card(unlock_key(args)?, None)
}

/// Unlocks the key without looking for its card.
pub fn unlock_key(args: &KeyArgs) -> anyhow::Result<UserKey> {
    let name = key_name(args)?;
    password::unlock_key(&name, &args.password).map_err(|e| key_error(e, &name))
}

/// The key with its card: the one pinned here, else `drive_card` (the
/// card a drive's header carries) when it holds this key, which is then
/// pinned: a card is signed by its own key, so a card holding our public
/// keys was made by us (a key imported without its card, on a second
/// machine).
pub fn with_card(key: UserKey, drive_card: Option<&[u8]>) -> anyhow::Result<Unlocked> {
    let cards = super::card_files::card_store()?;
    let card = match super::card::own_card(&cards, &key) {
        Ok(card) => card,
        Err(_) => {
            let ours = drive_card
                .and_then(|bytes| Card::from_bytes(bytes).ok())
                .filter(|card| card.matches_key(&key))
                .ok_or_else(|| UserError::MissingCard {
                    key: key.name().to_string(),
                })?;
            cards.pin(&ours, None)?;
            tracing::warn!(
                "pinned the card of key {} found in the drive: {} ({})",
                key.name(),
                ours.identity(),
                ours.fingerprint()
            );
            ours
        }
    };
    let identity = Identity::new(
        key.x25519_secret().clone(),
        key.signing_key().clone(),
        card.id().0,
    );
    Ok(Unlocked { identity, card })
}

/// Gives key failures their user error (and exit code).
fn key_error(err: anyhow::Error, name: &str) -> anyhow::Error {
    let user = match err.downcast_ref::<KeyStoreError>() {
        Some(KeyStoreError::KeyNotFound(_)) => Some(UserError::MissingKey { key: name.into() }),
        Some(KeyStoreError::KeyFile {
            error: KeyFileError::WrongPassword | KeyFileError::EmptyPassword,
            ..
        }) => Some(UserError::WrongPassword { key: name.into() }),
        _ => None,
    };
    match user {
        Some(user) => anyhow::Error::new(user),
        None => err,
    }
}

/// `init --create-bucket`: creates the bucket of an `s3://` store (a bucket
/// this user already owns is fine). Returns the bucket's name.
pub async fn create_bucket(location: &str, args: &StoreArgs) -> anyhow::Result<String> {
    let mut options = store::OpenOptions::default();
    options.s3.endpoint = args.endpoint.clone();
    let store::Location::S3 { bucket, prefix } = store::parse_location(location)? else {
        return Err(super::exit::UsageError(format!(
            "--create-bucket is for s3:// stores; {location} is a local directory, which \
             `cardfs init` creates anyway"
        ))
        .into());
    };
    let s3 = store::S3Store::new(&bucket, &prefix, &options.s3)
        .await
        .map_err(|e| store_error(e, location))?;
    s3.create_bucket()
        .await
        .map_err(|e| store_error(e, location))?;
    Ok(bucket)
}

/// Opens the store named on the command line and checks it is usable:
/// reachable, credentials accepted, bucket present, conditional writes
/// honoured.
pub async fn open_store(location: &str, args: &StoreArgs) -> anyhow::Result<Arc<dyn ObjectStore>> {
    let store = open_store_offline(location, args).await?;
    // One listing proves the store reachable, the credentials accepted and
    // the bucket present before anything is written (some servers create
    // a missing bucket on the first PUT). Under the drive header's name:
    // a local store lists a prefix by reading its directories, and the
    // whole store's first key lies among every content object.
    if let Err(e) = store.list(cardfs::drive::HEADER_KEY, None, 1).await {
        return Err(first_answer_error(e, location).await);
    }
    store
        .check_conditional_writes()
        .await
        .map_err(|e| store_error(e, location))?;
    Ok(store)
}

/// Whether `err` is [`UserError::StoreUnreachable`] (exit 20).
pub fn is_unreachable(err: &anyhow::Error) -> bool {
    matches!(
        err.downcast_ref::<UserError>(),
        Some(UserError::StoreUnreachable { .. })
    )
}

/// Opens the store without contacting it (`open_store` checks it next; an
/// offline mount uses it as is: the engine opens the drive from its cache
/// and verifies the store's copy once it answers).
pub async fn open_store_offline(
    location: &str,
    args: &StoreArgs,
) -> anyhow::Result<Arc<dyn ObjectStore>> {
    let mut options = store::OpenOptions::default();
    options.s3.endpoint = args.endpoint.clone();
    // A small request and its retries get the store timeout in all.
    options.s3.request_timeout = args.store_timeout() / 3;
    store::open(location, &options).await.map_err(|e| match e {
        OpenError::Store(e) => store_error(e, location),
        other => other.into(),
    })
}

/// The user error for the first request to a store failing. A listing
/// cannot legitimately be "not found", so such an answer (or one the S3
/// mapping could not place) means the endpoint is not an S3 server; an S3
/// store that cannot be reached is first checked for missing credentials
/// (the SDK reports those as a failure to send).
async fn first_answer_error(err: StoreError, location: &str) -> anyhow::Error {
    if !location.starts_with("s3://") {
        return store_error(err, location);
    }
    match err {
        StoreError::NotFound { .. } | StoreError::Other { .. } => UserError::NotS3 {
            store: location.into(),
            reason: match err {
                StoreError::Other { message } => message,
                _ => "a listing answered \"not found\"".into(),
            },
        }
        .into(),
        StoreError::Transient { .. } if !has_s3_credentials().await => UserError::NoCredentials {
            store: location.into(),
        }
        .into(),
        other => store_error(other, location),
    }
}

/// Whether the standard AWS chain (environment, profile files, ...) yields
/// credentials.
async fn has_s3_credentials() -> bool {
    use aws_sdk_s3::config::ProvideCredentials;
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(cardfs::store::s3::https_client())
        .load()
        .await;
    match config.credentials_provider() {
        Some(provider) => provider.provide_credentials().await.is_ok(),
        None => false,
    }
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
        StoreError::BucketMissing { .. } => {
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
        DriveError::CacheInUse(dir) => UserError::CacheDirBusy {
            cache_dir: dir.into(),
            holder: "another cardfs process".into(),
        }
        .into(),
        DriveError::Exists => UserError::DriveExists {
            store: location.into(),
        }
        .into(),
        DriveError::NotMember => UserError::NothingShared {
            store: location.into(),
        }
        .into(),
        DriveError::OldFormat { version, .. } => UserError::OldFormat { version }.into(),
        DriveError::UnsupportedFormat { object, reason } => UserError::NewerFormat {
            detail: format!("{object}: {reason}"),
        }
        .into(),
        other => other.into(),
    }
}

/// Fails with [`UserError::NoDrive`] when the store holds no object at all
/// (a store with objects but no valid drive is a verification failure,
/// reported by the engine).
pub async fn ensure_not_empty(store: &dyn ObjectStore, location: &str) -> anyhow::Result<()> {
    // A drive header is an object (the usual case, without a listing).
    if store.head(cardfs::drive::HEADER_KEY).await.is_ok() {
        return Ok(());
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::exit::code_of;

    #[test]
    fn store_failures_get_their_own_exit_codes() {
        let loc = "s3://team/drive";
        let ignored = StoreError::ConditionalWritesIgnored {
            store: "s3 endpoint".into(),
        };
        assert_eq!(code_of(&store_error(ignored, loc)), 23);
        let missing = StoreError::BucketMissing {
            message: "NoSuchBucket".into(),
        };
        let err = store_error(missing, loc);
        assert_eq!(code_of(&err), 21);
        assert!(err.to_string().contains("\"team\""), "{err}");
        let auth = StoreError::Auth {
            message: "SignatureDoesNotMatch".into(),
        };
        assert_eq!(code_of(&store_error(auth, loc)), 22);
    }
}
