//! `cardfs key ...`: generate, list, change the password of, export and
//! import password-locked keys in `$CARDFS_HOME/keys/`.
//!
//! An export is a bundle of text lines: the key file (still locked with its
//! password) as `cardfs-key:BASE64`, then its card as `cardfs-card:BASE64`
//! when this home has one, so `key import` on a second machine restores the
//! key and the card the drive knows it by in one step. Invariant: import
//! never overwrites a different key of the same name, and pins only a card
//! that holds the imported key's public keys.

use super::card_files::card_store;
use super::exit::UserError;
use super::password::{
    NEW_PASSWORD_ENV, PASSWORD_ENV, PasswordArgs, key_store, read_password, unlock_key,
};
use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cardfs::format::card::Card;
use cardfs::format::key::UserKey;
use cardfs::format::keyfile::{KdfParams, KeyFile, Password};
use cardfs::identity::cards::Pinned;
use cardfs::identity::{FileError, KeyStoreError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

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
    /// Write a key (still password-locked) and its card as a text bundle,
    /// for a backup or a second machine (`cardfs key import` there).
    Export {
        name: String,
        /// Write the bundle to FILE (mode 0600) instead of stdout.
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Import a bundle written by `key export` (the key and its card; a
    /// bare key file, text or binary, works too; FILE or -).
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
        KeyCommand::Export { name, output } => export(&name, output.as_deref()),
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
    let keys = key_store()?.scan()?;
    if keys.is_empty() {
        eprintln!("No keys yet; create one with `cardfs key generate --name NAME`.");
    }
    for entry in keys {
        match entry {
            Ok(file) => {
                let p = file.params();
                println!(
                    "{}\targon2id m={} KiB t={} p={}",
                    file.name(),
                    p.m_kib,
                    p.t,
                    p.p
                );
            }
            Err(e) => {
                let name = match &e {
                    KeyStoreError::KeyFile { path, .. }
                    | KeyStoreError::File(FileError { path, .. }) => {
                        path.file_stem().map(|n| n.to_string_lossy().into_owned())
                    }
                    _ => None,
                };
                println!("{}\tunreadable: {e}", name.unwrap_or_else(|| "?".into()));
            }
        }
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

/// Whether `card` holds the public keys of the key in `file`.
fn card_of(file: &KeyFile, card: &Card) -> bool {
    *card.x25519_public() == file.x25519_public()
        && card.ed25519_public().as_bytes() == file.ed25519_public()
}

fn export(name: &str, output: Option<&Path>) -> anyhow::Result<()> {
    let file = key_store()?.load(name).map_err(|e| match e {
        KeyStoreError::KeyNotFound(_) => UserError::MissingKey { key: name.into() }.into(),
        other => anyhow::Error::new(other),
    })?;
    let mut bundle = format!(
        "{KEY_TEXT_PREFIX}{}\n",
        URL_SAFE_NO_PAD.encode(file.to_bytes())
    );
    let card = (card_store()?.list()?.into_iter()).find(|c| card_of(&file, c));
    match &card {
        Some(card) => bundle.push_str(&format!("{}\n", card.to_text())),
        None => eprintln!(
            "warning: key {name} has no card in this home; the bundle holds the key alone"
        ),
    }
    match output {
        None => print!("{bundle}"),
        Some(path) => {
            use std::os::unix::fs::OpenOptionsExt;
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("creating {}", path.display()))?;
            out.write_all(bundle.as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    let what = match &card {
        Some(card) => format!("key {name} and its card {}", card.identity()),
        None => format!("key {name}"),
    };
    let whom = output.map_or("".into(), |p| format!(" to {}", p.display()));
    eprintln!(
        "Exported {what}{whom}, still locked with its password; on the other machine run \
         `cardfs key import FILE`"
    );
    Ok(())
}

/// A bundle read back: the key file and the cards that came with it.
struct Bundle {
    key: KeyFile,
    cards: Vec<Card>,
}

fn parse_bundle(bytes: &[u8]) -> anyhow::Result<Bundle> {
    let Some(text) = std::str::from_utf8(bytes)
        .ok()
        .filter(|t| t.trim_start().starts_with(KEY_TEXT_PREFIX))
    else {
        // A binary key file, as `keys/NAME.key` holds it.
        let key = KeyFile::parse(bytes).context("not an importable key file")?;
        return Ok(Bundle {
            key,
            cards: Vec::new(),
        });
    };
    let mut key = None;
    let mut cards = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(b64) = line.strip_prefix(KEY_TEXT_PREFIX) {
            anyhow::ensure!(
                key.is_none(),
                "the bundle holds two keys; export one at a time"
            );
            let bytes = URL_SAFE_NO_PAD
                .decode(b64)
                .context("the exported key text is damaged (invalid base64)")?;
            key = Some(KeyFile::parse(&bytes).context("not an importable key file")?);
        } else if line.starts_with(cardfs::format::card::TEXT_PREFIX) {
            cards.push(Card::from_text(line).context("the card in the bundle is damaged")?);
        } else {
            anyhow::bail!("not an importable key file (unexpected line in the bundle)");
        }
    }
    Ok(Bundle {
        key: key.context("not an importable key file")?,
        cards,
    })
}

fn import(path: &Path) -> anyhow::Result<()> {
    let mut bytes = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut bytes)?;
    } else {
        bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    }
    let Bundle { key: file, cards } = parse_bundle(&bytes)?;
    let name = file.name().to_string();
    if let Some(card) = cards.iter().find(|c| !card_of(&file, c)) {
        anyhow::bail!(
            "the bundle's card {} ({}) does not hold the bundle's key {name}: the bundle is \
             damaged or was tampered with; nothing was imported",
            card.identity(),
            card.fingerprint()
        );
    }
    let keys = key_store()?;
    let existing = match keys.load(&name) {
        Ok(existing) => Some(existing),
        Err(KeyStoreError::KeyNotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let key_is_new = match &existing {
        Some(other) if other.x25519_public() != file.x25519_public() => {
            return Err(UserError::KeyNameTaken {
                key: name.clone(),
                path: keys.path(&name)?,
            }
            .into());
        }
        Some(_) => false,
        None => true,
    };
    let store = card_store()?;
    let mut pinned = Vec::new();
    for card in &cards {
        match store.pin(card, None) {
            Ok(Pinned::Unchanged) => {}
            Ok(_) => pinned.push(card),
            Err(e) => {
                return Err(super::member::replace_hint(
                    e,
                    "`cardfs card import --replace`",
                ));
            }
        }
    }
    if !key_is_new && pinned.is_empty() {
        anyhow::bail!(
            "key {name} already exists here (the same key{}); nothing to import",
            if cards.is_empty() {
                ""
            } else {
                ", and its card is pinned"
            }
        );
    }
    if key_is_new {
        let stored = keys.create(&file)?;
        println!("Imported key {name} into {}", stored.display());
    } else {
        println!("Key {name} was already here");
    }
    for card in &pinned {
        println!(
            "Pinned its card {} (fingerprint {})",
            card.identity(),
            card.fingerprint()
        );
    }
    if cards.is_empty() {
        eprintln!(
            "The import held no card. A drive owned by this key still mounts (its card is \
             taken from the drive); to share or to be shared with, import the card too \
             (`cardfs key export {name}` on the first machine writes both)."
        );
    }
    Ok(())
}
