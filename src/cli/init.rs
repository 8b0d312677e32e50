//! `cardfs init STORE --key NAME`: creates an empty encrypted drive in a
//! store, owned by the key's card.

use super::open::{self, KeyArgs, StoreArgs};
use anyhow::Context;
use cardfs::drive::Drive;

/// Runs `cardfs init`.
pub fn run(
    location: &str,
    key: &KeyArgs,
    store_args: &StoreArgs,
    create_bucket: bool,
) -> anyhow::Result<()> {
    let me = open::unlock(key)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        if create_bucket {
            let bucket = open::create_bucket(location, store_args).await?;
            println!("bucket {bucket} is ready");
        }
        let store = open::open_store(location, store_args).await?;
        Drive::create_drive(store, &me.identity, &me.card.to_bytes())
            .await
            .map_err(|e| open::drive_error(e, location))
    })?;
    println!(
        "created an encrypted drive in {location}, owned by {} (card {})\nmount it with: cardfs mount {location} MOUNTPOINT",
        me.card.identity(),
        me.card.fingerprint()
    );
    Ok(())
}
