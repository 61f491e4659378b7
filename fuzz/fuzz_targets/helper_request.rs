#![no_main]
//! See banger_fuzz::helper_request for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| banger_fuzz::helper_request(data));
