//! A ROM with many linear memories that grows and touches every one of
//! them: the memory bomb of the budget tests.
//!
//! Rust ROMs get one linear memory, so this ROM is assembled here with
//! `wasm-encoder`: a WASI command component (it exports `wasi:cli/run`, and
//! imports nothing) whose core module declares `memories` memories of zero
//! pages. `run` grows each in turn by `step_mib` and writes a byte to every
//! 4 KiB of the growth, so what it is granted is resident, not only
//! reserved. A growth the host refuses as past the spec's own rules makes
//! `memory.grow` return -1 and `run` returns an error; a host that grants
//! every growth lets `run` return `ok` having touched `memories × step_mib`.
//! Only a host's own budget stops it part way, with a trap.

use wasm_encoder::{
    Alias, CanonicalFunctionSection, CodeSection, Component, ComponentAliasSection,
    ComponentExportKind, ComponentExportSection, ComponentInstanceSection, ComponentTypeSection,
    ComponentValType, ExportKind, ExportSection, Function, FunctionSection, InstanceSection,
    Instruction, MemArg, MemorySection, MemoryType, Module, ModuleSection, TypeSection, ValType,
};

/// Bytes of one WebAssembly page.
const PAGE_BYTES: u32 = 64 * 1024;
/// Bytes between two touched bytes: an OS page, so every one becomes
/// resident.
const TOUCH_STRIDE_BYTES: i32 = 4096;

/// The component's bytes.
///
/// # Panics
///
/// When `step_mib` is 0 or its bytes do not fit an `i32` offset.
#[must_use]
pub fn component(memories: u32, step_mib: u32) -> Vec<u8> {
    assert!(step_mib > 0 && step_mib < 2048, "step_mib {step_mib}");
    let mut component = Component::new();
    component.section(&ModuleSection(&core_module(memories, step_mib)));

    let mut instances = InstanceSection::new();
    instances.instantiate(0, Vec::<(&str, wasm_encoder::ModuleArg)>::new());
    component.section(&instances);

    let mut aliases = ComponentAliasSection::new();
    aliases.alias(Alias::CoreInstanceExport {
        instance: 0,
        kind: ExportKind::Func,
        name: "run",
    });
    component.section(&aliases);

    // Type 0: `result` with no payloads; type 1: `func() -> result`.
    let mut types = ComponentTypeSection::new();
    types.defined_type().result(None, None);
    types
        .function()
        .params(Vec::<(&str, ComponentValType)>::new())
        .result(Some(ComponentValType::Type(0)));
    component.section(&types);

    let mut canon = CanonicalFunctionSection::new();
    canon.lift(0, 1, []);
    component.section(&canon);

    let mut exported = ComponentInstanceSection::new();
    exported.export_items([("run", ComponentExportKind::Func, 0)]);
    component.section(&exported);

    let mut exports = ComponentExportSection::new();
    exports.export("wasi:cli/run@0.2.0", ComponentExportKind::Instance, 0, None);
    component.section(&exports);
    component.finish()
}

/// The core module: `memories` memories and `run: () -> i32` (0: ok).
fn core_module(memories: u32, step_mib: u32) -> Module {
    let step_pages = step_mib * 1024 * 1024 / PAGE_BYTES;
    let step_bytes = i32::try_from(step_mib * 1024 * 1024).expect("the step fits an i32");

    let mut types = TypeSection::new();
    types.ty().function([], [ValType::I32]);
    let mut functions = FunctionSection::new();
    functions.function(0);
    let mut memory_section = MemorySection::new();
    for _ in 0..memories {
        memory_section.memory(MemoryType {
            minimum: 0,
            maximum: None,
            memory64: false,
            shared: false,
            page_size_log2: None,
        });
    }
    let mut exports = ExportSection::new();
    exports.export("run", ExportKind::Func, 0);

    // One local: the offset being touched.
    let mut run = Function::new([(1, ValType::I32)]);
    for memory in 0..memories {
        let step = i32::try_from(step_pages).expect("pages fit an i32");
        run.instruction(&Instruction::I32Const(step))
            .instruction(&Instruction::MemoryGrow(memory))
            .instruction(&Instruction::I32Const(-1))
            .instruction(&Instruction::I32Eq)
            .instruction(&Instruction::If(wasm_encoder::BlockType::Empty))
            .instruction(&Instruction::I32Const(1))
            .instruction(&Instruction::Return)
            .instruction(&Instruction::End)
            .instruction(&Instruction::I32Const(0))
            .instruction(&Instruction::LocalSet(0))
            .instruction(&Instruction::Loop(wasm_encoder::BlockType::Empty))
            .instruction(&Instruction::LocalGet(0))
            .instruction(&Instruction::I32Const(1))
            .instruction(&Instruction::I32Store8(MemArg {
                offset: 0,
                align: 0,
                memory_index: memory,
            }))
            .instruction(&Instruction::LocalGet(0))
            .instruction(&Instruction::I32Const(TOUCH_STRIDE_BYTES))
            .instruction(&Instruction::I32Add)
            .instruction(&Instruction::LocalTee(0))
            .instruction(&Instruction::I32Const(step_bytes))
            .instruction(&Instruction::I32LtU)
            .instruction(&Instruction::BrIf(0))
            .instruction(&Instruction::End);
    }
    run.instruction(&Instruction::I32Const(0))
        .instruction(&Instruction::End);
    let mut code = CodeSection::new();
    code.function(&run);

    let mut module = Module::new();
    module
        .section(&types)
        .section(&functions)
        .section(&memory_section)
        .section(&exports)
        .section(&code);
    module
}
