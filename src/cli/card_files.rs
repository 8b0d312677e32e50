//! Reading cards from files and opening this user's card store: shared by
//! `card` and the card-directory commands.

use anyhow::Context;
use cardfs::format::card::Card;
use cardfs::identity::cards::CardStore;
use cardfs::identity::home_from_env;
use std::io::Read;

/// This user's pinned cards (under `CARDFS_HOME`).
pub fn card_store() -> anyhow::Result<CardStore> {
    Ok(CardStore::new(&home_from_env()?))
}

/// Reads a card from FILE or `-`, as text or binary.
pub fn read_card_file(file: &str) -> anyhow::Result<Card> {
    let mut bytes = Vec::new();
    if file == "-" {
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("reading the card from stdin")?;
    } else {
        bytes = std::fs::read(file).with_context(|| format!("reading card file {file}"))?;
    }
    let card = match std::str::from_utf8(&bytes) {
        Ok(text) if !text.starts_with("CFSC") => Card::from_text(text),
        _ => Card::from_bytes(&bytes),
    };
    card.with_context(|| format!("refusing card {file}"))
}
