//! Fuzzes `cardfs::fuzzing::signed_box` (see src/fuzzing.rs for the properties).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cardfs::fuzzing::signed_box(data);
});
