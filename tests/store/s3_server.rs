//! The S3 server from `scripts/s3-server` answers real S3 requests through
//! aws-sdk-s3 with path-style addressing.

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;

fn client(env: &crate::support::S3Env) -> aws_sdk_s3::Client {
    let creds = Credentials::new(&env.access_key, &env.secret_key, None, None, "test");
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(cardfs::store::s3::https_client())
        .endpoint_url(&env.endpoint)
        .region(Region::new(env.region.clone()))
        .credentials_provider(creds)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

#[tokio::test]
async fn bucket_put_get_round_trip() {
    let env = crate::support::s3();
    let s3 = client(env);
    let bucket = crate::support::unique("foundation").to_lowercase();
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create bucket");
    let body = b"hello from cardfs".to_vec();
    s3.put_object()
        .bucket(&bucket)
        .key("dir/object")
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .expect("put object");
    let got = s3
        .get_object()
        .bucket(&bucket)
        .key("dir/object")
        .send()
        .await
        .expect("get object");
    let bytes = got.body.collect().await.expect("read body").into_bytes();
    assert_eq!(bytes.as_ref(), body.as_slice());

    let missing = s3.get_object().bucket(&bucket).key("nope").send().await;
    let err = missing.expect_err("missing key must fail");
    assert!(
        err.as_service_error().is_some_and(|e| e.is_no_such_key()),
        "expected NoSuchKey, got {err:?}"
    );
}

#[tokio::test]
async fn wrong_secret_is_rejected() {
    let env = crate::support::s3();
    let mut bad = env.clone();
    bad.secret_key = "not-the-secret".into();
    let s3 = client(&bad);
    let result = s3.list_buckets().send().await;
    assert!(result.is_err(), "server accepted a wrong secret");
}
