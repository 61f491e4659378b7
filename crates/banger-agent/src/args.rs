//! args: the command line, parsed without touching the system. With no channel flag the
//! agent serves every channel it can find (the `banger.agent` virtio-serial port and, when
//! the guest has `/dev/vsock`, vsock port 52); flags pick channels explicitly.

use std::fmt;
use std::path::PathBuf;

use banger_proto::agent::{DEFAULT_VSOCK_PORT, SERIAL_PORT_NAME};

pub const USAGE: &str = "\
usage: banger-agent [--port PATH] [--unix PATH] [--vsock PORT]

Serves banger's host <-> guest agent protocol (JSON lines) until killed.

  --port PATH    use this virtio-serial device instead of looking up the
                 port named banger.agent under /sys/class/virtio-ports
  --unix PATH    connect to a Unix socket instead (host-side tests); the agent
                 reconnects whenever the connection ends
  --vsock PORT   listen on this AF_VSOCK port (default channel: 52 when
                 /dev/vsock exists)
  -h, --help     show this help
  -V, --version  show the version

Without channel flags the agent serves the banger.agent port and, when
/dev/vsock exists, vsock port 52.";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Serve(Vec<ChannelSpec>),
    Help,
    Version,
}

/// One channel the agent serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelSpec {
    /// A virtio-serial port found by its name (sysfs, or udev's symlink).
    SerialNamed(String),
    /// A virtio-serial device at a fixed path.
    SerialPath(PathBuf),
    /// A Unix socket the agent connects to, playing the guest side of QEMU's chardev.
    Unix(PathBuf),
    /// An AF_VSOCK listener; `when_device_exists` waits for `/dev/vsock` first.
    Vsock { port: u32, when_device_exists: bool },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgError(String);

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub fn parse_args(args: &[String]) -> Result<Command, ArgError> {
    let mut channels = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let (flag, inline_value) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = || {
            inline_value
                .clone()
                .or_else(|| rest.next().cloned())
                .filter(|value| !value.is_empty())
                .ok_or_else(|| ArgError(format!("{flag} needs a value")))
        };
        match flag {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--port" => channels.push(ChannelSpec::SerialPath(value()?.into())),
            "--unix" => channels.push(ChannelSpec::Unix(value()?.into())),
            "--vsock" => {
                let text = value()?;
                let port = text
                    .parse()
                    .map_err(|_| ArgError(format!("--vsock: {text:?} is not a port number")))?;
                channels.push(ChannelSpec::Vsock {
                    port,
                    when_device_exists: false,
                });
            }
            other => return Err(ArgError(format!("unknown argument {other:?}"))),
        }
    }
    if channels.is_empty() {
        channels = vec![
            ChannelSpec::SerialNamed(SERIAL_PORT_NAME.to_owned()),
            ChannelSpec::Vsock {
                port: DEFAULT_VSOCK_PORT,
                when_device_exists: true,
            },
        ];
    }
    Ok(Command::Serve(channels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        let default = Command::Serve(vec![
            ChannelSpec::SerialNamed("banger.agent".into()),
            ChannelSpec::Vsock {
                port: 52,
                when_device_exists: true,
            },
        ]);
        let table: Vec<(&[&str], Result<Command, &str>)> = vec![
            (&[], Ok(default)),
            (
                &["--unix", "/tmp/a.sock"],
                Ok(Command::Serve(vec![ChannelSpec::Unix(
                    "/tmp/a.sock".into(),
                )])),
            ),
            (
                &["--port=/dev/vport0p1", "--vsock", "1024"],
                Ok(Command::Serve(vec![
                    ChannelSpec::SerialPath("/dev/vport0p1".into()),
                    ChannelSpec::Vsock {
                        port: 1024,
                        when_device_exists: false,
                    },
                ])),
            ),
            (&["--unix", "x", "--help"], Ok(Command::Help)),
            (&["-V"], Ok(Command::Version)),
            (&["--unix"], Err("--unix needs a value")),
            (&["--port="], Err("--port needs a value")),
            (
                &["--vsock", "x"],
                Err("--vsock: \"x\" is not a port number"),
            ),
            (
                &["--vsock", "99999999999"],
                Err("--vsock: \"99999999999\" is not a port number"),
            ),
            (&["serve"], Err("unknown argument \"serve\"")),
            (&["-x=1"], Err("unknown argument \"-x=1\"")),
        ];
        for (args, want) in table {
            let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
            let got = parse_args(&args).map_err(|error| error.to_string());
            assert_eq!(got, want.map_err(str::to_owned), "{args:?}");
        }
    }
}
