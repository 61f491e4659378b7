#![no_main]
//! See banger_fuzz::git_patch for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| banger_fuzz::git_patch(data));
