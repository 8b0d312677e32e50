//! `cardfs card ...` and `cardfs authority ...`: create, exchange, pin,
//! approve and trust cards in `$CARDFS_HOME/cards/`.

use super::card_files::{card_store, read_card_file};
use super::exit::UserError;
use super::key::{NewKeyArgs, generate};
use super::password::{PasswordArgs, key_store, unlock_key};
use anyhow::{Context, bail};
use cardfs::format::card::Card;
use cardfs::format::key::UserKey;
use cardfs::identity::cards::{CardStore, Pinned};
use std::path::Path;

#[derive(Debug, clap::Subcommand)]
pub enum CardCommand {
    /// Create (and pin) your card: IDENTITY bound to KEY's public keys.
    Create {
        #[arg(long)]
        key: String,
        #[arg(long)]
        identity: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Print a pinned card as one line of text, safe to paste.
    Export {
        /// Identity or card id.
        card: String,
    },
    /// Verify and pin a card from FILE or - (stdin).
    Import {
        file: String,
        /// Replace the card pinned for this identity; give the NEW card's
        /// fingerprint, checked with its owner over a trusted channel.
        #[arg(long, value_name = "FINGERPRINT")]
        replace: Option<String>,
    },
    /// List pinned cards.
    List {
        /// Print a JSON array, one object per card (fields in docs/CLI.md).
        #[arg(long)]
        json: bool,
    },
    /// Show a pinned card with its fingerprint.
    Show {
        /// Identity, card id, or the name of one of your keys.
        card: String,
    },
    /// Sign a pinned card (or a card FILE) as authority N; prints the card.
    Approve {
        card: String,
        #[arg(long)]
        authority: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Publish a card (yours, with --key) to the card directory of a store.
    Publish(super::directory::PublishArgs),
    /// List the cards published for IDENTITY in a store, with fingerprints
    /// and whether each is pinned here; pin one with --pin.
    Find(super::directory::FindArgs),
    /// Fetch the card with CARD_ID from a store (verified) and print it.
    Get(super::directory::GetArgs),
}

#[derive(Debug, clap::Subcommand)]
pub enum AuthorityCommand {
    /// Create an authority key and its card (prints the card).
    Create(NewKeyArgs),
    /// Trust an authority card (FILE or -): cards it approved are accepted
    /// without a fingerprint check.
    Trust {
        file: String,
        /// Replace a trusted authority card of the same name; give the
        /// new card's fingerprint.
        #[arg(long, value_name = "FINGERPRINT")]
        replace: Option<String>,
    },
    /// List trusted authorities.
    List,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The pinned card holding `key`'s public keys.
pub fn own_card(store: &CardStore, key: &UserKey) -> anyhow::Result<Card> {
    store
        .list()?
        .into_iter()
        .find(|c| c.matches_key(key))
        .ok_or_else(|| {
            UserError::MissingCard {
                key: key.name().to_string(),
            }
            .into()
        })
}

pub fn run_card(command: CardCommand) -> anyhow::Result<()> {
    let store = card_store()?;
    match command {
        CardCommand::Create {
            key,
            identity,
            password,
        } => {
            let key = unlock_key(&key, &password)?;
            create_card(&store, &key, &identity)
        }
        CardCommand::Export { card } => {
            println!("{}", store.find(&card)?.to_text());
            Ok(())
        }
        CardCommand::Import { file, replace } => {
            let card = read_card_file(&file)?;
            let outcome = (store.pin(&card, replace.as_deref()))
                .map_err(|e| super::member::replace_hint(e, "--replace"))?;
            report_pin(&store, &card, &outcome)
        }
        CardCommand::List { json } => list(&store, json),
        CardCommand::Show { card } => show(&store, &find_or_own(&store, &card)?),
        CardCommand::Approve {
            card,
            authority,
            password,
        } => approve(&store, &card, &authority, &password),
        CardCommand::Publish(args) => super::directory::publish(args),
        CardCommand::Find(args) => super::directory::find(args),
        CardCommand::Get(args) => super::directory::get(args),
    }
}

/// One object of `cardfs card list --json` (documented in docs/CLI.md).
#[derive(Debug, serde::Serialize)]
struct ListedCard {
    identity: String,
    fingerprint: String,
    card_id: String,
    /// RFC 3339 UTC.
    created: String,
    /// The trusted authority that approved it, if any.
    approved_by: Option<String>,
    /// The name of the key in this home the card belongs to, if any.
    your_key: Option<String>,
}

fn list(store: &CardStore, json: bool) -> anyhow::Result<()> {
    let keys = key_store()?.list()?;
    let mut listed = Vec::new();
    for card in store.list()? {
        listed.push(ListedCard {
            identity: card.identity().to_string(),
            fingerprint: card.fingerprint(),
            card_id: card.id().to_string(),
            created: super::units::rfc3339(super::units::from_unix(card.created())),
            approved_by: (store.approving_authority(&card)?).map(|a| a.identity().to_string()),
            your_key: (keys.iter())
                .find(|k| k.x25519_public() == *card.x25519_public())
                .map(|k| k.name().to_string()),
        });
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&listed)?);
        return Ok(());
    }
    for c in listed {
        let approved = c
            .approved_by
            .map(|a| format!("\tapproved by {a}"))
            .unwrap_or_default();
        let own = c
            .your_key
            .map(|k| format!("\tyour key {k}"))
            .unwrap_or_default();
        println!("{}\t{}{approved}{own}", c.identity, c.fingerprint);
    }
    Ok(())
}

fn create_card(store: &CardStore, key: &UserKey, identity: &str) -> anyhow::Result<()> {
    let card = Card::create(key, identity, now())?;
    store.pin(&card, None)?;
    eprintln!(
        "Created card {identity} (fingerprint {}); share this line:",
        card.fingerprint()
    );
    println!("{}", card.to_text());
    Ok(())
}

fn report_pin(store: &CardStore, card: &Card, outcome: &Pinned) -> anyhow::Result<()> {
    let who = card.identity();
    let fp = card.fingerprint();
    match outcome {
        Pinned::New => match store.approving_authority(card)? {
            Some(a) => println!(
                "Pinned card {who} ({fp}), approved by authority {}",
                a.identity()
            ),
            None => {
                println!("Pinned card {who} with fingerprint {fp}");
                eprintln!("Compare this fingerprint with {who} over a channel you trust.");
            }
        },
        Pinned::Unchanged => println!("Card {who} ({fp}) was already pinned"),
        Pinned::ApprovalsAdded(n) => {
            println!("Card {who} ({fp}) was already pinned; added {n} approval(s)")
        }
        Pinned::Replaced { approved_by, .. } => match approved_by {
            Some(a) => println!("Replaced the card of {who} with {fp}, approved by authority {a}"),
            None => println!("Replaced the card of {who} with {fp}"),
        },
    }
    Ok(())
}

/// The pinned card named by an identity or card id, else the card of the
/// key of that name in this home.
fn find_or_own(store: &CardStore, name: &str) -> anyhow::Result<Card> {
    match store.find(name) {
        Ok(card) => Ok(card),
        Err(not_found) => {
            let keys = key_store()?.list().unwrap_or_default();
            match keys.iter().find(|k| k.name() == name) {
                Some(key) => (store.list()?.into_iter())
                    .find(|c| c.x25519_public() == &key.x25519_public())
                    .ok_or_else(|| UserError::MissingCard { key: name.into() }.into()),
                None => Err(not_found.into()),
            }
        }
    }
}

fn show(store: &CardStore, card: &Card) -> anyhow::Result<()> {
    let hex = |b: &[u8]| cardfs::format::wire::hex(b);
    println!("identity     {}", card.identity());
    println!("fingerprint  {}", card.fingerprint());
    println!("card id      {}", card.id());
    println!(
        "created      {}",
        super::units::utc(super::units::from_unix(card.created()))
    );
    println!("x25519       {}", hex(card.x25519_public().as_bytes()));
    println!("ed25519      {}", hex(card.ed25519_public().as_bytes()));
    let authorities = store.authorities()?;
    for id in card.approval_ids() {
        let status = match authorities.iter().find(|a| a.id() == id) {
            Some(a) if card.approved_by(a) => format!("trusted authority {}", a.identity()),
            Some(a) => format!("INVALID signature claiming authority {}", a.identity()),
            None => "authority not trusted here".to_string(),
        };
        println!("approved by  {id} ({status})");
    }
    Ok(())
}

fn approve(
    store: &CardStore,
    card: &str,
    authority: &str,
    password: &PasswordArgs,
) -> anyhow::Result<()> {
    let mut target = if Path::new(card).exists() || card == "-" {
        read_card_file(card)?
    } else {
        store.find(card)?
    };
    let key = unlock_key(authority, password)?;
    let authority_card = store
        .get(key.name())?
        .filter(|c| c.matches_key(&key))
        .with_context(|| {
            format!("authority {authority} has no card here (see `cardfs authority create`)")
        })?;
    target.approve(&key, &authority_card)?;
    if let Some(pinned) = store.get(target.identity())?
        && pinned.id() == target.id()
    {
        store.pin(&target, None)?;
    }
    eprintln!(
        "Approved card {} ({}) as authority {authority}; publish this line:",
        target.identity(),
        target.fingerprint()
    );
    println!("{}", target.to_text());
    Ok(())
}

pub fn run_authority(command: AuthorityCommand) -> anyhow::Result<()> {
    let store = card_store()?;
    match command {
        AuthorityCommand::Create(args) => {
            if store.get(&args.name)?.is_some() {
                bail!(
                    "a card for {:?} is already pinned here; choose another authority name",
                    args.name
                );
            }
            let key = generate(&args)?;
            create_card(&store, &key, &args.name)?;
            store.trust_authority(&own_card(&store, &key)?, None)?;
            Ok(())
        }
        AuthorityCommand::Trust { file, replace } => {
            let card = read_card_file(&file)?;
            (store.trust_authority(&card, replace.as_deref()))
                .map_err(|e| super::member::replace_hint(e, "--replace"))?;
            println!(
                "Trusting authority {} with fingerprint {}",
                card.identity(),
                card.fingerprint()
            );
            eprintln!(
                "Cards it approves are now accepted without a fingerprint check; \
                 make sure this fingerprint is the authority's."
            );
            Ok(())
        }
        AuthorityCommand::List => {
            for a in store.authorities()? {
                println!("{}\t{}", a.identity(), a.fingerprint());
            }
            Ok(())
        }
    }
}
