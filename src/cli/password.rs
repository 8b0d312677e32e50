//! Where passwords come from, and unlocking a key by name. Other commands
//! (mount, share) call [`unlock_key`] with a flattened [`PasswordArgs`] so
//! every command asks for passwords the same way.
//!
//! Order: `--password-file FILE` (one trailing newline is dropped), then the
//! environment variable `CARDFS_PASSWORD`, then a prompt on the terminal
//! without echo (asked twice when choosing a new password).

use anyhow::{Context, bail};
use cardfs::format::key::UserKey;
use cardfs::format::keyfile::Password;
use cardfs::identity::{home_from_env, keys::KeyStore};
use std::path::{Path, PathBuf};

/// Environment variable holding the password (for scripts and tests).
pub const PASSWORD_ENV: &str = "CARDFS_PASSWORD";
/// Environment variable holding the new password for `key passwd`.
pub const NEW_PASSWORD_ENV: &str = "CARDFS_NEW_PASSWORD";

/// Password options shared by every command that unlocks a key.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PasswordArgs {
    /// Read the key's password from FILE instead of the terminal (or
    /// set CARDFS_PASSWORD).
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
}

fn from_file(path: &Path) -> anyhow::Result<Password> {
    let mut bytes = zeroize::Zeroizing::new(
        std::fs::read(path).with_context(|| format!("reading password file {}", path.display()))?,
    );
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    Ok(Password::new(bytes.to_vec()))
}

fn prompt(text: &str) -> anyhow::Result<Password> {
    let answer = rpassword::prompt_password(text).context(
        "cannot ask for a password (no terminal); use --password-file or CARDFS_PASSWORD",
    )?;
    Ok(Password::new(answer.into_bytes()))
}

/// Gets a password from `file`, else from the environment variable `env`,
/// else from the terminal (twice when `confirm`). Refuses empty passwords.
pub fn read_password(
    file: Option<&Path>,
    env: &str,
    prompt_text: &str,
    confirm: bool,
) -> anyhow::Result<Password> {
    let password = if let Some(file) = file {
        from_file(file)?
    } else if let Some(value) = std::env::var_os(env) {
        Password::new(value.into_encoded_bytes())
    } else {
        let first = prompt(prompt_text)?;
        if confirm {
            let again = prompt("Repeat the password: ")?;
            if !first.ct_eq(&again) {
                bail!("the two passwords differ; nothing was changed");
            }
        }
        first
    };
    if password.is_empty() {
        bail!("the password is empty; nothing was changed");
    }
    Ok(password)
}

/// The key store of the current cardfs home.
pub fn key_store() -> anyhow::Result<KeyStore> {
    Ok(KeyStore::new(&home_from_env()?))
}

/// Loads the key `name` from `$CARDFS_HOME/keys/` and unlocks it with the
/// password from `args` (or the environment, or a prompt).
pub fn unlock_key(name: &str, args: &PasswordArgs) -> anyhow::Result<UserKey> {
    let store = key_store()?;
    store.load(name)?;
    let password = read_password(
        args.password_file.as_deref(),
        PASSWORD_ENV,
        &format!("Password for key {name}: "),
        false,
    )?;
    Ok(store.unlock(name, &password)?)
}
