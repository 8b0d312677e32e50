//! Fuzzes `cardfs::fuzzing::keyring_list` (see src/fuzzing.rs for the properties).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cardfs::fuzzing::keyring_list(data);
});
