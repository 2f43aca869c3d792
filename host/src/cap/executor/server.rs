//! The `Executor` and `Process` capability servers: what a caller may ask
//! of the process table, checked here, done by [`super::supervise`].

use std::rc::Rc;
use std::sync::Arc;

use anyhow::Result;
use capnp::capability::Rc as CapRc;
use ww_api::{executor, process};

use super::supervise::spawn;
use super::table::{validate_volume, Proc, ProcessSpec, Restart, State};
use crate::cap::context::HostContext;
use crate::cap::grants;
use crate::cap::volume::VolumeKey;
use crate::cap::{invalid, path, text};
use crate::limits::{ARGS_MAX, ARG_BYTES_MAX};

/// `Executor`.
pub struct ExecutorServer {
    ctx: Rc<HostContext>,
}

impl ExecutorServer {
    /// The executor of this host.
    pub fn client(ctx: Rc<HostContext>) -> executor::Client {
        capnp_rpc::new_client(Self { ctx })
    }
}

fn texts(list: capnp::text_list::Reader<'_>, what: &str) -> Result<Vec<String>, capnp::Error> {
    if list.len() > ARGS_MAX {
        return Err(invalid(format!(
            "at most {ARGS_MAX} {what}; got {}",
            list.len()
        )));
    }
    let mut out = Vec::with_capacity(list.len() as usize);
    let mut bytes = 0;
    for item in list.iter() {
        let item = text(item, what)?;
        bytes += item.len();
        if bytes > ARG_BYTES_MAX {
            return Err(invalid(format!("{what} exceed {ARG_BYTES_MAX} bytes")));
        }
        out.push(item);
    }
    Ok(out)
}

impl executor::Server for ExecutorServer {
    async fn spawn(
        self: CapRc<Self>,
        params: executor::SpawnParams,
        mut results: executor::SpawnResults,
    ) -> Result<(), capnp::Error> {
        use ww_api::ww_capnp::spawn_spec::rom::Which as RomWhich;
        use ww_api::ww_capnp::RestartPolicy;
        let spec = params.get()?.get_spec()?;
        let args = texts(spec.get_args()?, "args")?;
        let env = texts(spec.get_env()?, "env entries")?;
        let volume = text(spec.get_volume(), "volume")?;
        let volume = if volume.is_empty() {
            None
        } else {
            validate_volume(&volume).map_err(invalid)?;
            Some(volume)
        };
        let volume_key = match spec.get_volume_key()? {
            [] => None,
            _ if volume.is_none() => {
                return Err(invalid("volumeKey is set but no volume is"));
            }
            bytes => Some(VolumeKey::from_slice(bytes).map_err(invalid)?),
        };
        let grants = grants::parse(spec.get_grants()?)?;
        let full_host = spec.get_host();
        let anchor = text(spec.get_anchor(), "anchor")?;
        let anchor = if anchor.is_empty() {
            None
        } else {
            let components = path::parse(&anchor).map_err(invalid)?;
            if components.is_empty() {
                return Err(invalid(
                    "anchor must name a path below this host, e.g. \"raft/v1\"",
                ));
            }
            Some(components)
        };
        let name = text(spec.get_name(), "name")?;
        let restart = match spec.get_restart()? {
            RestartPolicy::Never => Restart::Never,
            RestartPolicy::OnFailure => Restart::OnFailure,
            RestartPolicy::Always => Restart::Always,
        };
        let rom = match spec.get_rom().which()? {
            RomWhich::Bytes(bytes) => {
                let bytes: Arc<[u8]> = Arc::from(bytes?);
                self.ctx.processes.runtime.roms().load(bytes).await
            }
            RomWhich::Hash(hash) => {
                let hash: [u8; 32] = hash?
                    .try_into()
                    .map_err(|_| invalid("a ROM hash is 32 bytes of blake3"))?;
                self.ctx
                    .processes
                    .rom_by_hash(&blake3::Hash::from_bytes(hash))
                    .await
            }
        }
        .map_err(|err| invalid(format!("cannot spawn: the ROM is not valid: {err:#}")))?;
        let spec = ProcessSpec {
            name: if name.is_empty() {
                rom.hash.to_hex()[..12].to_owned()
            } else {
                name
            },
            rom_hash: rom.hash.to_hex().to_string(),
            args,
            env,
            volume,
            restart,
            anchor,
            host: full_host,
            grants,
            volume_key,
        };
        let proc = spawn(&self.ctx, rom, spec, None)
            .await
            .map_err(|err| invalid(format!("cannot spawn: {err:#}")))?;
        results
            .get()
            .set_process(ProcessServer::client(self.ctx.clone(), proc));
        Ok(())
    }

    async fn ps(
        self: CapRc<Self>,
        _: executor::PsParams,
        mut results: executor::PsResults,
    ) -> Result<(), capnp::Error> {
        let procs: Vec<Rc<Proc>> = self
            .ctx
            .processes
            .table
            .borrow()
            .values()
            .cloned()
            .collect();
        let peer = self.ctx.node.peer_id().to_base58();
        let mut list = results
            .get()
            .init_processes(u32::try_from(procs.len()).unwrap_or(0));
        for (index, proc) in procs.iter().enumerate() {
            let Ok(index) = u32::try_from(index) else {
                break;
            };
            proc.fill_info(&peer, list.reborrow().get(index));
        }
        Ok(())
    }

    async fn kill(
        self: CapRc<Self>,
        params: executor::KillParams,
        _: executor::KillResults,
    ) -> Result<(), capnp::Error> {
        let id = params.get()?.get_id();
        let proc =
            self.ctx.processes.get(id).ok_or_else(|| {
                invalid(format!("no process {id} on this host; `ww ps` lists them"))
            })?;
        proc.kill();
        Ok(())
    }
}

/// `Process`.
pub struct ProcessServer {
    ctx: Rc<HostContext>,
    proc: Rc<Proc>,
}

impl ProcessServer {
    /// A capability to `proc`.
    pub fn client(ctx: Rc<HostContext>, proc: Rc<Proc>) -> process::Client {
        capnp_rpc::new_client(Self { ctx, proc })
    }
}

impl process::Server for ProcessServer {
    async fn id(
        self: CapRc<Self>,
        _: process::IdParams,
        mut results: process::IdResults,
    ) -> Result<(), capnp::Error> {
        results.get().set_id(self.proc.id);
        Ok(())
    }

    async fn wait(
        self: CapRc<Self>,
        _: process::WaitParams,
        mut results: process::WaitResults,
    ) -> Result<(), capnp::Error> {
        let status = self.proc.wait().await;
        let mut exit = results.get().init_exit();
        exit.set_code(status.code);
        exit.set_message(&status.message);
        Ok(())
    }

    async fn kill(
        self: CapRc<Self>,
        _: process::KillParams,
        _: process::KillResults,
    ) -> Result<(), capnp::Error> {
        self.proc.kill();
        Ok(())
    }

    async fn status(
        self: CapRc<Self>,
        _: process::StatusParams,
        mut results: process::StatusResults,
    ) -> Result<(), capnp::Error> {
        self.proc.fill_info(
            &self.ctx.node.peer_id().to_base58(),
            results.get().init_info(),
        );
        Ok(())
    }

    async fn volume_key(
        self: CapRc<Self>,
        _: process::VolumeKeyParams,
        mut results: process::VolumeKeyResults,
    ) -> Result<(), capnp::Error> {
        let key = self
            .proc
            .spec
            .volume_key
            .ok_or_else(|| invalid(format!("process {} has no volume", self.proc.id)))?;
        results.get().set_key(&key.0);
        Ok(())
    }

    async fn bootstrap(
        self: CapRc<Self>,
        _: process::BootstrapParams,
        mut results: process::BootstrapResults,
    ) -> Result<(), capnp::Error> {
        // A `bootstrap` pipelined on `spawn` arrives before the process's
        // first incarnation has started: wait for it (or for its end).
        loop {
            let launched = self.proc.launched.notified();
            let ended = self.proc.ended.notified();
            let exported = self.proc.exported.borrow().clone();
            if let Some(cap) = exported {
                results.get().init_cap().set_as_capability(cap.hook);
                return Ok(());
            }
            if self.proc.state.get() != State::Starting {
                return Err(capnp::Error::disconnected(format!(
                    "process {} is not running ({})",
                    self.proc.id,
                    self.proc.state_name()
                )));
            }
            tokio::select! {
                () = launched => {}
                () = ended => {}
            }
        }
    }
}
