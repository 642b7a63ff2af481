//! ETDump output: [`Profile::etdump`] writes a profile in ExecuTorch's ETDump format, so
//! ExecuTorch's Python `Inspector` (`executorch.devtools`) reads Ferrite's profiles.
//!
//! The format is ExecuTorch's `devtools/etdump/etdump_schema_flatcc.fbs` (version 0): a
//! size-prefixed FlatBuffer with file identifier `ED00` whose root `ETDump { version, run_data }`
//! holds one `RunData { name, bundled_input_index, allocators, events }` per run, each event an
//! `Event { profile_event }`. This module writes the tables it needs with the `flatbuffers`
//! builder directly (field slots below, from the schema's field order), as ExecuTorch's runtime
//! does for a profiled run:
//!
//! - one `Method::execute` event per run (instruction id -1), as ExecuTorch's method logs;
//! - one event per kernel call and delegate call, named by the operator (`aten::convolution.out`)
//!   or `DELEGATE_CALL`, with the instruction id;
//! - one event per node inside Ferrite's backend, with the delegate call's instruction id and
//!   the string delegate debug id `node <k>: <operator>` — what ExecuTorch's delegates log
//!   through `EventTracer` (the Inspector names delegated events by that id).
//!
//! Times are nanoseconds since the first run started (`Inspector` reads them as nanosecond ticks).

use flatbuffers::{FlatBufferBuilder, WIPOffset};

use crate::profile::Run;
use crate::Profile;

/// The schema version written (`ETDUMP_VERSION` in ExecuTorch's `etdump_flatcc.h`).
pub const ETDUMP_VERSION: u32 = 0;
/// The file identifier.
pub const ETDUMP_IDENTIFIER: &str = "ED00";

/// Vtable slot of a table's `i`-th field.
const fn slot(i: u16) -> flatbuffers::VOffsetT {
    4 + 2 * i
}

// ETDump { version: uint; run_data: [RunData]; }
const ETDUMP_VERSION_FIELD: flatbuffers::VOffsetT = slot(0);
const ETDUMP_RUN_DATA: flatbuffers::VOffsetT = slot(1);
// RunData { name: string; bundled_input_index: int = -1; allocators: [Allocator]; events: [Event]; }
const RUN_NAME: flatbuffers::VOffsetT = slot(0);
const RUN_BUNDLED_INPUT_INDEX: flatbuffers::VOffsetT = slot(1);
const RUN_EVENTS: flatbuffers::VOffsetT = slot(3);
// Event { profile_event: ProfileEvent; allocation_event; debug_event; }
const EVENT_PROFILE_EVENT: flatbuffers::VOffsetT = slot(0);
// ProfileEvent { name: string; chain_index: int; instruction_id: int = -1;
//   delegate_debug_id_int: int = -1; delegate_debug_id_str: string;
//   delegate_debug_metadata: [ubyte]; start_time: ulong; end_time: ulong; }
const PE_NAME: flatbuffers::VOffsetT = slot(0);
const PE_CHAIN_INDEX: flatbuffers::VOffsetT = slot(1);
const PE_INSTRUCTION_ID: flatbuffers::VOffsetT = slot(2);
const PE_DELEGATE_DEBUG_ID_INT: flatbuffers::VOffsetT = slot(3);
const PE_DELEGATE_DEBUG_ID_STR: flatbuffers::VOffsetT = slot(4);
const PE_START_TIME: flatbuffers::VOffsetT = slot(6);
const PE_END_TIME: flatbuffers::VOffsetT = slot(7);

struct Event<'a> {
    name: &'a str,
    instruction: i32,
    /// For a node inside a delegate: `node <k>: <operator>`, its delegate debug id.
    node: Option<String>,
    start_ns: u64,
    end_ns: u64,
}

fn profile_event<'b>(b: &mut FlatBufferBuilder<'b>, e: &Event<'_>) -> WIPOffset<flatbuffers::TableFinishedWIPOffset> {
    let name = b.create_string(e.name);
    let node = e.node.as_deref().map(|n| b.create_string(n));
    let t = b.start_table();
    b.push_slot_always(PE_NAME, name);
    // Every slot written, defaults too: ExecuTorch's reader converts through JSON, which would
    // otherwise leave them out.
    b.push_slot_always(PE_CHAIN_INDEX, 0i32);
    b.push_slot_always(PE_INSTRUCTION_ID, e.instruction);
    b.push_slot_always(PE_DELEGATE_DEBUG_ID_INT, -1i32);
    if let Some(node) = node {
        b.push_slot_always(PE_DELEGATE_DEBUG_ID_STR, node);
    }
    b.push_slot_always(PE_START_TIME, e.start_ns);
    b.push_slot_always(PE_END_TIME, e.end_ns);
    let pe = b.end_table(t);
    let t = b.start_table();
    b.push_slot_always(EVENT_PROFILE_EVENT, pe);
    b.end_table(t)
}

fn index(i: usize) -> i32 {
    i32::try_from(i).unwrap_or(i32::MAX)
}

impl Profile {
    /// The timed runs as an ETDump (`ferrite profile --etdump out.etdp`): bytes ExecuTorch's
    /// `Inspector(etdump_path=...)` reads.
    pub fn etdump(&self) -> Vec<u8> {
        let mut b =
            FlatBufferBuilder::with_capacity(1024 + 96 * self.runs.iter().map(|r| r.events.len()).sum::<usize>());
        let origin = self.runs.first().map(|r| r.start);
        let ns = |t: std::time::Instant| {
            origin.map_or(0, |o| u64::try_from(t.saturating_duration_since(o).as_nanos()).unwrap_or(u64::MAX))
        };
        let mut runs = Vec::with_capacity(self.runs.len());
        for Run { start, duration, events } in &self.runs {
            let mut offsets = Vec::with_capacity(events.len() + 1);
            let run_start = ns(*start);
            offsets.push(profile_event(
                &mut b,
                &Event {
                    name: "Method::execute",
                    instruction: -1,
                    node: None,
                    start_ns: run_start,
                    end_ns: run_start.saturating_add(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)),
                },
            ));
            for e in events {
                let start_ns = ns(e.start);
                let name = if e.node.is_none() && e.name.starts_with("delegate ") { "DELEGATE_CALL" } else { &e.name };
                offsets.push(profile_event(
                    &mut b,
                    &Event {
                        name,
                        instruction: index(e.instruction),
                        node: e.node.map(|k| format!("node {k}: {}", e.name)),
                        start_ns,
                        end_ns: start_ns.saturating_add(u64::try_from(e.duration.as_nanos()).unwrap_or(u64::MAX)),
                    },
                ));
            }
            let events = b.create_vector(&offsets);
            let name = b.create_string(&self.method);
            let t = b.start_table();
            b.push_slot_always(RUN_NAME, name);
            b.push_slot_always(RUN_BUNDLED_INPUT_INDEX, -1i32);
            b.push_slot_always(RUN_EVENTS, events);
            runs.push(b.end_table(t));
        }
        let run_data = b.create_vector(&runs);
        let t = b.start_table();
        b.push_slot_always(ETDUMP_VERSION_FIELD, ETDUMP_VERSION);
        b.push_slot_always(ETDUMP_RUN_DATA, run_data);
        let root = b.end_table(t);
        b.finish_size_prefixed(root, Some(ETDUMP_IDENTIFIER));
        b.finished_data().to_vec()
    }
}
