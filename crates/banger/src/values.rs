//! Value parsers clap runs on arguments, so bad input is a usage error (exit 2) before
//! any request is sent. The rules themselves are `banger-model`'s (the daemon applies
//! the same ones again); this file only adapts them to clap and to the API's units.

use banger_model::spec::{SpecLimits, VmSpec};
use banger_model::{ByteSize, GuestSignal, ResourceName, VmName};

/// A new VM's name (`--name`), checked against the VM name rule.
pub fn vm_name(input: &str) -> Result<String, String> {
    VmName::parse(input)
        .map(VmName::into_string)
        .map_err(|err| err.to_string())
}

/// One `--allow HOST[:PORT]` rule, normalised (`Example.COM.` -> `example.com`).
pub fn allow_rule(input: &str) -> Result<String, String> {
    input
        .parse::<banger_model::AllowRule>()
        .map(|rule| rule.to_string())
        .map_err(|err| err.to_string())
}

/// `-p` / `vm port publish`: a published port, in its canonical spelling.
pub fn port_spec(input: &str) -> Result<String, String> {
    banger_model::PortSpec::parse(input)
        .map(|spec| spec.to_string())
        .map_err(|err| err.to_string())
}

/// `vm port unpublish`: the host side of a published port (or a whole spec).
pub fn port_side(input: &str) -> Result<String, String> {
    banger_model::HostSide::parse(input)
        .map(|_| input.to_string())
        .map_err(|err| err.to_string())
}

/// A new image's name (`image import/register/promote --name`).
pub fn image_name(input: &str) -> Result<String, String> {
    ResourceName::parse_as("image name", input)
        .map(ResourceName::into_string)
        .map_err(|err| err.to_string())
}

/// `--memory`: a size (bare number = MiB) meeting the VM spec rules, in MiB for the API.
pub fn memory_mib(input: &str) -> Result<u64, String> {
    let memory = ByteSize::parse(input).map_err(|err| err.to_string())?;
    check_spec(VmSpec {
        memory,
        ..VmSpec::default()
    })?;
    Ok(memory.as_mib())
}

/// `--disk`: like `--memory`, with the disk's rules.
pub fn disk_mib(input: &str) -> Result<u64, String> {
    let disk = ByteSize::parse(input).map_err(|err| err.to_string())?;
    check_spec(VmSpec {
        disk,
        ..VmSpec::default()
    })?;
    Ok(disk.as_mib())
}

/// Validates a spec in which only one field differs from the (valid) default, so any
/// error is about that field. The host limits (vCPUs, memory) are the daemon's to know;
/// clap checks vCPUs ≥ 1.
fn check_spec(spec: VmSpec) -> Result<(), String> {
    spec.validate(&SpecLimits::UNBOUNDED)
        .map_err(|err| err.to_string())
}

/// `vm kill --signal`: a signal name or number, sent to the daemon as its bare name.
pub fn signal(input: &str) -> Result<String, String> {
    GuestSignal::parse(input)
        .map(|signal| signal.name().to_string())
        .map_err(|err| err.to_string())
}

/// `vm exec -e KEY=VALUE`.
pub fn env_pair(input: &str) -> Result<(String, String), String> {
    match input.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {input:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_names() {
        let cases = [
            ("web", Ok("web")),
            ("web-1", Ok("web-1")),
            ("Bad_Name", Err("VM name")),
            ("-web", Err("must not start")),
            ("", Err("empty")),
        ];
        for (input, expected) in cases {
            match (vm_name(input), expected) {
                (Ok(got), Ok(want)) => assert_eq!(got, want),
                (Err(got), Err(want)) => assert!(got.contains(want), "{input}: {got}"),
                (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
    }

    type SizeParser = fn(&str) -> Result<u64, String>;

    #[test]
    fn sizes_become_mib() {
        let cases: &[(&str, SizeParser, Result<u64, &str>)] = &[
            ("512", memory_mib, Ok(512)),
            ("2GiB", memory_mib, Ok(2048)),
            ("1.5G", memory_mib, Ok(1536)),
            ("0", memory_mib, Err("zero")),
            ("64MiB", memory_mib, Err("at least")),
            ("1000000KiB", memory_mib, Err("whole number of MiB")),
            ("lots", memory_mib, Err("not a number")),
            ("8GiB", disk_mib, Ok(8192)),
            (
                "512",
                disk_mib,
                Err("disk is 512MiB; it must be at least 1GiB"),
            ),
        ];
        for (input, parse, expected) in cases {
            match (parse(input), expected) {
                (Ok(got), Ok(want)) => assert_eq!(got, *want, "{input}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "{input}: {got}"),
                (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn signals_and_env_pairs() {
        assert_eq!(signal("sigterm").as_deref(), Ok("TERM"));
        assert_eq!(signal("9").as_deref(), Ok("KILL"));
        assert!(signal("BOGUS").is_err());
        assert_eq!(env_pair("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert_eq!(env_pair("A="), Ok(("A".into(), String::new())));
        assert!(env_pair("=x").is_err());
        assert!(env_pair("novalue").is_err());
    }
}
