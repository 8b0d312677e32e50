//! The S3 store notices a server that accepts connections but does not
//! answer (stopped with SIGSTOP, overloaded, a dead proxy): small requests
//! fail as `Transient` within `3 * request_timeout`, and a response body
//! that stalls fails after `idle_timeout`, instead of hanging for the
//! 300 s attempt timeout that large transfers keep.

use cardfs::store::{GetOptions, ObjectStore, PutMode, S3Options, S3Store, StoreError};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A TCP server on loopback that answers every connection with `answer`
/// (possibly nothing) and then keeps it open without a further byte.
/// Connections are held until the server is dropped with the test.
struct Silent {
    port: u16,
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl Silent {
    fn start(answer: &'static [u8]) -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let held = Arc::new(Mutex::new(Vec::new()));
        let keep = held.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let keep = keep.clone();
                std::thread::spawn(move || {
                    // Read the request head before answering (or not).
                    let mut buf = [0u8; 4096];
                    let mut seen = Vec::new();
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = conn.write_all(answer);
                    let _ = conn.flush();
                    keep.lock().unwrap().push(conn);
                });
            }
        });
        Silent { port, held }
    }

    fn connections(&self) -> usize {
        self.held.lock().unwrap().len()
    }
}

async fn store_on(port: u16, request_timeout: Duration, idle_timeout: Duration) -> S3Store {
    let options = S3Options {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        region: Some("us-east-1".into()),
        credentials: Some(aws_sdk_s3::config::Credentials::new(
            "k", "s", None, None, "tests",
        )),
        request_timeout,
        idle_timeout,
        ..S3Options::default()
    };
    S3Store::new("bucket", "", &options).await.unwrap()
}

fn assert_transient<T: std::fmt::Debug>(what: &str, r: cardfs::store::Result<T>) {
    match r {
        Err(StoreError::Transient { .. }) => {}
        other => panic!("{what}: want a Transient error, got {other:?}"),
    }
}

#[tokio::test]
async fn small_requests_to_a_server_that_never_answers_fail_within_the_bound() {
    let server = Silent::start(b"");
    let timeout = Duration::from_secs(1);
    let store = store_on(server.port, timeout, Duration::from_secs(1)).await;
    // Three times the attempt limit in all, plus scheduling slack; the
    // attempt timeout for bulk transfers (300 s) must not apply.
    let bound = timeout * 3 + Duration::from_secs(3);
    let calls: Vec<(&str, _)> = vec![
        (
            "head",
            Box::pin(async { store.head("a").await.map(|_| ()) })
                as std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>,
        ),
        (
            "get",
            Box::pin(async { store.get("log/1", GetOptions::default()).await.map(|_| ()) }),
        ),
        (
            "list",
            Box::pin(async { store.list("", None, 10).await.map(|_| ()) }),
        ),
        (
            "small put",
            Box::pin(async {
                store
                    .put("e", bytes::Bytes::from_static(b"entry"), PutMode::Create)
                    .await
                    .map(|_| ())
            }),
        ),
        ("delete", Box::pin(async { store.delete("a").await })),
    ];
    for (what, call) in calls {
        let started = Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(60), call)
            .await
            .unwrap_or_else(|_| panic!("{what} still hanging after 60 s"));
        let took = started.elapsed();
        assert_transient(what, r);
        assert!(
            took <= bound,
            "{what} took {took:?}, more than {bound:?} against a silent server"
        );
    }
    assert!(
        server.connections() >= 5,
        "the requests did reach the server"
    );
}

#[tokio::test]
async fn a_body_that_stalls_fails_after_the_idle_timeout() {
    // Headers and 10 of 100,000 promised bytes, then silence.
    let server = Silent::start(
        b"HTTP/1.1 206 Partial Content\r\nContent-Length: 100000\r\n\
          Content-Range: bytes 0-99999/100000\r\nETag: \"e\"\r\n\r\n0123456789",
    );
    let idle = Duration::from_secs(1);
    let store = store_on(server.port, Duration::from_secs(5), idle).await;
    let started = Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(60),
        store.get("c/block", GetOptions::range(0..100_000)),
    )
    .await
    .expect("the get still hangs after 60 s");
    let took = started.elapsed();
    assert_transient("stalled get", r.map(|_| ()));
    assert!(
        took >= idle && took < idle + Duration::from_secs(5),
        "a stalled body failed after {took:?}; want about {idle:?}"
    );
}
