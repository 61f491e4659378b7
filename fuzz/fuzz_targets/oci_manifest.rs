#![no_main]
//! See banger_fuzz::oci_manifest for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| banger_fuzz::oci_manifest(data));
