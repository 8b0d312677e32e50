//! A CLI user for integration tests: the `cardfs` binary run with its own
//! `CARDFS_HOME` (a temporary directory), so several users share a machine.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub struct User {
    home: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl User {
    pub fn new() -> Self {
        Self {
            home: tempfile::tempdir().unwrap(),
            env: Vec::new(),
        }
    }

    /// Sets an environment variable for every command this user runs.
    pub fn set_env(&mut self, name: &str, value: &str) {
        self.env.push((name.to_string(), value.to_string()));
    }

    pub fn home(&self) -> &Path {
        self.home.path()
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.home.path().join(name)
    }

    pub fn cmd(&self, args: &[&str], password: Option<&str>, stdin: &[u8]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cardfs"));
        cmd.args(args)
            .env("CARDFS_HOME", self.home())
            .env_remove("CARDFS_PASSWORD")
            .env_remove("CARDFS_NEW_PASSWORD")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in &self.env {
            cmd.env(name, value);
        }
        if let Some(pw) = password {
            cmd.env("CARDFS_PASSWORD", pw);
        }
        let mut child = cmd.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        // The command may exit without reading stdin; ignore broken pipes.
        let _ = input.write_all(stdin);
        drop(input);
        child.wait_with_output().unwrap()
    }

    /// Runs a command that must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> Vec<u8> {
        let out = self.cmd(args, Some("pw"), b"");
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Runs a command that must fail; returns stderr.
    pub fn fails(&self, args: &[&str], stdin: &[u8]) -> String {
        let out = self.cmd(args, Some("pw"), stdin);
        assert!(!out.status.success(), "{args:?} unexpectedly succeeded");
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(err.trim().lines().count(), 1, "one clear sentence: {err}");
        err
    }

    /// Generates key NAME and card NAME; returns the card's text file.
    pub fn setup(&self, name: &str) -> PathBuf {
        self.ok(&["key", "generate", "--name", name, "--insecure-test-kdf"]);
        let card = self.ok(&["card", "create", "--key", name, "--identity", name]);
        let path = self.file(&format!("{name}.card"));
        std::fs::write(&path, card).unwrap();
        path
    }

    /// The fingerprint of the card pinned for `identity`, from `card show`.
    pub fn fingerprint(&self, identity: &str) -> String {
        text(self.ok(&["card", "show", identity]))
            .lines()
            .find_map(|l| l.strip_prefix("fingerprint  "))
            .unwrap()
            .to_string()
    }

    /// Creates authority NAME (key and card) for this user; writes its
    /// card into `holder`'s home and returns that path.
    pub fn create_authority(&self, name: &str, holder: &User) -> PathBuf {
        let card = self.ok(&["authority", "create", "--name", name, "--insecure-test-kdf"]);
        let path = holder.file(&format!("{name}.card"));
        std::fs::write(&path, card).unwrap();
        path
    }
}

pub fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap()
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}
