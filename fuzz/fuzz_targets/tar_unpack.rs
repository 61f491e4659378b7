#![no_main]
//! See banger_fuzz::tar_unpack for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| banger_fuzz::tar_unpack(data));
