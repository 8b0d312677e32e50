//! A fault-injecting wrapper around any [`ObjectStore`], for testing how
//! the engine survives a misbehaving store.
//!
//! Faults: fail chosen calls (the Nth), fail every Nth put, fail a
//! fraction of calls, go offline (every call fails), refuse puts to chosen
//! keys, add latency, cut uploads after K bytes, answer lists from an older
//! snapshot, ignore put conditions (like servers that drop
//! `If-None-Match`), and hold one GET open until the test releases it.
//! It also counts calls by kind, so a test can bound the requests an
//! operation makes.
//!
//! Invariants:
//! - Every decision comes from one seeded generator and one call counter,
//!   so a sequential run is reproduced exactly by the same seed (concurrent
//!   calls take numbers in the order they reach the wrapper).
//! - An injected failure happens before the call reaches the inner store:
//!   a failed put stored nothing. A cut multipart upload did send its first
//!   K bytes to the inner upload, which the caller must abort.
//! - With [`FaultConfig::default`] the wrapper changes nothing.
//! - Offline and refused keys are checked before the put counter of
//!   [`FaultConfig::fail_every_nth_put`] moves: only puts that would reach
//!   the store are numbered.

use super::{
    ETag, GetOptions, GetResult, ListPage, MultipartUpload, ObjectMeta, ObjectStore, PutMode,
    Result, StoreError, probe_conditional_writes,
};
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What to inject. The default injects nothing.
#[derive(Debug, Clone, Default)]
pub struct FaultConfig {
    /// Seed of every random decision.
    pub seed: u64,
    /// Fail these calls, counted from 1 over every store and upload call.
    pub fail_calls: Vec<u64>,
    /// Fail each call with this probability (0.0 to 1.0).
    pub fail_fraction: f64,
    /// Delay added before every call.
    pub latency: Duration,
    /// Extra random delay, uniform in `0..=latency_jitter`.
    pub latency_jitter: Duration,
    /// A put whose body, or a multipart upload whose parts, exceed this
    /// many bytes fails as if the connection dropped.
    pub cut_upload_after: Option<u64>,
    /// Probability that a list answers with the snapshot taken by the last
    /// fresh identical list (same prefix, start, limit), missing what
    /// changed since.
    pub stale_list_fraction: f64,
    /// Treat [`PutMode::Create`] and [`PutMode::Update`] as overwrites.
    pub ignore_conditions: bool,
    /// Every call fails as a transient network error (the store is out of
    /// reach), until this is cleared.
    pub offline: bool,
    /// Puts of keys matching any of these fail as transient errors; other
    /// calls and other keys work (e.g. one volume's log cannot be written
    /// while its content uploads succeed).
    pub refuse_puts: Vec<KeyMatch>,
    /// When non-zero, every Nth put that reaches the store (counted from 1)
    /// fails as a transient error.
    pub fail_every_nth_put: u64,
}

/// Which keys a fault applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMatch {
    /// Keys that start with this.
    Prefix(String),
    /// Keys that contain this anywhere.
    Contains(String),
}

impl KeyMatch {
    pub fn matches(&self, key: &str) -> bool {
        match self {
            KeyMatch::Prefix(p) => key.starts_with(p.as_str()),
            KeyMatch::Contains(p) => key.contains(p.as_str()),
        }
    }
}

/// Calls seen so far, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallCounts {
    /// Puts, multipart starts, parts and completions.
    pub writes: u64,
    /// Gets, heads and lists.
    pub reads: u64,
    /// Deletes (single and batched).
    pub deletes: u64,
}

type ListArgs = (String, Option<String>, usize);

#[derive(Debug)]
struct State {
    config: FaultConfig,
    rng: u64,
    calls: u64,
    counts: CallCounts,
    puts: u64,
    injected: u64,
    snapshots: HashMap<ListArgs, ListPage>,
    /// Prefix of the key whose next GET is held open, when armed.
    hold_get: Option<String>,
}

/// The rendezvous of a held GET: the store signals `held` once it holds
/// one, and waits for a permit on `release`.
#[derive(Debug)]
struct Hold {
    held: tokio::sync::Notify,
    release: tokio::sync::Semaphore,
}

/// What kind of call [`FaultStore::gate`] admits.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Write,
    Read,
    Delete,
}

impl State {
    /// splitmix64: small, fast, and the same on every platform.
    fn next(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }
}

/// Wraps a store and injects the faults of its [`FaultConfig`].
#[derive(Debug, Clone)]
pub struct FaultStore {
    inner: Arc<dyn ObjectStore>,
    state: Arc<Mutex<State>>,
    hold: Arc<Hold>,
}

impl FaultStore {
    pub fn new(inner: Arc<dyn ObjectStore>, config: FaultConfig) -> Self {
        let state = State {
            rng: config.seed,
            config,
            calls: 0,
            counts: CallCounts::default(),
            puts: 0,
            injected: 0,
            snapshots: HashMap::new(),
            hold_get: None,
        };
        Self {
            inner,
            state: Arc::new(Mutex::new(state)),
            hold: Arc::new(Hold {
                held: tokio::sync::Notify::new(),
                release: tokio::sync::Semaphore::new(0),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the faults (e.g. after setting a test up without faults);
    /// reseeds the generator, keeps the call counter and snapshots.
    pub fn set_config(&self, config: FaultConfig) {
        let mut state = self.lock();
        state.rng = config.seed;
        state.config = config;
    }

    /// Changes some faults in place (e.g. `|c| c.offline = true`); unlike
    /// [`FaultStore::set_config`] the generator goes on where it was.
    pub fn update_config(&self, change: impl FnOnce(&mut FaultConfig)) {
        change(&mut self.lock().config);
    }

    /// Takes the store out of reach (every call fails) or back.
    pub fn set_offline(&self, offline: bool) {
        self.update_config(|c| c.offline = offline);
    }

    /// Calls seen so far (store and upload calls).
    pub fn calls(&self) -> u64 {
        self.lock().calls
    }

    /// Calls seen so far, by kind (failed ones included).
    pub fn counts(&self) -> CallCounts {
        self.lock().counts
    }

    /// Arms a hold: the next GET of a key starting with `prefix` fetches
    /// its answer, then signals [`FaultStore::wait_held`] and waits for
    /// [`FaultStore::release_held`] before returning it (a fetch held open
    /// while the test does something else).
    pub fn hold_next_get(&self, prefix: &str) {
        self.lock().hold_get = Some(prefix.to_string());
    }

    /// Waits until a GET armed by [`FaultStore::hold_next_get`] is held.
    pub async fn wait_held(&self) {
        self.hold.held.notified().await;
    }

    /// Lets a held GET return.
    pub fn release_held(&self) {
        self.hold.release.add_permits(1);
    }

    /// Failures injected so far.
    pub fn injected(&self) -> u64 {
        self.lock().injected
    }

    fn cut_limit(&self) -> Option<u64> {
        self.lock().config.cut_upload_after
    }

    /// Counts one call, waits the injected latency, and fails it when the
    /// configuration says so.
    async fn gate(&self, kind: Kind, what: &str) -> Result<()> {
        let (fail, delay, n) = {
            let mut s = self.lock();
            s.calls += 1;
            match kind {
                Kind::Write => s.counts.writes += 1,
                Kind::Read => s.counts.reads += 1,
                Kind::Delete => s.counts.deletes += 1,
            }
            let n = s.calls;
            if s.config.offline {
                s.injected += 1;
                return Err(StoreError::Transient {
                    message: format!("injected fault in call {n} ({what}): store offline"),
                    retry_after: None,
                });
            }
            let jitter = s.config.latency_jitter;
            let extra = if jitter.is_zero() {
                Duration::ZERO
            } else {
                jitter.mul_f64(s.unit())
            };
            let delay = s.config.latency + extra;
            let fraction = s.config.fail_fraction;
            // `|`, not `||`: the generator advances on every call, so one
            // fault setting does not shift the draws of the others.
            let fail = s.config.fail_calls.contains(&n) | s.chance(fraction);
            if fail {
                s.injected += 1;
            }
            (fail, delay, n)
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if fail {
            return Err(StoreError::Transient {
                message: format!("injected fault in call {n} ({what})"),
                retry_after: None,
            });
        }
        Ok(())
    }
}

fn cut(limit: u64) -> StoreError {
    StoreError::Transient {
        message: format!("injected fault: upload cut after {limit} bytes"),
        retry_after: None,
    }
}

#[async_trait]
impl ObjectStore for FaultStore {
    async fn put(&self, key: &str, body: Bytes, mode: PutMode) -> Result<ETag> {
        self.gate(Kind::Write, "put").await?;
        {
            let mut s = self.lock();
            if s.config.refuse_puts.iter().any(|m| m.matches(key)) {
                s.injected += 1;
                return Err(StoreError::Transient {
                    message: format!("injected fault: puts to {key} refused"),
                    retry_after: None,
                });
            }
            s.puts += 1;
            let every = s.config.fail_every_nth_put;
            if every > 0 && s.puts.is_multiple_of(every) {
                s.injected += 1;
                return Err(StoreError::Transient {
                    message: format!("injected fault in put {} (every {every}th)", s.puts),
                    retry_after: None,
                });
            }
        }
        if let Some(limit) = self.cut_limit()
            && body.len() as u64 > limit
        {
            self.lock().injected += 1;
            return Err(cut(limit));
        }
        let mode = if self.lock().config.ignore_conditions {
            PutMode::Overwrite
        } else {
            mode
        };
        self.inner.put(key, body, mode).await
    }

    async fn get(&self, key: &str, options: GetOptions) -> Result<GetResult> {
        self.gate(Kind::Read, "get").await?;
        let got = self.inner.get(key, options).await;
        let hold = {
            let mut s = self.lock();
            let armed = s.hold_get.as_deref().is_some_and(|p| key.starts_with(p));
            if armed {
                s.hold_get = None;
            }
            armed
        };
        if hold {
            self.hold.held.notify_one();
            // The semaphore is never closed, so acquiring cannot fail.
            if let Ok(permit) = self.hold.release.acquire().await {
                permit.forget();
            }
        }
        got
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        self.gate(Kind::Read, "head").await?;
        self.inner.head(key).await
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage> {
        self.gate(Kind::Read, "list").await?;
        let args = (prefix.to_string(), start_after.map(str::to_string), limit);
        {
            let mut s = self.lock();
            let fraction = s.config.stale_list_fraction;
            if s.snapshots.contains_key(&args) && s.chance(fraction) {
                return Ok(s.snapshots[&args].clone());
            }
        }
        let page = self.inner.list(prefix, start_after, limit).await?;
        self.lock().snapshots.insert(args, page.clone());
        Ok(page)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.gate(Kind::Delete, "delete").await?;
        self.inner.delete(key).await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        self.gate(Kind::Delete, "delete_many").await?;
        self.inner.delete_many(keys).await
    }

    async fn put_multipart(&self, key: &str) -> Result<Box<dyn MultipartUpload>> {
        self.gate(Kind::Write, "put_multipart").await?;
        let inner = self.inner.put_multipart(key).await?;
        Ok(Box::new(FaultUpload {
            store: self.clone(),
            inner,
            sent: 0,
            cut: false,
        }))
    }

    async fn check_conditional_writes(&self) -> Result<()> {
        probe_conditional_writes(self).await
    }

    async fn pending_uploads(&self) -> Result<Vec<String>> {
        self.inner.pending_uploads().await
    }

    fn describe(&self) -> String {
        format!("fault({})", self.inner.describe())
    }
}

struct FaultUpload {
    store: FaultStore,
    inner: Box<dyn MultipartUpload>,
    sent: u64,
    cut: bool,
}

#[async_trait]
impl MultipartUpload for FaultUpload {
    async fn put_part(&mut self, data: Bytes) -> Result<()> {
        self.store.gate(Kind::Write, "put_part").await?;
        if let Some(limit) = self.store.cut_limit() {
            if self.cut {
                return Err(cut(limit));
            }
            let len = data.len() as u64;
            if self.sent + len > limit {
                // The connection drops part-way: the first bytes got through.
                let through = (limit - self.sent) as usize;
                self.inner.put_part(data.slice(..through)).await?;
                self.sent = limit;
                self.cut = true;
                self.store.lock().injected += 1;
                return Err(cut(limit));
            }
        }
        self.sent += data.len() as u64;
        self.inner.put_part(data).await
    }

    async fn complete(self: Box<Self>) -> Result<ETag> {
        self.store.gate(Kind::Write, "complete").await?;
        if self.cut {
            let _ = self.inner.abort().await;
            return Err(StoreError::Other {
                message: "cannot complete an upload that was cut".into(),
            });
        }
        self.inner.complete().await
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        // Aborting is cleanup: never fail it, so tests see what it leaves.
        self.inner.abort().await
    }
}
