//! A filesystem from the crate's `fuse` module mounts through the kernel,
//! serves reads, and unmounts, also when the test fails midway (the
//! background session unmounts on drop, including during unwinding).

use cardfs::fuse::StaticFs;
use fuser::{Config, MountOption};
use std::process::Command;

fn is_mounted(path: &std::path::Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let path = path.canonicalize().unwrap();
    mounts
        .lines()
        .any(|l| l.split(' ').nth(1) == Some(path.to_str().unwrap()))
}

#[test]
fn static_fs_mounts_reads_and_unmounts() {
    let dir = tempfile::tempdir().unwrap();
    let content: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let fs = StaticFs::new(vec![
        ("hello.txt".into(), b"hello through the kernel\n".to_vec()),
        ("big.bin".into(), content.clone()),
    ]);
    let mut config = Config::default();
    config
        .mount_options
        .extend([MountOption::RO, MountOption::FSName("cardfs-test".into())]);
    let session = fuser::spawn_mount(fs, dir.path(), &config).expect("mount");
    assert!(is_mounted(dir.path()));

    let hello = std::fs::read_to_string(dir.path().join("hello.txt")).unwrap();
    assert_eq!(hello, "hello through the kernel\n");
    assert_eq!(std::fs::read(dir.path().join("big.bin")).unwrap(), content);
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["big.bin", "hello.txt"]);
    let err = std::fs::read(dir.path().join("missing")).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    let err = std::fs::write(dir.path().join("new"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));

    session.umount_and_join().expect("unmount");
    assert!(!is_mounted(dir.path()));
}

#[test]
fn doctor_command_mounts_a_probe() {
    let out = Command::new(env!("CARGO_BIN_EXE_cardfs"))
        .arg("doctor")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cardfs doctor failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("FUSE works"));
}
