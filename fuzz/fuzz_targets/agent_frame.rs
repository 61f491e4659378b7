#![no_main]
//! See banger_fuzz::agent_frame for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| banger_fuzz::agent_frame(data));
