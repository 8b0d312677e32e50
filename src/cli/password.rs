//! Where passwords come from, and unlocking a key by name. Other commands
//! (mount, share) call [`unlock_key`] with a flattened [`PasswordArgs`] so
//! every command asks for passwords the same way.
//!
//! Order: `--password-file FILE` (one trailing newline is dropped), then
//! `--password-command CMD` (its standard output, one trailing newline
//! dropped), then the environment variable `CARDFS_PASSWORD`, then a prompt
//! on the terminal without echo (asked twice when choosing a new password).

use super::exit::UserError;
use anyhow::{Context, bail};
use cardfs::format::key::UserKey;
use cardfs::format::keyfile::{KeyFileError, Password};
use cardfs::identity::{KeyStoreError, home_from_env, keys::KeyStore};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Environment variable holding the password (for scripts and tests).
pub const PASSWORD_ENV: &str = "CARDFS_PASSWORD";
/// Environment variable holding the new password for `key passwd`.
pub const NEW_PASSWORD_ENV: &str = "CARDFS_NEW_PASSWORD";

/// Password options shared by every command that unlocks a key.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PasswordArgs {
    /// Read the key's password from FILE instead of the terminal (or
    /// set CARDFS_PASSWORD).
    #[arg(long, value_name = "FILE", conflicts_with = "password_command")]
    pub password_file: Option<PathBuf>,
    /// Run CMD with `sh -c` and use what it prints as the password (e.g.
    /// `pass show cardfs`, a keyring tool).
    #[arg(long, value_name = "CMD")]
    pub password_command: Option<String>,
}

/// Password bytes on their way to a [`Password`] or a daemon's stdin.
pub type Secret = Zeroizing<Vec<u8>>;

fn drop_newline(mut bytes: Secret) -> Secret {
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    bytes
}

fn from_file(path: &Path) -> anyhow::Result<Secret> {
    let bytes = Zeroizing::new(
        std::fs::read(path).with_context(|| format!("reading password file {}", path.display()))?,
    );
    Ok(drop_newline(bytes))
}

/// Runs `command` with `sh -c`; its standard output is the password. Its
/// standard input and error stay the terminal's, so it may prompt.
pub fn from_command(command: &str) -> anyhow::Result<Secret> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running the password command `{command}`"))?;
    let bytes = drop_newline(Zeroizing::new(out.stdout));
    if !out.status.success() {
        bail!("the password command `{command}` failed ({})", out.status);
    }
    Ok(bytes)
}

fn prompt(text: &str) -> anyhow::Result<Secret> {
    let answer = rpassword::prompt_password(text).map_err(|_| UserError::NoPassword)?;
    Ok(Zeroizing::new(answer.into_bytes()))
}

/// The password from `--password-command`, else `env`, else the terminal
/// (no confirmation): what a background mount hands its daemon on stdin.
pub fn secret_for_child(
    args: &PasswordArgs,
    env: &str,
    prompt_text: &str,
) -> anyhow::Result<Secret> {
    let secret = if let Some(cmd) = &args.password_command {
        from_command(cmd)?
    } else if let Some(value) = std::env::var_os(env) {
        Zeroizing::new(value.into_encoded_bytes())
    } else {
        prompt(prompt_text)?
    };
    if secret.is_empty() {
        bail!("the password is empty");
    }
    Ok(secret)
}

/// Gets a password from `file`, else from the environment variable `env`,
/// else from the terminal (twice when `confirm`). Refuses empty passwords.
pub fn read_password(
    file: Option<&Path>,
    command: Option<&str>,
    env: &str,
    prompt_text: &str,
    confirm: bool,
) -> anyhow::Result<Password> {
    let password = if let Some(file) = file {
        from_file(file)?
    } else if let Some(command) = command {
        from_command(command)?
    } else if let Some(value) = std::env::var_os(env) {
        Zeroizing::new(value.into_encoded_bytes())
    } else {
        let first = prompt(prompt_text)?;
        if confirm {
            let again = prompt("Repeat the password: ")?;
            if !Password::new(first.to_vec()).ct_eq(&Password::new(again.to_vec())) {
                bail!("the two passwords differ; nothing was changed");
            }
        }
        first
    };
    if password.is_empty() {
        bail!("the password is empty; nothing was changed");
    }
    Ok(Password::new(password.to_vec()))
}

/// The key store of the current cardfs home.
pub fn key_store() -> anyhow::Result<KeyStore> {
    Ok(KeyStore::new(&home_from_env()?))
}

/// Loads the key `name` from `$CARDFS_HOME/keys/` and unlocks it with the
/// password from `args` (or the environment, or a prompt).
pub fn unlock_key(name: &str, args: &PasswordArgs) -> anyhow::Result<UserKey> {
    let store = key_store()?;
    store.load(name).map_err(|e| key_error(e, name))?;
    let password = read_password(
        args.password_file.as_deref(),
        args.password_command.as_deref(),
        PASSWORD_ENV,
        &format!("Password for key {name}: "),
        false,
    )?;
    store
        .unlock(name, &password)
        .map_err(|e| key_error(e, name))
}

/// A missing key or a wrong password as its user error (exit 11, 10).
fn key_error(err: KeyStoreError, name: &str) -> anyhow::Error {
    match err {
        KeyStoreError::KeyNotFound(_) => UserError::MissingKey { key: name.into() }.into(),
        KeyStoreError::KeyFile {
            error: KeyFileError::WrongPassword | KeyFileError::EmptyPassword,
            ..
        } => UserError::WrongPassword { key: name.into() }.into(),
        other => other.into(),
    }
}
