//! `cardfs status`, `cardfs sync` and `cardfs unmount`: clients of a mount
//! daemon's control socket.

use super::control::{self, Request};
use super::exit::UserError;
use super::mount_record::{self, Liveness};
use super::mountpoint;
use super::progress::Progress;
use std::path::Path;
use std::time::Duration;

/// `cardfs unmount MOUNTPOINT`: commit everything, then unmount.
///
/// The daemon is found from the mount itself: through this home's control
/// socket, else through the record the daemon left for other homes. A
/// mount is detached without its daemon only when the kernel says that
/// daemon is gone (its journal in the cache directory makes the next mount
/// finish the work); a live daemon that cannot be reached is refused.
pub fn unmount(path: &Path) -> anyhow::Result<()> {
    let mnt = mountpoint::absolute(path)?;
    let connected = match control::connect_any_home(&mnt) {
        Ok(found) => Some(found),
        Err(err) if is_not_mounted(&err) => None,
        Err(err) => return Err(err),
    };
    if let Some((stream, record)) = connected {
        let progress = Progress::new("committing");
        let result = control::call_on(stream, Request::Unmount, &mut |d, t| progress.update(d, t));
        progress.finish();
        result?;
        match record {
            Some(r) => println!(
                "unmounted {} (mounted by {}); every change is in the store",
                mnt.display(),
                r.describe()
            ),
            None => println!("unmounted {}; every change is in the store", mnt.display()),
        }
        return Ok(());
    }
    let not_mounted = || UserError::NotMounted { path: mnt.clone() };
    match mountpoint::mount_at(&mnt)? {
        Some(entry) if entry.fstype == "fuse.cardfs" => {}
        _ => return Err(not_mounted().into()),
    }
    let record = mount_record::read(&mnt);
    match mount_record::probe(&mnt, Duration::from_secs(5)) {
        Liveness::Dead => {}
        live => {
            let who = match (&record, live) {
                (Some(r), Liveness::Hangs) => format!("{}, not answering", r.describe()),
                (Some(r), _) => r.describe(),
                (None, Liveness::Hangs) => "its daemon does not answer".to_string(),
                (None, _) => format!(
                    "its control socket is not in this CARDFS_HOME ({})",
                    control::run_dir()?.display()
                ),
            };
            return Err(UserError::MountedElsewhere { path: mnt, who }.into());
        }
    }
    mountpoint::unmount(&mnt, false).map_err(|e| {
        if e.raw_os_error() == Some(libc::EBUSY) {
            anyhow::Error::new(UserError::MountBusy { path: mnt.clone() })
        } else {
            anyhow::Error::new(e)
        }
    })?;
    mount_record::remove(&mnt);
    println!(
        "unmounted {} (its daemon was gone); the next mount of this cache \
         directory uploads whatever was not committed",
        mnt.display()
    );
    Ok(())
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
    let (stream, _) = control::connect_any_home(&mnt)?;
    let progress = Progress::new("syncing");
    let result = control::call_on(stream, Request::Sync, &mut |d, t| progress.update(d, t));
    progress.finish();
    result?;
    println!("{}: every change is in the store", mnt.display());
    Ok(())
}

/// `cardfs status [MOUNTPOINT]`: one mount, or every mount of this user.
pub fn status(path: Option<&Path>) -> anyhow::Result<()> {
    if let Some(path) = path {
        let mnt = mountpoint::absolute(path)?;
        let (stream, _) = control::connect_any_home(&mnt)?;
        let fields = control::call_on(stream, Request::Status, &mut |_, _| {})?;
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
