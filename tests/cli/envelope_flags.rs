//! `cardfs encrypt`/`decrypt` with age's short flags (`-r`, `-a`, `-o`,
//! `-i`), and binary ciphertext refused on a terminal unless asked for.

use crate::support::user::{User, s, text};
use std::process::Command;

#[test]
fn age_short_flags_round_trip() {
    let a = User::new();
    a.setup("alice");
    let plain = a.file("plain.txt");
    std::fs::write(&plain, b"short flags, as in age\n").unwrap();
    let armored = a.file("msg.txt");
    a.ok(&["encrypt", "-r", "alice", "-a", "-o", s(&armored), s(&plain)]);
    assert!(text(std::fs::read(&armored).unwrap()).is_ascii());
    let out = a.file("back.txt");
    a.ok(&["decrypt", "-i", "alice", "-o", s(&out), s(&armored)]);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&plain).unwrap());
    // The long spellings of age work too; `-o -` is stdout.
    let binary = a.ok(&["encrypt", "--recipient", "alice", "-o", "-", s(&plain)]);
    let sealed = a.file("msg.bin");
    std::fs::write(&sealed, &binary).unwrap();
    let back = a.ok(&["decrypt", "--identity", "alice", "-o", "-", s(&sealed)]);
    assert_eq!(back, std::fs::read(&plain).unwrap());
}

/// Runs `cardfs ARGS` with its stdout (and stderr) on a pseudo-terminal;
/// returns (exit code, everything it printed).
fn on_terminal(user: &User, args: &[&str]) -> (i32, Vec<u8>) {
    let script = r#"
import os, pty, sys
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
out = b""
while True:
    try:
        chunk = os.read(fd, 65536)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
_, status = os.waitpid(pid, 0)
sys.stdout.buffer.write(os.waitstatus_to_exitcode(status).to_bytes(1, "big", signed=True) + out)
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_cardfs"))
        .args(args)
        .env("CARDFS_HOME", user.home())
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, printed) = out.stdout.split_first().expect("an exit code");
    (i32::from(*code as i8), printed.to_vec())
}

#[test]
fn binary_ciphertext_is_not_written_to_a_terminal() {
    let a = User::new();
    a.setup("alice");
    let plain = a.file("plain.txt");
    std::fs::write(&plain, b"for a terminal").unwrap();
    let (code, said) = on_terminal(&a, &["encrypt", "-r", "alice", s(&plain)]);
    let said = String::from_utf8_lossy(&said);
    assert_eq!(code, 2, "{said}");
    assert!(
        said.contains("refusing to write binary ciphertext to a terminal"),
        "{said}"
    );
    for fix in ["-o FILE", "-a", "-o -"] {
        assert!(said.contains(fix), "the error does not say {fix}: {said}");
    }
    // Armored text is fine on a terminal, and `-o -` insists.
    let (code, said) = on_terminal(&a, &["encrypt", "-r", "alice", "-a", s(&plain)]);
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&said));
    assert!(String::from_utf8_lossy(&said).contains("-----BEGIN"));
    let (code, said) = on_terminal(&a, &["encrypt", "-r", "alice", "-o", "-", s(&plain)]);
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&said));
    assert!(said.len() > 100);
}
