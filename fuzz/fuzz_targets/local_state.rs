//! Fuzzes `cardfs::fuzzing::local_state` (see src/fuzzing.rs for the properties).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cardfs::fuzzing::local_state(data);
});
