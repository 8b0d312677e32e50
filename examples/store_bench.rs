//! Throughput of the S3 store: one 256 MiB object and 1,000 objects of
//! 4 KiB, put then get. Run by `scripts/bench-store`, which starts the
//! server and runs boto3 against it for comparison.
//!
//! Usage: store_bench s3://BUCKET/PREFIX [--reps N] [--concurrency N]
//!        [--part-mib N] [--parts-in-flight N]
//! Connection settings come from the standard AWS chain (AWS_ENDPOINT_URL,
//! AWS_ACCESS_KEY_ID, ...). Prints one `name value unit` line per figure
//! (the median of the repetitions).

use bytes::Bytes;
use cardfs::store::{GetOptions, ObjectStore, OpenOptions, PutMode, S3Options, S3Store};
use std::sync::Arc;
use std::time::Instant;

#[path = "../tests/support/pattern.rs"]
mod pattern;

const LARGE: usize = 256 << 20;
const SMALL: usize = 4 << 10;
const COUNT: usize = 1000;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs `op(i)` for i in 0..COUNT with at most `concurrency` in flight.
async fn many<F, Fut>(concurrency: usize, op: F)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    for i in 0..COUNT {
        if set.len() >= concurrency {
            set.join_next().await.expect("task").expect("join");
        }
        set.spawn(op(i));
    }
    while let Some(r) = set.join_next().await {
        r.expect("join");
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .expect("usage: store_bench s3://BUCKET/PREFIX [--reps N]");
    let flag = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(|v| v.parse().expect("number"))
            .unwrap_or(default)
    };
    let reps = flag("--reps", 3);
    let concurrency = flag("--concurrency", 32);
    let bucket = url
        .trim_start_matches("s3://")
        .split('/')
        .next()
        .expect("bucket");
    S3Store::new(bucket, "", &S3Options::default())
        .await
        .expect("connect")
        .create_bucket()
        .await
        .expect("create bucket");
    let mut options = OpenOptions::default();
    options.s3.part_size = flag("--part-mib", options.s3.part_size >> 20) << 20;
    options.s3.concurrency = flag("--parts-in-flight", options.s3.concurrency);
    let store: Arc<dyn ObjectStore> = cardfs::store::open(url, &options)
        .await
        .expect("open store");
    store.check_conditional_writes().await.expect("probe");

    let large = Bytes::from(pattern::pattern(LARGE, 1));
    let small = Bytes::from(pattern::pattern(SMALL, 2));
    let mib = |bytes: usize, secs: f64| bytes as f64 / (1 << 20) as f64 / secs;
    let (mut put_l, mut get_l) = (Vec::new(), Vec::new());
    let (mut put_s, mut get_s, mut put_s1, mut get_s1) = (vec![], vec![], vec![], vec![]);
    for rep in 0..reps {
        let key = format!("large-{rep}");
        let t = Instant::now();
        store
            .put(&key, large.clone(), PutMode::Overwrite)
            .await
            .expect("put large");
        put_l.push(mib(LARGE, t.elapsed().as_secs_f64()));
        let t = Instant::now();
        let got = store
            .get(&key, GetOptions::default())
            .await
            .expect("get large");
        get_l.push(mib(LARGE, t.elapsed().as_secs_f64()));
        assert!(got.bytes == large, "large object read back differs");
        store.delete(&key).await.expect("delete");

        for (conc, put_v, get_v) in [
            (concurrency, &mut put_s, &mut get_s),
            (1, &mut put_s1, &mut get_s1),
        ] {
            let prefix = format!("small-{rep}-{conc}");
            let t = Instant::now();
            many(conc, |i| {
                let (s, body, key) = (store.clone(), small.clone(), format!("{prefix}/{i:04}"));
                async move {
                    s.put(&key, body, PutMode::Overwrite)
                        .await
                        .expect("put small");
                }
            })
            .await;
            put_v.push(COUNT as f64 / t.elapsed().as_secs_f64());
            let t = Instant::now();
            many(conc, |i| {
                let (s, key) = (store.clone(), format!("{prefix}/{i:04}"));
                async move {
                    let got = s.get(&key, GetOptions::default()).await.expect("get small");
                    assert_eq!(got.bytes.len(), SMALL);
                }
            })
            .await;
            get_v.push(COUNT as f64 / t.elapsed().as_secs_f64());
        }
    }
    println!("put_256MiB {:.1} MiB/s", median(put_l));
    println!("get_256MiB {:.1} MiB/s", median(get_l));
    println!("put_4KiB_x1000_concurrent {:.0} objects/s", median(put_s));
    println!("get_4KiB_x1000_concurrent {:.0} objects/s", median(get_s));
    println!("put_4KiB_x1000_sequential {:.0} objects/s", median(put_s1));
    println!("get_4KiB_x1000_sequential {:.0} objects/s", median(get_s1));
}
