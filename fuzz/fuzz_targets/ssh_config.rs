#![no_main]
//! See banger_fuzz::ssh_config for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| banger_fuzz::ssh_config(data));
