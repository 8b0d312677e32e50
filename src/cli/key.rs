//! `cardfs key ...`: generate, list, change the password of, export and
//! import password-locked keys in `$CARDFS_HOME/keys/`.

use super::password::{
    NEW_PASSWORD_ENV, PASSWORD_ENV, PasswordArgs, key_store, read_password, unlock_key,
};
use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cardfs::format::key::UserKey;
use cardfs::format::keyfile::{KdfParams, KeyFile, Password};
use std::io::Read;
use std::path::PathBuf;

/// Prefix of the one-line text form of an exported key file.
const KEY_TEXT_PREFIX: &str = "cardfs-key:";

#[derive(Debug, clap::Subcommand)]
pub enum KeyCommand {
    /// Create a new key pair set (X25519 + Ed25519), locked with a password.
    Generate(NewKeyArgs),
    /// List the keys in this cardfs home.
    List,
    /// Re-lock a key under a new password (atomically).
    Passwd {
        name: String,
        #[command(flatten)]
        password: PasswordArgs,
        /// Read the new password from FILE (or set CARDFS_NEW_PASSWORD).
        #[arg(long, value_name = "FILE")]
        new_password_file: Option<PathBuf>,
        #[command(flatten)]
        kdf: KdfArgs,
    },
    /// Print a key file (still password-locked) as one line, for backup.
    Export { name: String },
    /// Import a key file written by `key export` (text or binary; FILE or -).
    Import { file: PathBuf },
}

/// What creating a key needs (`key generate`, `authority create`).
#[derive(Debug, Clone, clap::Args)]
pub struct NewKeyArgs {
    /// Local name of the key (letters, digits, . _ @ + -).
    #[arg(long)]
    pub name: String,
    #[command(flatten)]
    pub password: PasswordArgs,
    #[command(flatten)]
    pub kdf: KdfArgs,
}

/// Argon2id cost selection. The weak setting exists for automated tests
/// only and is hidden from help.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct KdfArgs {
    /// TEST ONLY: lock with trivially weak Argon2id parameters (64 KiB,
    /// one pass) so test suites run fast. Never use for real keys.
    #[arg(long, hide = true)]
    pub insecure_test_kdf: bool,
}

impl KdfArgs {
    pub fn params(&self) -> KdfParams {
        if self.insecure_test_kdf {
            eprintln!(
                "WARNING: --insecure-test-kdf: this key is locked with test-only Argon2id \
                 parameters and is easy to brute-force"
            );
            KdfParams::INSECURE_TEST_ONLY
        } else {
            KdfParams::DEFAULT
        }
    }
}

pub fn run(command: KeyCommand) -> anyhow::Result<()> {
    match command {
        KeyCommand::Generate(args) => {
            generate(&args)?;
            Ok(())
        }
        KeyCommand::List => list(),
        KeyCommand::Passwd {
            name,
            password,
            new_password_file,
            kdf,
        } => passwd(&name, &password, new_password_file, kdf),
        KeyCommand::Export { name } => {
            let file = key_store()?.load(&name)?;
            println!(
                "{KEY_TEXT_PREFIX}{}",
                URL_SAFE_NO_PAD.encode(file.to_bytes())
            );
            Ok(())
        }
        KeyCommand::Import { file } => import(&file),
    }
}

/// Generates and stores a key; shared with `authority create`.
pub fn generate(args: &NewKeyArgs) -> anyhow::Result<UserKey> {
    let NewKeyArgs {
        name,
        password,
        kdf,
    } = args;
    let store = key_store()?;
    let path = store.path(name)?;
    if path.exists() {
        bail!("a key named {name:?} already exists");
    }
    let pw = read_password(
        password.password_file.as_deref(),
        password.password_command.as_deref(),
        PASSWORD_ENV,
        &format!("New password for key {name}: "),
        true,
    )?;
    let key = UserKey::generate(name)?;
    let file = KeyFile::lock(&key, &pw, kdf.params())?;
    let path = store.create(&file)?;
    eprintln!("Created key {name} in {}", path.display());
    eprintln!(
        "Keep a backup (`cardfs key export {name}`) and remember the password: \
         a lost key or password cannot be recovered, and nothing encrypted to it can be read."
    );
    Ok(key)
}

fn list() -> anyhow::Result<()> {
    let keys = key_store()?.list()?;
    if keys.is_empty() {
        eprintln!("No keys yet; create one with `cardfs key generate --name NAME`.");
    }
    for file in keys {
        let p = file.params();
        println!(
            "{}\targon2id m={} KiB t={} p={}",
            file.name(),
            p.m_kib,
            p.t,
            p.p
        );
    }
    Ok(())
}

fn passwd(
    name: &str,
    password: &PasswordArgs,
    new_file: Option<PathBuf>,
    kdf: KdfArgs,
) -> anyhow::Result<()> {
    let key = unlock_key(name, password)?;
    let new: Password = read_password(
        new_file.as_deref(),
        None,
        NEW_PASSWORD_ENV,
        &format!("New password for key {name}: "),
        true,
    )?;
    let file = KeyFile::lock(&key, &new, kdf.params())?;
    key_store()?.replace(&file)?;
    println!("Key {name} is now locked with the new password");
    Ok(())
}

fn import(path: &std::path::Path) -> anyhow::Result<()> {
    let mut bytes = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut bytes)?;
    } else {
        bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    }
    let bytes = match std::str::from_utf8(&bytes).ok().map(str::trim) {
        Some(text) if text.starts_with(KEY_TEXT_PREFIX) => URL_SAFE_NO_PAD
            .decode(&text[KEY_TEXT_PREFIX.len()..])
            .context("the exported key text is damaged (invalid base64)")?,
        _ => bytes,
    };
    let file = KeyFile::parse(&bytes).context("not an importable key file")?;
    let stored = key_store()?.create(&file)?;
    println!("Imported key {} into {}", file.name(), stored.display());
    Ok(())
}
