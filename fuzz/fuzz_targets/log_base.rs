//! Fuzzes `cardfs::fuzzing::log_base` (see src/fuzzing.rs for the properties).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cardfs::fuzzing::log_base(data);
});
