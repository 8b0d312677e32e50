//! An S3 server of a test's own (`scripts/s3-server` on a directory of the
//! test's), to stop and start again on the same data and port, e.g. to
//! take the store out of reach and bring it back. Stopped on drop, also
//! when the test fails.

use super::mount::{Home, assert_ok, new_bucket, s3_vars};
use super::{S3Env, project_root};
use std::path::PathBuf;
use std::process::Command;

/// A server of our own, to stop and start; stopped on drop.
pub struct PrivateServer {
    pub dir: PathBuf,
    pub port: u16,
    pub env: S3Env,
}

/// The value of `export NAME=...` in `scripts/s3-server start`'s output.
pub fn exported(stdout: &str, name: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("export {name}=")))
        .unwrap_or_else(|| panic!("no {name} in {stdout}"))
        .to_string()
}

/// The server `scripts/s3-server start` says it started.
pub fn exported_env(stdout: &str) -> S3Env {
    S3Env {
        endpoint: exported(stdout, "AWS_ENDPOINT_URL"),
        access_key: exported(stdout, "AWS_ACCESS_KEY_ID"),
        secret_key: exported(stdout, "AWS_SECRET_ACCESS_KEY"),
        region: exported(stdout, "AWS_REGION"),
    }
}

impl PrivateServer {
    /// Starts a server on `dir` (on `port`, or a free one).
    pub fn start(dir: PathBuf, port: Option<u16>) -> PrivateServer {
        let mut cmd = Command::new(project_root().join("scripts/s3-server"));
        cmd.arg("start").arg("--dir").arg(&dir);
        if let Some(port) = port {
            cmd.arg("--port").arg(port.to_string());
        }
        // No --watch-pid: its watchdog deletes the data directory when the
        // server stops, and this server must restart on the same data.
        // Drop stops it, also when the test fails.
        let mut out = cmd.output().unwrap();
        // The script picks free ports, then binds them: a server starting
        // at the same moment (tests run side by side) can take one in
        // between ("Port allocation failed"). Try again, a few times.
        for _ in 0..3 {
            if out.status.success()
                || !String::from_utf8_lossy(&out.stderr).contains("Port allocation failed")
            {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
            out = cmd.output().unwrap();
        }
        assert_ok(&out, "scripts/s3-server start");
        let env = exported_env(&String::from_utf8_lossy(&out.stdout));
        let port = env.endpoint.rsplit(':').next().unwrap().parse().unwrap();
        PrivateServer { dir, port, env }
    }

    /// A new user of this server with a new bucket holding a new drive.
    pub fn drive(&self) -> (Home, String) {
        let mut home = Home::new();
        home.env = s3_vars(&self.env);
        let store = new_bucket(&self.env);
        home.init(&store);
        (home, store)
    }

    /// Stops it (it can be started again on the same data and port).
    pub fn stop(&self) {
        let out = Command::new(project_root().join("scripts/s3-server"))
            .arg("stop")
            .arg("--dir")
            .arg(&self.dir)
            .output()
            .unwrap();
        assert_ok(&out, "scripts/s3-server stop");
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let _ = Command::new(project_root().join("scripts/s3-server"))
            .arg("stop")
            .arg("--dir")
            .arg(&self.dir)
            .output();
    }
}
