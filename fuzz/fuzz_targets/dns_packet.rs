#![no_main]
//! See banger_fuzz::dns_packet for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| banger_fuzz::dns_packet(data));
