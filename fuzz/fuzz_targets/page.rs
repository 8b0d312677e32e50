//! Fuzzes `cardfs::fuzzing::page` (see src/fuzzing.rs for the properties).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cardfs::fuzzing::page(data);
});
