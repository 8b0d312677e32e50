//! `cardfs card publish|find|get`: the card directory inside a store, and
//! the trust decision for cards found there (see
//! `cardfs::identity::{directory, trust}`).

use super::card_files::{card_store, read_card_file};
use super::password::key_store;
use anyhow::{Context, bail};
use cardfs::format::card::{Card, CardId};
use cardfs::identity::cards::CardStore;
use cardfs::identity::directory::{self, Published};
use cardfs::identity::trust::{self, Accepted, Status};
use cardfs::store::{ObjectStore, OpenOptions, S3Options};
use std::path::Path;
use std::sync::Arc;

/// The store holding the card directory.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// A directory, file:///PATH or s3://BUCKET[/PREFIX].
    #[arg(long, value_name = "STORE")]
    pub store: String,
    /// S3 endpoint URL (default: AWS_ENDPOINT_URL, else AWS).
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// Publish the card of this key (your own card).
    #[arg(long, value_name = "NAME", conflicts_with = "card")]
    key: Option<String>,
    /// A pinned card (identity or card id) or a card FILE.
    #[arg(required_unless_present = "key")]
    card: Option<String>,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Debug, clap::Args)]
pub struct FindArgs {
    identity: String,
    #[command(flatten)]
    store: StoreArgs,
    /// The fingerprint you compared with the card's owner.
    #[arg(long, value_name = "FP")]
    fingerprint: Option<String>,
    /// Pin the card: the one matching --fingerprint, or the one that is
    /// already pinned or approved by an authority you trust.
    #[arg(long)]
    pin: bool,
}

#[derive(Debug, clap::Args)]
pub struct GetArgs {
    card_id: String,
    #[command(flatten)]
    store: StoreArgs,
}

fn block_on<F: std::future::Future>(future: F) -> anyhow::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    Ok(runtime.block_on(future))
}

/// Opens the store for reading: a local store must already exist (opening
/// would create it, hiding a mistyped path behind "no card published").
async fn open_existing(args: &StoreArgs) -> anyhow::Result<Arc<dyn ObjectStore>> {
    let local = args.store.strip_prefix("file://").unwrap_or(&args.store);
    if !args.store.contains("://") || args.store.starts_with("file://") {
        anyhow::ensure!(
            Path::new(local).is_dir(),
            "store {} does not exist (no such directory)",
            args.store
        );
    }
    open(args).await
}

async fn open(args: &StoreArgs) -> anyhow::Result<Arc<dyn ObjectStore>> {
    let options = OpenOptions {
        s3: S3Options {
            endpoint: args.endpoint.clone(),
            ..S3Options::default()
        },
    };
    cardfs::store::open(&args.store, &options)
        .await
        .with_context(|| format!("opening store {}", args.store))
}

/// The card to publish: the pinned card of key NAME, or CARD.
fn card_to_publish(cards: &CardStore, args: &PublishArgs) -> anyhow::Result<Card> {
    if let Some(name) = &args.key {
        let key = key_store()?.load(name)?;
        return cards
            .list()?
            .into_iter()
            .find(|c| *c.x25519_public() == key.x25519_public())
            .ok_or_else(|| super::exit::UserError::MissingCard { key: name.clone() }.into());
    }
    let card = args.card.as_deref().unwrap_or_default();
    if card == "-" || Path::new(card).exists() {
        read_card_file(card)
    } else {
        Ok(cards.find(card)?)
    }
}

pub fn publish(args: PublishArgs) -> anyhow::Result<()> {
    let cards = card_store()?;
    let card = card_to_publish(&cards, &args)?;
    let outcome = block_on(async {
        let store = open(&args.store).await?;
        store
            .check_conditional_writes()
            .await
            .with_context(|| format!("checking store {}", args.store.store))?;
        directory::publish(store.as_ref(), &card)
            .await
            .with_context(|| format!("publishing to {}", args.store.store))
    })??;
    let who = card.identity();
    let fp = card.fingerprint();
    match outcome {
        Published::New => println!("Published card {who} ({fp})"),
        Published::Unchanged => println!("Card {who} ({fp}) was already published"),
        Published::ApprovalsAdded(n) => {
            println!("Card {who} ({fp}) was already published; added {n} approval(s)")
        }
        Published::Repaired => {
            println!(
                "Published card {who} ({fp}), replacing an invalid object stored under its name"
            )
        }
    }
    Ok(())
}

fn describe(status: &Status) -> String {
    match status {
        Status::Pinned => "pinned".into(),
        Status::PinnedOther { pinned_fingerprint } => {
            format!("MISMATCH: you pinned a different card ({pinned_fingerprint})")
        }
        Status::Approved { authority } => format!("approved by trusted authority {authority}"),
        Status::Unknown => "unknown: compare the fingerprint".into(),
    }
}

pub fn find(args: FindArgs) -> anyhow::Result<()> {
    let cards = card_store()?;
    let found = block_on(async {
        let store = open_existing(&args.store).await?;
        directory::find(store.as_ref(), &args.identity)
            .await
            .with_context(|| format!("searching {}", args.store.store))
    })??;
    for rejected in &found.rejected {
        eprintln!(
            "warning: skipped store object {}: {}",
            rejected.key, rejected.reason
        );
    }
    if found.cards.is_empty() {
        bail!(
            "no valid card is published for {} in {}",
            args.identity,
            args.store.store
        );
    }
    for card in &found.cards {
        println!(
            "{}\t{}\t{}\t{}",
            card.identity(),
            card.fingerprint(),
            card.id(),
            describe(&trust::status(&cards, card)?)
        );
    }
    let chosen = match &args.fingerprint {
        Some(fp) => found
            .cards
            .iter()
            .find(|c| c.id().fingerprint_matches(fp))
            .with_context(|| {
                format!(
                    "no card published for {} has fingerprint {fp}; do not use the cards listed",
                    args.identity
                )
            })?,
        None if args.pin => {
            let usable: Vec<&Card> = found
                .cards
                .iter()
                .filter(|c| {
                    matches!(
                        trust::status(&cards, c),
                        Ok(Status::Pinned | Status::Approved { .. })
                    )
                })
                .collect();
            match usable.as_slice() {
                [one] => one,
                // Nothing usable: let the decision explain, with the
                // newest card's fingerprint.
                [] => &found.cards[0],
                _ => bail!(
                    "several cards for {} are usable; choose one with --fingerprint",
                    args.identity
                ),
            }
        }
        None => return Ok(()),
    };
    if !args.pin {
        eprintln!(
            "Card {} matches fingerprint {}; pass --pin to pin it",
            chosen.identity(),
            chosen.fingerprint()
        );
        return Ok(());
    }
    let outcome = trust::accept(&cards, chosen, args.fingerprint.as_deref())
        .map_err(|e| super::member::pin_hint(e, "--fingerprint"))?;
    let who = chosen.identity();
    let fp = chosen.fingerprint();
    match outcome {
        Accepted::Pinned => eprintln!("Card {who} ({fp}) is pinned"),
        Accepted::Approved { authority } => {
            eprintln!("Pinned card {who} ({fp}), approved by authority {authority}")
        }
        Accepted::Fingerprint(_) => eprintln!("Pinned card {who} ({fp}): fingerprint confirmed"),
    }
    Ok(())
}

pub fn get(args: GetArgs) -> anyhow::Result<()> {
    let id: CardId = args.card_id.parse()?;
    let cards = card_store()?;
    let card = block_on(async {
        let store = open_existing(&args.store).await?;
        directory::get(store.as_ref(), id)
            .await
            .with_context(|| format!("reading {}", args.store.store))
    })??;
    eprintln!(
        "Card {} ({}): {}",
        card.identity(),
        card.fingerprint(),
        describe(&trust::status(&cards, &card)?)
    );
    println!("{}", card.to_text());
    Ok(())
}
