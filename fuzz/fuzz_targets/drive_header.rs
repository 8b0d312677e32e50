//! Fuzzes `cardfs::fuzzing::drive_header` (see src/fuzzing.rs for the properties).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cardfs::fuzzing::drive_header(data);
});
