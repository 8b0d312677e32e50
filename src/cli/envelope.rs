//! `cardfs encrypt` and `cardfs decrypt`: envelopes between files or
//! stdin/stdout, binary or armored.
//!
//! The flags are age's where they mean the same: `-r` recipient, `-a`
//! armor, `-o` output, `-i` the key to decrypt with.
//!
//! Invariants: with `-o FILE`, output goes to a temporary file next to FILE
//! that is renamed into place only after everything (including a required
//! signature) checked out, and removed on any failure. To stdout, each
//! chunk is written only after it authenticated. Binary ciphertext is never
//! written to a terminal unless asked for with `-o -`.

use super::card::own_card;
use super::card_files::card_store;
use super::exit::UsageError;
use super::password::{PasswordArgs, key_store, unlock_key};
use anyhow::{Context, bail};
use cardfs::format::card::Card;
use cardfs::format::envelope::EnvelopeError;
use cardfs::identity::armor::{ArmorWriter, dearmor};
use cardfs::identity::envelope::{
    decrypt_after_header, encrypt_for, read_header, sign_then_encrypt,
};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, IsTerminal, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct EncryptArgs {
    /// Recipient (identity or card id of a pinned card); repeat for more.
    #[arg(
        short = 'r',
        long = "to",
        visible_alias = "recipient",
        value_name = "ID",
        required = true
    )]
    to: Vec<String>,
    /// Sign with this key (its card must exist here); recipients can then
    /// check who sent it.
    #[arg(long, value_name = "KEY")]
    sign_with: Option<String>,
    /// Write base64 text instead of binary.
    #[arg(short = 'a', long)]
    armor: bool,
    /// Output file (default: stdout; `-` is stdout even on a terminal).
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    output: Option<PathBuf>,
    /// Input file (default or -: stdin).
    input: Option<PathBuf>,
    #[command(flatten)]
    password: PasswordArgs,
}

#[derive(Debug, clap::Args)]
pub struct DecryptArgs {
    /// Key to decrypt with (default: the local key the envelope names).
    #[arg(short = 'i', long, visible_alias = "identity", value_name = "KEY")]
    key: Option<String>,
    /// Require a valid signature by this card (identity or card id).
    #[arg(long, value_name = "ID")]
    verify_from: Option<String>,
    /// Output file (default or -: stdout).
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    output: Option<PathBuf>,
    /// Input file, binary or armored (default or -: stdin).
    input: Option<PathBuf>,
    #[command(flatten)]
    password: PasswordArgs,
}

fn open_input(path: Option<&Path>) -> anyhow::Result<Box<dyn Read>> {
    match path {
        None => Ok(Box::new(std::io::stdin().lock())),
        Some(p) if p.as_os_str() == "-" => Ok(Box::new(std::io::stdin().lock())),
        Some(p) => Ok(Box::new(
            File::open(p).with_context(|| format!("opening {}", p.display()))?,
        )),
    }
}

/// An output file being written under a temporary name; removed on drop
/// unless committed.
struct PendingOutput {
    tmp: PathBuf,
    dest: PathBuf,
    committed: bool,
}

impl PendingOutput {
    fn commit(mut self, writer: BufWriter<File>) -> anyhow::Result<()> {
        let file = writer.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&self.tmp, &self.dest)
            .with_context(|| format!("renaming output to {}", self.dest.display()))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for PendingOutput {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

fn open_output(path: &Path) -> anyhow::Result<(BufWriter<File>, PendingOutput)> {
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file name", path.display()))?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.cardfs-{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    let pending = PendingOutput {
        tmp,
        dest: path.to_path_buf(),
        committed: false,
    };
    Ok((BufWriter::with_capacity(1 << 20, file), pending))
}

/// Runs `body` on the chosen output (`None` or `-`: stdout) and commits a
/// file output on success.
fn with_output(
    path: Option<&Path>,
    body: impl FnOnce(&mut dyn Write) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    match path.filter(|p| p.as_os_str() != "-") {
        None => {
            let mut out = BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
            body(&mut out)?;
            out.flush().context("writing to stdout")
        }
        Some(path) => {
            let (mut out, pending) = open_output(path)?;
            body(&mut out)?;
            pending.commit(out)
        }
    }
}

pub fn encrypt(args: EncryptArgs) -> anyhow::Result<()> {
    let store = card_store()?;
    let cards = args
        .to
        .iter()
        .map(|id| store.find(id))
        .collect::<Result<Vec<Card>, _>>()?;
    let signer = match &args.sign_with {
        Some(name) => {
            let key = unlock_key(name, &args.password)?;
            let card = own_card(&store, &key)?;
            Some((key, card))
        }
        None => None,
    };
    if args.output.is_none() && !args.armor && std::io::stdout().is_terminal() {
        return Err(UsageError(
            "refusing to write binary ciphertext to a terminal; write it to a file with \
             -o FILE, as text with -a (armor), or to the terminal anyway with -o -"
                .into(),
        )
        .into());
    }
    let input = open_input(args.input.as_deref())?;
    with_output(args.output.as_deref(), |out| {
        let seal = |w: &mut dyn Write| match &signer {
            Some((key, card)) => sign_then_encrypt(key, card, &cards, input, w),
            None => encrypt_for(&cards, input, w),
        };
        if args.armor {
            let mut armored = ArmorWriter::new(out);
            seal(&mut armored).context("cannot encrypt")?;
            armored.finish().context("writing the output")?;
        } else {
            seal(out).context("cannot encrypt")?;
        }
        Ok(())
    })
}

pub fn decrypt(args: DecryptArgs) -> anyhow::Result<()> {
    let mut input = dearmor(open_input(args.input.as_deref())?).context("reading the input")?;
    let header = read_header(&mut input).context("cannot decrypt")?;
    let keys = key_store()?;
    let name = match &args.key {
        Some(name) => {
            let file = keys.load(name)?;
            if !header.recipients().any(|r| *r == file.recipient_id()) {
                bail!("cannot decrypt: key {name} is not a recipient of this envelope");
            }
            name.clone()
        }
        None => keys
            .list()?
            .into_iter()
            .find(|f| header.recipients().any(|r| *r == f.recipient_id()))
            .map(|f| f.name().to_string())
            .context("cannot decrypt: none of your keys is a recipient of this envelope")?,
    };
    let store = card_store()?;
    let sender = args
        .verify_from
        .as_deref()
        .map(|id| store.find(id))
        .transpose()?;
    if sender.is_some() && !header.is_signed() {
        return Err(EnvelopeError::SignatureMissing).context("cannot decrypt");
    }
    let key = unlock_key(&name, &args.password)?;
    with_output(args.output.as_deref(), |out| {
        let claim = decrypt_after_header(&key, &header, input, out).context("cannot decrypt")?;
        match (sender, claim) {
            (Some(card), Some(claim)) => {
                claim.verify(&card).context("cannot decrypt")?;
                eprintln!(
                    "Good signature from {} ({})",
                    card.identity(),
                    card.fingerprint()
                );
            }
            (Some(_), None) => {
                return Err(EnvelopeError::SignatureMissing).context("cannot decrypt");
            }
            (None, Some(claim)) => match store.find_id(claim.signer())? {
                Some(card) if claim.verify(&card).is_ok() => eprintln!(
                    "Good signature from {} ({}); use --verify-from to require it",
                    card.identity(),
                    card.fingerprint()
                ),
                Some(card) => bail!(
                    "cannot decrypt: bad signature: the envelope claims to be signed by {} but \
                     the signature does not verify",
                    card.identity()
                ),
                None => eprintln!(
                    "Signed by an unknown card {} (not verified: import the sender's card)",
                    claim.signer()
                ),
            },
            (None, None) => {}
        }
        Ok(())
    })
}
