//! Work inside a running guest through its agent (exec, tar streams in and out, stat,
//! listening ports), and facts about
//! a VM read from the host (resource use, serial log).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use banger_model::{VmRecord, VmState};
use banger_proto::agent::{ExecRequest, ListeningPort, PathKind};
use banger_proto::agent_client::{AgentClient, TarCount};

use crate::disk;
use crate::error::VmError;
use crate::service::{Live, VmService};

/// Resource use of a VM as the host sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmUsage {
    pub vmm_rss_bytes: Option<u64>,
    pub vmm_cpu_ms: Option<u64>,
    pub disk_allocated_bytes: u64,
    pub disk_size_bytes: u64,
}

impl VmService {
    /// The agent of a running VM, connecting (again) if needed.
    pub(crate) async fn agent_for(&self, vm: &VmRecord) -> Result<Arc<AgentClient>, VmError> {
        let Some(live) = self
            .live_handle(&vm.id)
            .filter(|_| vm.state == VmState::Running)
        else {
            return Err(VmError::Conflict(match vm.state {
                VmState::Deleting => format!(
                    "VM {} is being deleted; `banger vm delete {}` finishes that",
                    vm.name, vm.name
                ),
                VmState::Starting | VmState::Stopping | VmState::Creating => {
                    format!(
                        "VM {} is {}; try again when it is running",
                        vm.name, vm.state
                    )
                }
                _ => format!(
                    "VM {} is {}; start it with `banger vm start {}`",
                    vm.name, vm.state, vm.name
                ),
            }));
        };
        if let Some(agent) = &live.agent
            && !agent.is_closed()
        {
            return Ok(Arc::clone(agent));
        }
        let agent = Arc::new(self.connect_agent(&live.handle).await?);
        self.set_live(
            &vm.id,
            Some(Live {
                handle: live.handle,
                agent: Some(Arc::clone(&agent)),
            }),
        );
        Ok(agent)
    }

    /// Runs `request` in the guest, streaming output; returns the exit code. When `cancel`
    /// completes first, the guest process is signalled and its exit code still returned.
    pub async fn exec(
        &self,
        query: &str,
        request: ExecRequest,
        on_output: impl FnMut(banger_proto::agent::Stream, &[u8]) + Send,
        cancel: impl Future<Output = ()> + Send,
    ) -> Result<i32, VmError> {
        let vm = self.find(query)?;
        if request.argv.is_empty() {
            return Err(VmError::BadRequest("no command given".into()));
        }
        let agent = self.agent_for(&vm).await?;
        Ok(agent.exec_with_cancel(request, on_output, cancel).await?)
    }

    /// Like [`Self::exec`], feeding `stdin` to the command (it sees end of file when
    /// `stdin` ends).
    pub async fn exec_with_stdin<R>(
        &self,
        query: &str,
        request: ExecRequest,
        stdin: R,
        on_output: impl FnMut(banger_proto::agent::Stream, &[u8]) + Send,
        cancel: impl Future<Output = ()> + Send,
    ) -> Result<i32, VmError>
    where
        R: tokio::io::AsyncRead + Unpin + Send,
    {
        let vm = self.find(query)?;
        if request.argv.is_empty() {
            return Err(VmError::BadRequest("no command given".into()));
        }
        let agent = self.agent_for(&vm).await?;
        Ok(agent
            .exec_with_stdin(request, stdin, on_output, cancel)
            .await?)
    }

    /// Like [`Self::exec_with_stdin`] for the requests a newer agent is needed for: a
    /// `tty` (window sizes from `resizes`) or a `user`; stdin is optional.
    pub async fn exec_interactive<R>(
        &self,
        query: &str,
        request: ExecRequest,
        stdin: Option<R>,
        resizes: Option<tokio::sync::watch::Receiver<banger_proto::agent::WindowSize>>,
        on_output: impl FnMut(banger_proto::agent::Stream, &[u8]) + Send,
        cancel: impl Future<Output = ()> + Send,
    ) -> Result<i32, VmError>
    where
        R: tokio::io::AsyncRead + Unpin + Send,
    {
        let vm = self.find(query)?;
        if request.argv.is_empty() {
            return Err(VmError::BadRequest("no command given".into()));
        }
        let agent = self.agent_for(&vm).await?;
        Ok(agent
            .exec_interactive(request, stdin, resizes, on_output, cancel)
            .await?)
    }

    /// What the guest's `path` is (symlinks followed), `None` when nothing is there.
    pub async fn stat(&self, query: &str, path: &str) -> Result<Option<PathKind>, VmError> {
        let vm = self.find(query)?;
        let agent = self.agent_for(&vm).await?;
        Ok(agent.stat(guest_absolute(path)?).await?)
    }

    /// Unpacks the tar stream `tar` into the guest directory `dir` (made first with
    /// `create`), the first component of its names renamed to `rename`. Workspace
    /// imports and `vm cp` both land here.
    pub async fn receive_tar<R>(
        &self,
        query: &str,
        dir: &str,
        rename: Option<&str>,
        create: bool,
        tar: R,
    ) -> Result<TarCount, VmError>
    where
        R: tokio::io::AsyncRead + Unpin + Send,
    {
        let vm = self.find(query)?;
        let agent = self.agent_for(&vm).await?;
        Ok(agent
            .receive_tar(guest_absolute(dir)?, rename, create, tar)
            .await?)
    }

    /// Streams the guest's `path` (or a directory's children, with `contents`) as a tar
    /// to `on_data`.
    pub async fn send_tar(
        &self,
        query: &str,
        path: &str,
        contents: bool,
        on_data: impl FnMut(&[u8]) + Send,
    ) -> Result<TarCount, VmError> {
        let vm = self.find(query)?;
        let agent = self.agent_for(&vm).await?;
        Ok(agent
            .send_tar(guest_absolute(path)?, contents, on_data)
            .await?)
    }

    /// Listening sockets in the guest. Right after a boot this first waits for the guest's
    /// ssh set-up, so sshd is not missing from the list of a VM that was just created.
    pub async fn ports(&self, query: &str) -> Result<(VmRecord, Vec<ListeningPort>), VmError> {
        let vm = self.find(query)?;
        self.ssh_settled(&vm.id).await;
        let agent = self.agent_for(&vm).await?;
        let ports = agent.ports().await?;
        Ok((vm, ports))
    }

    /// Host-side resource use.
    pub fn usage(&self, query: &str) -> Result<(VmRecord, VmUsage), VmError> {
        let vm = self.find(query)?;
        let paths = self.paths(&vm.id);
        let (allocated, size) = disk::usage(&paths.root_disk).unwrap_or((0, 0));
        let (rss, cpu) = match self.live_handle(&vm.id) {
            Some(live) => (
                banger_sys::process::process_rss_bytes(live.handle.pid),
                banger_sys::process::process_cpu_time_ms(live.handle.pid),
            ),
            None => (None, None),
        };
        Ok((
            vm,
            VmUsage {
                vmm_rss_bytes: rss,
                vmm_cpu_ms: cpu,
                disk_allocated_bytes: allocated,
                disk_size_bytes: size,
            },
        ))
    }

    /// The serial console log file of a VM.
    pub fn serial_log(&self, query: &str) -> Result<(VmRecord, PathBuf), VmError> {
        let vm = self.find(query)?;
        let path = self.paths(&vm.id).serial_log;
        Ok((vm, path))
    }
}

/// Guest paths are absolute: the agent has no working directory to resolve them in.
fn guest_absolute(path: &str) -> Result<&str, VmError> {
    if path.starts_with('/') {
        Ok(path)
    } else {
        Err(VmError::BadRequest(format!(
            "{path:?}: guest paths must be absolute"
        )))
    }
}
