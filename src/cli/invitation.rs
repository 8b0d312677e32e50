//! Invitations: the one line `cardfs share add` prints for the new member,
//! and `cardfs join INVITATION MOUNTPOINT`, which mounts the shared drive
//! with the owner's fingerprint from it.
//!
//! An invitation is `cardfs-invite:` and the base64url of a JSON object:
//! `v` (1), `store` (the drive's store as the owner mounted it), `folder`
//! (the shared folder's path in the drive), `owner` (the owner's identity)
//! and `owner_fingerprint`. Invariant: it carries nothing secret and is
//! trusted for nothing by itself: `join` shows the fingerprint to compare
//! with the owner, and the mount pins the owner's card only if the drive's
//! header holds a card with exactly that fingerprint (exit 41 otherwise),
//! as `mount --owner-fingerprint` does.

use super::exit::UsageError;
use super::mount::MountArgs;
use super::open::{KeyArgs, StoreArgs};
use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

const PREFIX: &str = "cardfs-invite:";
const VERSION: u32 = 1;

/// What an invitation says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    pub v: u32,
    pub store: String,
    pub folder: String,
    pub owner: String,
    pub owner_fingerprint: String,
}

impl Invitation {
    pub fn new(store: &str, folder: &str, owner: &str, owner_fingerprint: &str) -> Self {
        Invitation {
            v: VERSION,
            store: store.into(),
            folder: folder.into(),
            owner: owner.into(),
            owner_fingerprint: owner_fingerprint.into(),
        }
    }

    /// The invitation as one line of text.
    pub fn to_line(&self) -> String {
        let json = serde_json::to_vec(self).expect("an invitation always serializes");
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(json))
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let bad = || {
            UsageError(format!(
                "{text:?} is not a cardfs invitation (one line starting with {PREFIX}, as \
                 `cardfs share add` prints it)"
            ))
        };
        let b64 = text.trim().strip_prefix(PREFIX).ok_or_else(bad)?;
        let json = URL_SAFE_NO_PAD.decode(b64).map_err(|_| bad())?;
        let invitation: Invitation = serde_json::from_slice(&json).map_err(|_| bad())?;
        anyhow::ensure!(
            invitation.v == VERSION,
            "this invitation was made by a newer cardfs (invitation version {}); upgrade cardfs",
            invitation.v
        );
        Ok(invitation)
    }
}

/// `cardfs join INVITATION MOUNTPOINT`.
#[derive(Debug, clap::Args)]
pub struct JoinArgs {
    /// The line `cardfs share add` printed for you.
    invitation: String,
    /// An existing, empty directory to mount the drive on.
    mountpoint: PathBuf,
    #[command(flatten)]
    key: KeyArgs,
    #[command(flatten)]
    store_args: StoreArgs,
}

pub fn join(args: JoinArgs) -> anyhow::Result<()> {
    let inv = Invitation::parse(&args.invitation)?;
    eprintln!(
        "Invitation from {} to the folder {:?} of the drive in {}.\n\
         Compare the owner's fingerprint with {} over a channel you trust:\n  {}",
        inv.owner, inv.folder, inv.store, inv.owner, inv.owner_fingerprint
    );
    let mount = MountArgs::for_join(
        &inv.store,
        &args.mountpoint,
        args.key,
        args.store_args,
        &inv.owner_fingerprint,
    );
    super::mount::run(mount).context("joining the shared drive")?;
    let at = args.mountpoint.join(&inv.folder);
    println!(
        "the folder {} shares with you is {}",
        inv.owner,
        at.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invitations_round_trip_and_refuse_other_text() {
        let inv = Invitation::new("s3://team/drive", "projects/q1", "alice@x", "AB12 CD34");
        let line = inv.to_line();
        assert!(line.starts_with(PREFIX) && !line.contains(char::is_whitespace));
        assert_eq!(Invitation::parse(&format!("  {line}\n")).unwrap(), inv);
        for bad in ["", "cardfs-invite:", "cardfs-invite:!!", "cardfs-card:AAAA"] {
            assert!(Invitation::parse(bad).is_err(), "{bad}");
        }
        let newer = Invitation { v: 2, ..inv };
        let err = Invitation::parse(&newer.to_line()).unwrap_err();
        assert!(err.to_string().contains("newer cardfs"), "{err}");
    }
}
