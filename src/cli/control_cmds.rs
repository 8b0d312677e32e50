//! `cardfs status`, `cardfs sync` and `cardfs unmount`: clients of a mount
//! daemon's control socket.

use super::control::{self, Request};
use super::exit::UserError;
use super::mountpoint;
use super::progress::Progress;
use std::path::Path;

/// `cardfs unmount MOUNTPOINT`: commit everything, then unmount. A mount
/// whose daemon is gone (killed) is unmounted directly: its journal in the
/// cache directory makes the next mount finish the work.
pub fn unmount(path: &Path) -> anyhow::Result<()> {
    let mnt = mountpoint::absolute(path)?;
    let progress = Progress::new("committing");
    let result = control::call(&mnt, Request::Unmount, |d, t| progress.update(d, t));
    progress.finish();
    match result {
        Ok(_) => {
            println!("unmounted {}; every change is in the store", mnt.display());
            Ok(())
        }
        Err(err) if is_not_mounted(&err) => match mountpoint::mount_at(&mnt)? {
            Some(entry) if entry.fstype == "fuse.cardfs" => {
                mountpoint::unmount(&mnt, false).map_err(|e| {
                    if e.raw_os_error() == Some(libc::EBUSY) {
                        anyhow::Error::new(UserError::MountBusy { path: mnt.clone() })
                    } else {
                        anyhow::Error::new(e)
                    }
                })?;
                println!(
                    "unmounted {} (its daemon was gone); the next mount of this cache \
                     directory uploads whatever was not committed",
                    mnt.display()
                );
                Ok(())
            }
            _ => Err(err),
        },
        Err(err) => Err(err),
    }
}

fn is_not_mounted(err: &anyhow::Error) -> bool {
    matches!(
        err.downcast_ref::<UserError>(),
        Some(UserError::NotMounted { .. })
    )
}

/// `cardfs sync MOUNTPOINT`: push everything now and wait.
pub fn sync(path: &Path) -> anyhow::Result<()> {
    let mnt = mountpoint::absolute(path)?;
    let progress = Progress::new("syncing");
    let result = control::call(&mnt, Request::Sync, |d, t| progress.update(d, t));
    progress.finish();
    result?;
    println!("{}: every change is in the store", mnt.display());
    Ok(())
}

/// `cardfs status [MOUNTPOINT]`: one mount, or every mount of this user.
pub fn status(path: Option<&Path>) -> anyhow::Result<()> {
    if let Some(path) = path {
        let mnt = mountpoint::absolute(path)?;
        let fields = control::call(&mnt, Request::Status, |_, _| {})?;
        print_status(&fields);
        return Ok(());
    }
    let mut shown = 0;
    for socket in control::all_sockets()? {
        let Ok(stream) = std::os::unix::net::UnixStream::connect(&socket) else {
            // Nobody listens: a daemon that was killed left it behind.
            let _ = std::fs::remove_file(&socket);
            continue;
        };
        match control::call_on(stream, Request::Status, &mut |_, _| {}) {
            Ok(fields) => {
                if shown > 0 {
                    println!();
                }
                print_status(&fields);
                shown += 1;
            }
            Err(e) => eprintln!("cardfs: {}: {e:#}", socket.display()),
        }
    }
    if shown == 0 {
        println!("no cardfs drive is mounted");
    }
    Ok(())
}

fn print_status(fields: &[(String, String)]) {
    for (name, value) in fields {
        if name == "mountpoint" {
            println!("{value}");
        } else {
            println!("  {}: {value}", name.replace('_', " "));
        }
    }
}
