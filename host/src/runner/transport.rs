//! The `ww:rpc/transport` import (`wit/rpc.wit`): the pair of WASI streams
//! that carries a process's capnp-rpc connection to its host, apart from
//! its stdio.

use wasmtime::component::{HasSelf, Linker, Resource};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream};

use super::process::ProcState;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "ww:rpc/rom",
        imports: { default: trappable },
        with: { "wasi:io": wasmtime_wasi::p2::bindings::io },
        require_store_data_send: true,
    });
}

use bindings::ww::rpc::transport;

/// The guest's ends of its connection, until it takes them.
pub(crate) struct Transport(Option<(DynInputStream, DynOutputStream)>);

impl Transport {
    pub(crate) fn new(input: DynInputStream, output: DynOutputStream) -> Self {
        Self(Some((input, output)))
    }
}

impl transport::Host for ProcState {
    fn connect(
        &mut self,
    ) -> wasmtime::Result<(Resource<DynInputStream>, Resource<DynOutputStream>)> {
        let Some((input, output)) = self.transport.0.take() else {
            wasmtime::bail!("ww:rpc/transport.connect called twice: a process has one connection");
        };
        let input = self.table.push(input)?;
        let output = self.table.push(output)?;
        Ok((input, output))
    }
}

/// Adds `ww:rpc/transport` to `linker`.
///
/// # Errors
///
/// When the linker already defines it.
pub(crate) fn add_to_linker(linker: &mut Linker<ProcState>) -> wasmtime::Result<()> {
    transport::add_to_linker::<ProcState, HasSelf<ProcState>>(linker, |state| state)
}
