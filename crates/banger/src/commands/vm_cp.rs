//! `vm cp`: files and directories between this host and a VM, `docker cp` style, as a
//! tar stream through the guest agent (no network needed). The host side is packed or
//! unpacked here, in the user's working directory, with `banger-tar` (modes kept,
//! symlinks as symlinks, nothing from the guest written outside the destination); the
//! daemon resolves the guest side. `-` is a tar stream on stdin or stdout.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use banger_api::methods::{
    CopyOutput, CopySourceKind, VmCopyIn, VmCopyInParams, VmCopyOut, VmCopyOutParams, VmPathParams,
    VmStat,
};
use banger_api::{Event, OutputStream};
use banger_model::copy::{CopySource, PathKind, copy_target, parent_of};
use clap::Args;

use crate::cli::JsonFlag;
use crate::connect::Ctx;
use crate::errors::CliError;
use crate::render;
use crate::render::records::misc::CopyJson;

/// Copy files and directories between this host and a VM
#[derive(Debug, Args)]
#[command(
    long_about = "Copy a file or a directory (recursively) between this host and a running \
VM, like `docker cp`. One side is `VM:PATH` (an absolute guest path), the other a host path \
or `-`.

Modes and modification times are kept, symlinks are copied as symlinks (never followed), \
and files belong to root in the guest and to you on the host. The copy goes through the \
guest agent, so it works without a network.

Where it lands: into DST when DST is an existing directory; over DST when DST is a file \
and SRC a file; as DST when DST does not exist but its parent does. `SRC/.` copies a \
directory's contents. `-` as SRC reads a tar stream from stdin into the guest directory \
DST; `-` as DST writes SRC to stdout as a tar stream.

What comes from the guest is checked entry by entry: a name with `..`, an absolute name, \
an entry that would be written through a symlink, or a hard link to outside the \
destination is refused, naming it.",
    after_help = "\
Examples:
  banger vm cp ./notes.txt web:/tmp/            Into the guest's /tmp
  banger vm cp ./src web:/root/src              A directory, recursively
  banger vm cp web:/var/log/app.log .           Back to the host
  banger vm cp web:/root/out/. ./results        A directory's contents
  tar -c dir | banger vm cp - web:/root         A tar stream from stdin
  banger vm cp web:/etc - | tar -t              A tar stream to stdout"
)]
pub struct CpArgs {
    /// Source: a host path, `VM:PATH`, or `-` (a tar stream on stdin)
    #[arg(value_name = "SRC")]
    pub src: String,
    /// Destination: a host path, `VM:PATH`, or `-` (a tar stream on stdout)
    #[arg(value_name = "DST")]
    pub dst: String,
    #[command(flatten)]
    pub output: JsonFlag,
}

/// One side of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Side {
    Guest { vm: String, path: String },
    Host(PathBuf),
    Stdio,
}

/// `VM:PATH` when the part before the first `:` is non-empty and has no `/` (so
/// `./a:b` stays a host path); `-` is stdin/stdout.
fn side(text: &str) -> Side {
    if text == "-" {
        return Side::Stdio;
    }
    match text.split_once(':') {
        Some((vm, path)) if !vm.is_empty() && !vm.contains('/') => Side::Guest {
            vm: vm.to_string(),
            path: path.to_string(),
        },
        _ => Side::Host(PathBuf::from(text)),
    }
}

/// `vm cp`.
pub async fn cp(ctx: &Ctx, args: CpArgs) -> Result<(), CliError> {
    let usage = |message: &str| CliError::Usage {
        message: message.to_string(),
        hint: Some("write `banger vm cp SRC VM:DST` or `banger vm cp VM:SRC DST`".to_string()),
    };
    let output = match (side(&args.src), side(&args.dst)) {
        (Side::Guest { .. }, Side::Guest { .. }) => {
            return Err(usage("copying from one VM to another is not supported"));
        }
        (Side::Host(_) | Side::Stdio, Side::Host(_) | Side::Stdio) => {
            return Err(usage("one of SRC and DST must be VM:PATH"));
        }
        (source, Side::Guest { vm, path }) => copy_in(ctx, source, vm, path).await?,
        (Side::Guest { vm, path }, destination) => copy_out(ctx, vm, path, destination).await?,
    };
    if args.output.json {
        return render::stdout(&render::json(&CopyJson::from(&output))?);
    }
    if args.dst != "-" {
        render::note(&format!(
            "copied {} ({} entries, {} bytes)",
            output.path, output.entries, output.bytes
        ));
    }
    Ok(())
}

fn guest_path(path: &str) -> Result<(), CliError> {
    if path.starts_with('/') {
        Ok(())
    } else {
        Err(CliError::Usage {
            message: format!("guest path {path:?} is not absolute"),
            hint: Some("guest paths start with `/`, e.g. web:/root/file".to_string()),
        })
    }
}

/// `SRC/.`: a directory's contents rather than the directory.
fn contents_form(path: &str) -> bool {
    path.ends_with("/.") || path == "."
}

async fn copy_in(ctx: &Ctx, source: Side, vm: String, dst: String) -> Result<CopyOutput, CliError> {
    guest_path(&dst)?;
    let mut daemon = ctx.connect().await?;
    let Side::Host(src) = source else {
        let params = VmCopyInParams {
            vm,
            dst,
            source: CopySourceKind::Stream,
        };
        return daemon
            .call_with_input::<VmCopyIn, _>(&params, tokio::io::stdin(), &mut |_| {})
            .await;
    };
    let meta = fs_err::symlink_metadata(&src).map_err(local)?;
    let contents = contents_form(&src.to_string_lossy());
    let (kind, name) = if contents {
        if !src.is_dir() {
            return Err(local(std::io::Error::other(format!(
                "{}: not a directory",
                src.display()
            ))));
        }
        (CopySourceKind::Contents, None)
    } else {
        let name = match src.file_name() {
            Some(name) => name.to_os_string(),
            // `..` or `/`: name the copy after what it is.
            None => fs_err::canonicalize(&src)
                .map_err(local)?
                .file_name()
                .map_or_else(|| OsString::from("root"), |name| name.to_os_string()),
        };
        let kind = if meta.is_dir() {
            CopySourceKind::Directory
        } else {
            CopySourceKind::File
        };
        (kind, Some(name))
    };
    let (sender, receiver) = tokio::net::unix::pipe::pipe().map_err(local)?;
    let writer = std::fs::File::from(sender.into_blocking_fd().map_err(local)?);
    let packer = std::thread::spawn(move || {
        let name = name.map(|name| name.to_string_lossy().into_owned());
        banger_tar::pack(&src, name.as_deref(), std::io::BufWriter::new(writer))
    });
    let params = VmCopyInParams {
        vm,
        dst,
        source: kind,
    };
    let result = daemon
        .call_with_input::<VmCopyIn, _>(&params, receiver, &mut |_| {})
        .await;
    let packed = packer
        .join()
        .map_err(|_| local(std::io::Error::other("the tar packer panicked")))?;
    match (result, packed) {
        // The daemon refused and closed the stream while the packer was still writing:
        // the refusal is the cause, the broken pipe only its echo.
        (Err(refused), Err(error)) if is_broken_pipe(&error) => Err(refused),
        // A packing failure is the cause; the daemon only saw a short stream.
        (_, Err(error)) => Err(CliError::Local(
            anyhow::Error::new(error).context("cannot read the source"),
        )),
        (result, Ok(_)) => result,
    }
}

/// True when an error was caused, somewhere down its chain, by writing to a closed pipe.
fn is_broken_pipe(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        if current
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        {
            return true;
        }
        cause = current.source();
    }
    false
}

async fn copy_out(
    ctx: &Ctx,
    vm: String,
    src: String,
    destination: Side,
) -> Result<CopyOutput, CliError> {
    guest_path(&src)?;
    let contents = contents_form(&src);
    let mut daemon = ctx.connect().await?;
    let params = VmCopyOutParams {
        vm: vm.clone(),
        src: src.clone(),
        contents,
    };
    let Side::Host(dst) = destination else {
        let mut stdout = std::io::stdout().lock();
        let mut failed: Option<std::io::Error> = None;
        let output = daemon
            .call::<VmCopyOut>(&params, &mut |event| {
                if let Event::Output {
                    stream: OutputStream::Stdout,
                    data,
                } = event
                    && failed.is_none()
                    && let Err(error) = stdout.write_all(&data)
                {
                    failed = Some(error);
                }
            })
            .await?;
        return match failed.or_else(|| stdout.flush().err()) {
            Some(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(local(error)),
            _ => Ok(output),
        };
    };
    let found = daemon
        .ask::<VmStat>(&VmPathParams {
            vm: vm.clone(),
            path: src.clone(),
        })
        .await?;
    let source = match found.kind.as_deref() {
        None => {
            return Err(CliError::Failed {
                message: format!("{vm}:{src}: no such file or directory in the guest"),
                hint: Some(format!(
                    "`banger vm exec {vm} -- ls -la DIR` shows what is there"
                )),
            });
        }
        Some(_) if contents => CopySource::Contents,
        Some("directory") => CopySource::Directory,
        Some(_) => CopySource::File,
    };
    let dst_kind = host_kind(&dst);
    let parent_kind = host_kind(&parent_of(&dst));
    let target = copy_target(&dst, dst_kind, parent_kind, source)
        .map_err(|error| CliError::Local(anyhow::Error::new(error)))?;
    if target.create {
        fs_err::create_dir_all(&target.dir).map_err(local)?;
    }
    let (reader, mut writer) = std::io::pipe().map_err(local)?;
    let dir = target.dir.clone();
    let rename = target.rename.clone();
    let unpacker = std::thread::spawn(move || banger_tar::unpack(reader, &dir, rename.as_deref()));
    let mut broken = false;
    let result = daemon
        .call::<VmCopyOut>(&params, &mut |event| {
            if let Event::Output {
                stream: OutputStream::Stdout,
                data,
            } = event
                && !broken
            {
                // The unpacker stopped (it refused an entry): its error says why.
                broken = writer.write_all(&data).is_err();
            }
        })
        .await;
    drop(writer);
    let unpacked = unpacker
        .join()
        .map_err(|_| local(std::io::Error::other("the tar unpacker panicked")))?;
    match (result, unpacked) {
        (_, Err(error)) => Err(CliError::Local(
            anyhow::Error::new(error).context(format!("refusing what {vm} sent")),
        )),
        (Err(error), Ok(_)) => Err(error),
        (Ok(mut output), Ok(_)) => {
            output.path = match &target.rename {
                Some(name) => target.dir.join(name),
                None => target.dir,
            }
            .display()
            .to_string();
            Ok(output)
        }
    }
}

fn host_kind(path: &Path) -> Option<PathKind> {
    let meta = std::fs::metadata(path).ok()?;
    Some(if meta.is_dir() {
        PathKind::Directory
    } else if meta.is_file() {
        PathKind::File
    } else {
        PathKind::Other
    })
}

fn local(error: std::io::Error) -> CliError {
    CliError::Local(anyhow::Error::new(error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_pipe_is_found_down_the_chain() {
        let pipe = banger_tar::TarError::Io {
            path: "/src/f".into(),
            source: std::io::Error::from(std::io::ErrorKind::BrokenPipe),
        };
        assert!(is_broken_pipe(&pipe));
        let unreadable = banger_tar::TarError::Io {
            path: "/src/f".into(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        assert!(!is_broken_pipe(&unreadable));
    }

    #[test]
    fn sides_are_told_apart_like_docker_cp() {
        let guest = |vm: &str, path: &str| Side::Guest {
            vm: vm.into(),
            path: path.into(),
        };
        let table = [
            ("web:/tmp/x", guest("web", "/tmp/x")),
            ("web:", guest("web", "")),
            ("-", Side::Stdio),
            ("./a:b", Side::Host("./a:b".into())),
            ("/abs:colon", Side::Host("/abs:colon".into())),
            (":x", Side::Host(":x".into())),
            ("plain", Side::Host("plain".into())),
        ];
        for (text, want) in table {
            assert_eq!(side(text), want, "{text}");
        }
    }
}
