//! Helpers shared by the integration test binaries (`tests/store/`,
//! `drive/`, `mount/`, `cli/`, each including this module by path): a real
//! S3 server, unique names, store listings, deterministic bytes; `drive` holds the engine tests' helpers,
//! `mount` the harness for real mounts, `forge` the store's forgeries.
#![allow(dead_code)]

pub mod drive;
pub mod forge;
pub mod pattern;
pub mod user;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Connection details of a running S3-compatible server.
#[derive(Debug, Clone)]
pub struct S3Env {
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
}

impl S3Env {
    /// Options for cardfs's S3 store that reach this server with its
    /// credentials.
    pub fn store_options(&self) -> cardfs::store::S3Options {
        cardfs::store::S3Options {
            endpoint: Some(self.endpoint.clone()),
            region: Some(self.region.clone()),
            credentials: Some(aws_sdk_s3::config::Credentials::new(
                &self.access_key,
                &self.secret_key,
                None,
                None,
                "cardfs-tests",
            )),
            ..Default::default()
        }
    }
}

pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The S3 server for this test process. `scripts/test` starts one server
/// for the whole run and exports `CARDFS_TEST_S3_ENDPOINT`; otherwise each
/// test binary starts its own through `scripts/s3-server`, watched so that
/// it stops when this process exits, however it exits. Panics (so the test
/// fails, never skips) when no server can be had.
pub fn s3() -> &'static S3Env {
    static ENV: OnceLock<S3Env> = OnceLock::new();
    ENV.get_or_init(|| {
        if let Ok(endpoint) = std::env::var("CARDFS_TEST_S3_ENDPOINT") {
            return S3Env {
                endpoint,
                access_key: std::env::var("AWS_ACCESS_KEY_ID").expect("AWS_ACCESS_KEY_ID"),
                secret_key: std::env::var("AWS_SECRET_ACCESS_KEY").expect("AWS_SECRET_ACCESS_KEY"),
                region: std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()),
            };
        }
        start_server()
    })
}

fn start_server() -> S3Env {
    let script = project_root().join("scripts/s3-server");
    let out = Command::new(&script)
        .arg("start")
        .arg("--watch-pid")
        .arg(std::process::id().to_string())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "scripts/s3-server failed to start a server:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let var = |name: &str| -> String {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("export {name}=")))
            .unwrap_or_else(|| panic!("scripts/s3-server printed no {name}:\n{stdout}"))
            .to_string()
    };
    S3Env {
        endpoint: var("AWS_ENDPOINT_URL"),
        access_key: var("AWS_ACCESS_KEY_ID"),
        secret_key: var("AWS_SECRET_ACCESS_KEY"),
        region: var("AWS_REGION"),
    }
}

/// A name no other test (or test run on the same server) uses.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{nanos:x}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Path of the built `cardfs` binary.
pub fn cardfs_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_cardfs"))
}

/// A local-directory store opened directly, as its operator (or an
/// attacker with write access) would: to read, replace or delete objects
/// behind the clients' backs.
pub struct Operator {
    rt: tokio::runtime::Runtime,
    store: std::sync::Arc<dyn cardfs::store::ObjectStore>,
}

impl Operator {
    pub fn new(dir: &str) -> Operator {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let options = cardfs::store::OpenOptions::default();
        let store = rt.block_on(cardfs::store::open(dir, &options)).unwrap();
        Operator { rt, store }
    }

    pub fn get(&self, key: &str) -> Vec<u8> {
        let got = self.rt.block_on(self.store.get(key, Default::default()));
        got.unwrap().bytes.to_vec()
    }

    /// Writes `bytes` under `key`, replacing whatever is there.
    pub fn put(&self, key: &str, bytes: Vec<u8>) {
        let mode = cardfs::store::PutMode::Overwrite;
        self.rt
            .block_on(self.store.put(key, bytes.into(), mode))
            .unwrap();
    }

    pub fn delete(&self, key: &str) {
        self.rt.block_on(self.store.delete(key)).unwrap();
    }

    /// Keys of every object under `prefix`, in listing order.
    pub fn list(&self, prefix: &str) -> Vec<String> {
        self.rt.block_on(keys_under(self.store.as_ref(), prefix))
    }
}

/// Keys of every object under `prefix`, in listing order.
pub async fn keys_under(store: &dyn cardfs::store::ObjectStore, prefix: &str) -> Vec<String> {
    let all = store.list_all(prefix).await.expect("list");
    all.into_iter().map(|o| o.key).collect()
}

pub use pattern::pattern;

/// The name libtest gives test `test` of the module `module` (its
/// `module_path!()`), for a test that re-runs its own binary with
/// `--exact NAME`: the module path without the binary's crate name.
pub fn test_name(module: &str, test: &str) -> String {
    match module.split_once("::") {
        Some((_, inner)) => format!("{inner}::{test}"),
        None => test.to_string(),
    }
}

pub mod mount;
pub mod private_s3;
pub mod scenarios;
