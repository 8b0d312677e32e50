//! Fuzzes `cardfs::fuzzing::checkpoint_root` (see src/fuzzing.rs for the properties).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cardfs::fuzzing::checkpoint_root(data);
});
