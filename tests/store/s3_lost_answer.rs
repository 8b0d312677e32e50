//! A conditional put whose answer is lost (the connection drops after the
//! server wrote the object) is retried by the SDK, and the retry meets the
//! object its own first attempt wrote: the S3 store must report the put as
//! done, not refused. A real refusal stays a refusal. Run against the server
//! from `crate::support::s3()` through a proxy that loses one answer.

use bytes::Bytes;
use cardfs::store::{GetOptions, ObjectStore, PutMode, S3Store, StoreError};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// A loopback TCP proxy to the test S3 server. While armed, the first PUT
/// that opens a connection is forwarded whole, the server's answer is read
/// and thrown away, and the connection is closed; every other connection is
/// piped through untouched.
struct LosesAnAnswer {
    port: u16,
    armed: Arc<AtomicBool>,
    lost: Arc<AtomicUsize>,
}

impl LosesAnAnswer {
    fn start(upstream: String) -> LosesAnAnswer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let armed = Arc::new(AtomicBool::new(true));
        let lost = Arc::new(AtomicUsize::new(0));
        let (a, l) = (armed.clone(), lost.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (a, l, up) = (a.clone(), l.clone(), upstream.clone());
                std::thread::spawn(move || relay(conn, &up, &a, &l));
            }
        });
        LosesAnAnswer { port, armed, lost }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    fn lost(&self) -> usize {
        self.lost.load(Ordering::SeqCst)
    }
}

/// Reads from `conn` until a blank line ends an HTTP head; returns the bytes
/// read (the head and whatever followed it) and the head's length.
fn read_head(conn: &mut TcpStream) -> Option<(Vec<u8>, usize)> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if let Some(at) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some((seen, at + 4));
        }
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

fn content_length(head: &[u8]) -> usize {
    String::from_utf8_lossy(head)
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0)
}

fn relay(mut client: TcpStream, upstream: &str, armed: &AtomicBool, lost: &AtomicUsize) {
    let addr = upstream.trim_start_matches("http://");
    let mut server = TcpStream::connect(addr).expect("connect to the test S3 server");
    let Some((mut request, head_len)) = read_head(&mut client) else {
        return;
    };
    let is_put = request.starts_with(b"PUT ");
    if is_put && armed.swap(false, Ordering::SeqCst) {
        let whole = head_len + content_length(&request[..head_len]);
        let mut buf = [0u8; 8192];
        while request.len() < whole {
            match client.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        server.write_all(&request).unwrap();
        // The server has written the object once its answer starts.
        if read_head(&mut server).is_some() {
            lost.fetch_add(1, Ordering::SeqCst);
        }
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    server.write_all(&request).unwrap();
    let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut s2, &mut c2);
        let _ = c2.shutdown(Shutdown::Both);
    });
    let _ = std::io::copy(&mut client, &mut server);
    let _ = server.shutdown(Shutdown::Both);
}

/// A store on `bucket`/`prefix` reached through `proxy`, with a connection
/// pool of its own (so its first request opens a new connection).
async fn through(proxy: &LosesAnAnswer, bucket: &str, prefix: &str) -> S3Store {
    let mut options = crate::support::s3().store_options();
    options.endpoint = Some(proxy.endpoint());
    S3Store::new(bucket, prefix, &options).await.unwrap()
}

async fn read(store: &S3Store, key: &str) -> (Bytes, cardfs::store::ETag) {
    let got = store.get(key, GetOptions::default()).await.unwrap();
    (got.bytes, got.meta.etag)
}

#[tokio::test]
async fn a_conditional_put_whose_answer_was_lost_is_done_not_refused() {
    let bucket = crate::support::unique("lost-answer").to_lowercase();
    let direct = S3Store::new(&bucket, "p", &crate::support::s3().store_options())
        .await
        .unwrap();
    direct.create_bucket().await.unwrap();
    let proxy = LosesAnAnswer::start(crate::support::s3().endpoint.clone());

    // Create: the first attempt lands, its answer is lost, the retry is
    // refused by the object it wrote.
    let store = through(&proxy, &bucket, "p").await;
    let first = store
        .put("k", Bytes::from_static(b"one"), PutMode::Create)
        .await
        .expect("a create whose answer was lost succeeded");
    assert_eq!(proxy.lost(), 1, "the proxy lost the first answer");
    assert_eq!(
        read(&direct, "k").await,
        (Bytes::from_static(b"one"), first.clone())
    );

    // Update (compare and swap), the same way.
    proxy.arm();
    let store = through(&proxy, &bucket, "p").await;
    let second = store
        .put(
            "k",
            Bytes::from_static(b"two"),
            PutMode::Update(first.clone()),
        )
        .await
        .expect("an update whose answer was lost succeeded");
    assert_eq!(proxy.lost(), 2, "the proxy lost the second answer");
    assert_eq!(
        read(&direct, "k").await,
        (Bytes::from_static(b"two"), second)
    );

    // Real refusals stay refusals, whether or not the answer is lost.
    for lose in [false, true] {
        if lose {
            proxy.arm();
        }
        let store = through(&proxy, &bucket, "p").await;
        let err = store
            .put("k", Bytes::from_static(b"three"), PutMode::Create)
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::PreconditionFailed { .. }),
            "{err:?}"
        );
        let err = store
            .put(
                "k",
                Bytes::from_static(b"three"),
                PutMode::Update(first.clone()),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::PreconditionFailed { .. }),
            "{err:?}"
        );
    }
    assert_eq!(proxy.lost(), 3, "the proxy lost a refusal's answer");
    assert_eq!(read(&direct, "k").await.0, Bytes::from_static(b"two"));
}
