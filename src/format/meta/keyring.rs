//! Volume keyrings (object `v/VOLUME/keyring/GENERATION`): one
//! generation's volume key wrapped to each member's X25519 key; the member
//! list, display name and earlier generations' keys encrypted under the
//! volume key; signed by the volume owner.
//!
//! Invariants: the owner's signature is checked before anything is
//! unwrapped or decrypted; a keyring that opens satisfies the rules listed
//! on [`Keyring`], and the wrapped key that opened it sits at the opener's
//! own place in the member list.

use super::header::MEMBER_RECORD_LEN;
use super::{
    FORMAT_VERSION, KEYRING_MAGIC, MemberRecord, pad, put_header, split_sig, subkey, unpad,
};
use crate::format::crypto::{
    NONCE_LEN, SecretKey, WRAPPED_KEY_LEN, random_array, unwrap_key, wrap_key,
};
use crate::format::wire::{FormatError, Reader, Writer};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

/// The context a volume key is wrapped under.
pub fn volume_key_context(drive_id: &[u8; 16], volume: &[u8; 16], generation: u32) -> Vec<u8> {
    [
        b"cardfs/v1/volume-key".as_slice(),
        drive_id,
        volume,
        &generation.to_le_bytes(),
    ]
    .concat()
}

/// One generation of a volume's keyring: the volume key wrapped to each
/// member; the member list, display name and earlier generations' keys
/// encrypted under the volume key; signed by the volume owner.
///
/// A valid keyring has at least one member, exactly one owner (role 3,
/// `owner_card_id`), no card twice, and `history` holds the keys of
/// generations `0..generation` in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyring {
    pub drive_id: [u8; 16],
    pub volume: [u8; 16],
    pub generation: u32,
    pub owner_card_id: [u8; 32],
    pub members: Vec<MemberRecord>,
    /// The volume's display name (secret: encrypted).
    pub name: Vec<u8>,
    /// `(generation, key)` of every earlier generation, ascending.
    pub history: Vec<(u32, SecretKey)>,
}

/// The number of wrapped keys a keyring of `members` members carries: the
/// next power of two, at least 4; the places past the members hold random
/// bytes, so the store learns only this class, not the member count.
pub fn wrapped_slots(members: usize) -> usize {
    members.max(4).next_power_of_two()
}

/// The decrypted secret part of a keyring: members, name, history.
type SecretPart = (Vec<MemberRecord>, Vec<u8>, Vec<(u32, SecretKey)>);

/// Encodes the secret part of a keyring (before encryption).
pub(crate) fn write_secret_part(
    members: &[MemberRecord],
    name: &[u8],
    history: &[(u32, SecretKey)],
) -> Zeroizing<Vec<u8>> {
    let mut list = Writer::new();
    list.u32(members.len() as u32);
    for m in members {
        m.write(&mut list);
    }
    list.bytes(name).u32(history.len() as u32);
    for (g, k) in history {
        list.u32(*g).raw(k.expose());
    }
    Zeroizing::new(list.into_vec())
}

/// Parses the decrypted secret part of a keyring (its invariants are
/// checked by the caller, on the whole keyring).
pub(crate) fn read_secret_part(plain: &[u8]) -> Result<SecretPart, FormatError> {
    let mut r = Reader::new(plain);
    let count = r.count(MEMBER_RECORD_LEN)?;
    let members = (0..count)
        .map(|_| MemberRecord::read(&mut r))
        .collect::<Result<Vec<_>, _>>()?;
    let name = r.bytes()?.to_vec();
    let history = (0..r.count(4 + 32)?)
        .map(|_| Ok((r.u32()?, SecretKey::from_bytes(r.array()?))))
        .collect::<Result<Vec<_>, FormatError>>()?;
    r.finish()?;
    Ok((members, name, history))
}

/// The parsed, signature-checked public part of a keyring.
struct KeyringBody<'a> {
    drive_id: [u8; 16],
    volume: [u8; 16],
    generation: u32,
    owner_card_id: [u8; 32],
    wrapped: Vec<[u8; WRAPPED_KEY_LEN]>,
    nonce: [u8; NONCE_LEN],
    aad: &'a [u8],
    ct: &'a [u8],
}

impl Keyring {
    /// Checks the invariants listed on [`Keyring`].
    fn validate(&self) -> Result<(), FormatError> {
        if self.members.is_empty() {
            return Err(FormatError::Invalid("empty keyring"));
        }
        let owners: Vec<_> = self.members.iter().filter(|m| m.role == 3).collect();
        if owners.len() != 1 || owners[0].card_id != self.owner_card_id {
            return Err(FormatError::Invalid("keyring owner"));
        }
        let mut cards: Vec<_> = self.members.iter().map(|m| m.card_id).collect();
        cards.sort_unstable();
        cards.dedup();
        if cards.len() != self.members.len() {
            return Err(FormatError::Invalid("keyring lists a card twice"));
        }
        let gens: Vec<u32> = self.history.iter().map(|(g, _)| *g).collect();
        if !gens.iter().copied().eq(0..self.generation) {
            return Err(FormatError::Invalid("keyring history"));
        }
        Ok(())
    }

    pub fn seal(&self, key: &SecretKey, owner: &SigningKey) -> Result<Vec<u8>, FormatError> {
        self.validate()?;
        self.seal_unchecked(key, owner)
    }

    /// Seals without checking the invariants (tests build invalid ones).
    fn seal_unchecked(&self, key: &SecretKey, owner: &SigningKey) -> Result<Vec<u8>, FormatError> {
        let ctx = volume_key_context(&self.drive_id, &self.volume, self.generation);
        let mut w = Writer::new();
        put_header(&mut w, KEYRING_MAGIC);
        w.raw(&self.drive_id)
            .raw(&self.volume)
            .u32(self.generation)
            .raw(&self.owner_card_id);
        let slots = wrapped_slots(self.members.len());
        w.u32(slots as u32);
        for m in &self.members {
            let wrapped = wrap_key(&PublicKey::from(m.x25519), key, &ctx)
                .map_err(|_| FormatError::Invalid("member x25519 key"))?;
            w.raw(&wrapped);
        }
        for _ in self.members.len()..slots {
            w.raw(&random_array::<WRAPPED_KEY_LEN>());
        }
        let nonce = random_array::<NONCE_LEN>();
        w.raw(&nonce);
        let mut ct = pad(&write_secret_part(&self.members, &self.name, &self.history)).to_vec();
        subkey(key, &self.volume, b"members").seal_in_place(&nonce, &w.0, &mut ct);
        w.bytes(&ct);
        let sig = owner.sign(&w.0);
        w.raw(&sig.to_bytes());
        Ok(w.into_vec())
    }

    /// Verifies the owner's signature and parses the public part.
    fn parse<'a>(bytes: &'a [u8], owner: &VerifyingKey) -> Result<KeyringBody<'a>, FormatError> {
        let (body, sig) = split_sig(bytes)?;
        owner
            .verify_strict(body, &sig)
            .map_err(|_| FormatError::Signature)?;
        let mut r = Reader::new(body);
        r.versioned_header(KEYRING_MAGIC, FORMAT_VERSION)?;
        let drive_id = r.array()?;
        let volume = r.array()?;
        let generation = r.u32()?;
        let owner_card_id = r.array()?;
        let n = r.count(WRAPPED_KEY_LEN)?;
        let wrapped = (0..n).map(|_| r.array()).collect::<Result<Vec<_>, _>>()?;
        let nonce = r.array()?;
        let aad = &body[..r.position()];
        let ct = r.bytes()?;
        r.finish()?;
        Ok(KeyringBody {
            drive_id,
            volume,
            generation,
            owner_card_id,
            wrapped,
            nonce,
            aad,
            ct,
        })
    }

    /// Verifies the owner's signature and returns the public identity of
    /// the keyring: (drive id, volume, generation).
    pub fn verify_public(
        bytes: &[u8],
        owner: &VerifyingKey,
    ) -> Result<([u8; 16], [u8; 16], u32), FormatError> {
        let b = Self::parse(bytes, owner)?;
        Ok((b.drive_id, b.volume, b.generation))
    }

    /// Decrypts and validates the secret part with the volume key.
    fn decrypt(b: &KeyringBody<'_>, key: &SecretKey) -> Result<Self, FormatError> {
        let plain = Zeroizing::new(
            subkey(key, &b.volume, b"members")
                .open(&b.nonce, b.aad, b.ct)
                .map_err(|_| FormatError::Decrypt)?,
        );
        let (members, name, history) = read_secret_part(unpad(&plain)?)?;
        if wrapped_slots(members.len()) != b.wrapped.len() {
            return Err(FormatError::Invalid(
                "member count differs from wrapped keys",
            ));
        }
        let k = Self {
            drive_id: b.drive_id,
            volume: b.volume,
            generation: b.generation,
            owner_card_id: b.owner_card_id,
            members,
            name,
            history,
        };
        k.validate()?;
        Ok(k)
    }

    /// Verifies the owner's signature, unwraps the volume key with `me`,
    /// and decrypts the secret part. The wrapped key that opened must sit
    /// at the position of the member whose x25519 key is mine.
    pub fn open(
        bytes: &[u8],
        owner: &VerifyingKey,
        me: &StaticSecret,
    ) -> Result<(Self, SecretKey), FormatError> {
        let b = Self::parse(bytes, owner)?;
        let ctx = volume_key_context(&b.drive_id, &b.volume, b.generation);
        let (pos, key) = b
            .wrapped
            .iter()
            .enumerate()
            .find_map(|(i, w)| unwrap_key(me, w, &ctx).ok().map(|k| (i, k)))
            .ok_or(FormatError::Invalid("not a member"))?;
        let k = Self::decrypt(&b, &key)?;
        if k.members.get(pos).map(|m| m.x25519) != Some(*PublicKey::from(me).as_bytes()) {
            return Err(FormatError::Invalid(
                "wrapped key at another member's place",
            ));
        }
        Ok((k, key))
    }

    /// Opens a generation I am not (or no longer) a member of with its key
    /// taken from a newer generation's history: verifies the owner's
    /// signature and decrypts the secret part.
    pub fn open_with_key(
        bytes: &[u8],
        owner: &VerifyingKey,
        key: &SecretKey,
    ) -> Result<Self, FormatError> {
        Self::decrypt(&Self::parse(bytes, owner)?, key)
    }
}

#[cfg(test)]
mod tests {
    use super::super::SIG_LEN;
    use super::*;

    fn sample_keyring(generation: u32) -> (Keyring, SigningKey, StaticSecret, StaticSecret) {
        let owner_sk = SigningKey::from_bytes(&[1; 32]);
        let owner_x = StaticSecret::from([2; 32]);
        let member_x = StaticSecret::from([6; 32]);
        let k = Keyring {
            drive_id: [3; 16],
            volume: [4; 16],
            generation,
            owner_card_id: [3; 32],
            members: vec![
                MemberRecord::sample(&owner_sk, &owner_x, 3),
                MemberRecord::sample(&SigningKey::from_bytes(&[7; 32]), &member_x, 1),
            ],
            name: b"projects".to_vec(),
            history: (0..generation)
                .map(|g| (g, SecretKey::from_bytes([g as u8 + 10; 32])))
                .collect(),
        };
        (k, owner_sk, owner_x, member_x)
    }

    #[test]
    fn keyring_wraps_to_members_only() {
        let (k, owner_sk, owner_x, member_x) = sample_keyring(2);
        let other_x = StaticSecret::from([5; 32]);
        let key = SecretKey::random();
        let bytes = k.seal(&key, &owner_sk).unwrap();
        for me in [&owner_x, &member_x] {
            let (got, got_key) = Keyring::open(&bytes, &owner_sk.verifying_key(), me).unwrap();
            assert_eq!(got, k);
            assert_eq!(got_key, key);
        }
        assert_eq!(
            Keyring::open(&bytes, &owner_sk.verifying_key(), &other_x),
            Err(FormatError::Invalid("not a member"))
        );
        assert_eq!(
            Keyring::open_with_key(&bytes, &owner_sk.verifying_key(), &key).unwrap(),
            k
        );
        assert_eq!(
            Keyring::open_with_key(&bytes, &owner_sk.verifying_key(), &SecretKey::random()),
            Err(FormatError::Decrypt)
        );
        let stranger = SigningKey::from_bytes(&[9; 32]);
        assert_eq!(
            Keyring::open(&bytes, &stranger.verifying_key(), &owner_x),
            Err(FormatError::Signature)
        );
        for i in [0, 4, 30, 100, bytes.len() - 70, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(
                Keyring::open(&bad, &owner_sk.verifying_key(), &owner_x).is_err(),
                "flip at {i}"
            );
        }
        for cut in 0..bytes.len() {
            assert!(Keyring::open(&bytes[..cut], &owner_sk.verifying_key(), &owner_x).is_err());
        }
    }

    #[test]
    fn keyring_refuses_invalid_contents_even_when_signed() {
        let (k, owner_sk, owner_x, _) = sample_keyring(1);
        let key = SecretKey::random();
        let cases: Vec<(Keyring, &str)> = vec![
            (
                Keyring {
                    members: vec![],
                    ..k.clone()
                },
                "empty keyring",
            ),
            (
                Keyring {
                    history: vec![],
                    ..k.clone()
                },
                "keyring history",
            ),
            (
                Keyring {
                    owner_card_id: [1; 32],
                    ..k.clone()
                },
                "keyring owner",
            ),
            (
                Keyring {
                    members: vec![k.members[0].clone(), k.members[0].clone()],
                    ..k.clone()
                },
                "keyring owner",
            ),
        ];
        for (bad, why) in cases {
            assert_eq!(bad.seal(&key, &owner_sk), Err(FormatError::Invalid(why)));
            let bytes = bad.seal_unchecked(&key, &owner_sk).unwrap();
            let got = Keyring::open_with_key(&bytes, &owner_sk.verifying_key(), &key);
            assert_eq!(got, Err(FormatError::Invalid(why)));
        }
        // Eight places wrapped (five members) but a one-member list
        // encrypted (a shortened list, as if the owner's tool were
        // subverted): refused, the list's class is four places.
        let bytes = k.seal(&key, &owner_sk).unwrap();
        let mut five = k.clone();
        five.members = vec![k.members[0].clone(); 5];
        for (i, m) in five.members.iter_mut().enumerate().skip(1) {
            m.card_id = [8 + i as u8; 32];
            m.role = 1;
        }
        let b = five.seal_unchecked(&key, &owner_sk).unwrap();
        // Re-encrypt a one-member list under the eight-place header:
        // decrypt finds the count mismatch.
        let parsed = Keyring::parse(&b, &owner_sk.verifying_key()).unwrap();
        let mut list = Writer::new();
        list.u32(1);
        k.members[0].write(&mut list);
        list.bytes(&k.name)
            .u32(1)
            .u32(0)
            .raw(k.history[0].1.expose());
        let ct = subkey(&key, &k.volume, b"members").seal(&parsed.nonce, parsed.aad, &pad(&list.0));
        let forged = KeyringBody { ct: &ct, ..parsed };
        assert_eq!(
            Keyring::decrypt(&forged, &key),
            Err(FormatError::Invalid(
                "member count differs from wrapped keys"
            ))
        );
        // A version-1 keyring is refused.
        let mut v1 = bytes.clone();
        v1[4] = 1;
        let (body, _) = v1.split_at(v1.len() - SIG_LEN);
        let sig = owner_sk.sign(body);
        v1.truncate(body.len());
        v1.extend_from_slice(&sig.to_bytes());
        assert_eq!(
            Keyring::open(&v1, &owner_sk.verifying_key(), &owner_x),
            Err(FormatError::Version(1))
        );
    }

    #[test]
    fn forged_counts_are_refused_before_reading_items() {
        let (k, owner_sk, owner_x, _) = sample_keyring(1);
        let key = SecretKey::random();
        let bytes = k.seal(&key, &owner_sk).unwrap();
        // The wrapped-key count (after magic, version, flags, drive,
        // volume, generation and owner card), forged and re-signed by the
        // owner: refused at the count.
        let (body, _) = bytes.split_at(bytes.len() - SIG_LEN);
        let mut forged = body.to_vec();
        forged[74..78].copy_from_slice(&u32::MAX.to_le_bytes());
        let sig = owner_sk.sign(&forged);
        forged.extend_from_slice(&sig.to_bytes());
        assert!(matches!(
            Keyring::open(&forged, &owner_sk.verifying_key(), &owner_x),
            Err(FormatError::Count { count, .. }) if count == u32::MAX as u64
        ));
        // The member and history counts of the encrypted list.
        let list = write_secret_part(&k.members, &k.name, &k.history);
        assert_eq!(read_secret_part(&list).unwrap().0, k.members);
        let history_at = 4 + MEMBER_RECORD_LEN * k.members.len() + 4 + k.name.len();
        for at in [0, history_at] {
            let mut bad = list.to_vec();
            bad[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
            assert!(
                matches!(
                    read_secret_part(&bad),
                    Err(FormatError::Count { count, .. }) if count == u32::MAX as u64
                ),
                "count at {at}"
            );
        }
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(32))]

            #[test]
            fn keyring_round_trips(
                seeds in proptest::collection::vec(any::<[u8; 32]>(), 1..4),
                roles in proptest::collection::vec(1u8..=2, 3),
                name in proptest::collection::vec(any::<u8>(), 0..40),
                generation in 0u32..5,
            ) {
                let owner_sk = SigningKey::from_bytes(&seeds[0]);
                let xs: Vec<StaticSecret> = seeds.iter().map(|s| StaticSecret::from(*s)).collect();
                let mut members = vec![MemberRecord::sample(&owner_sk, &xs[0], 3)];
                for (i, x) in xs.iter().enumerate().skip(1) {
                    let mut m = MemberRecord::sample(&SigningKey::from_bytes(&seeds[i]), x, roles[i]);
                    m.card_id = [i as u8 + 100; 32];
                    members.push(m);
                }
                prop_assume!(members.iter().skip(1).all(|m| m.x25519 != members[0].x25519));
                let k = Keyring {
                    drive_id: [1; 16],
                    volume: [2; 16],
                    generation,
                    owner_card_id: members[0].card_id,
                    members,
                    name,
                    history: (0..generation).map(|g| (g, SecretKey::random())).collect(),
                };
                let key = SecretKey::random();
                let bytes = k.seal(&key, &owner_sk).unwrap();
                for x in &xs {
                    let (got, got_key) = Keyring::open(&bytes, &owner_sk.verifying_key(), x).unwrap();
                    prop_assert_eq!(&got, &k);
                    prop_assert_eq!(&got_key, &key);
                }
                prop_assert_eq!(
                    Keyring::open_with_key(&bytes, &owner_sk.verifying_key(), &key).unwrap(),
                    k
                );
            }
        }
    }

    #[test]
    fn keyring_size_shows_a_member_class_not_the_count() {
        let (k, owner_sk, owner_x, _) = sample_keyring(1);
        let key = SecretKey::random();
        let with = |n: usize| {
            let mut r = k.clone();
            r.members.truncate(1);
            for i in 1..n {
                let mut m = k.members[0].clone();
                m.card_id = [0x40 + i as u8; 32];
                m.role = 1;
                r.members.push(m);
            }
            r.seal(&key, &owner_sk).unwrap()
        };
        let sizes: Vec<usize> = (1..=9).map(|n| with(n).len()).collect();
        assert!(sizes[..4].iter().all(|s| *s == sizes[0]), "{sizes:?}");
        assert!(sizes[4..8].iter().all(|s| *s == sizes[4]), "{sizes:?}");
        assert!(sizes[8] > sizes[4]);
        // The owner still opens each, at its own place; the random places
        // open for nobody.
        for n in [1, 3, 5] {
            let (got, got_key) =
                Keyring::open(&with(n), &owner_sk.verifying_key(), &owner_x).unwrap();
            assert_eq!((got.members.len(), got_key), (n, key.clone()));
        }
    }
}
