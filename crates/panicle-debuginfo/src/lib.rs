//! DWARF address → frames. One set of naming rules for both ends: the SDK
//! symbolizes its own executable at a panic with them, the server applies
//! them to an uploaded debug file for a stripped binary's addresses, and
//! both produce the same frames (names demangled without hashes and
//! qualified, inlined frames expanded, paths made readable, in-app marked),
//! so an event groups alike however it was symbolized.
//!
//! Pure over a file: no process state, no network, no database.

mod classify;
mod debug_file;
mod demangle;
mod inspect;
mod lookup;
mod names;
mod qualify;

use std::sync::Arc;

use panicle_protocol::Frame;

pub use classify::{clean_path, cut_machinery, finish, is_machinery, sdk_source_dir};
pub use debug_file::{DebugFile, symbolicate};
pub use demangle::{clean_symbol, readable_name, symbol_root};
pub use inspect::{
    DebugFileInfo, InspectError, MAX_DEBUG_FILE_BYTES, build_id_of, has_debug_info, has_dwarf,
    inspect, inspect_path,
};
pub use lookup::{ClosureKinds, Lookup};
pub use names::{MAX_FUNCTIONS, NameIndex, is_panic_entry};

/// Most frames a stored event keeps; deeper stacks are cut at the outer end.
pub const MAX_FRAMES: usize = 128;

/// A frame before classification: what the symbolizer knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawFrame {
    pub function: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
    pub column: Option<u32>,
    pub instruction_addr: usize,
    /// The schema frame, made once when the address is first resolved and
    /// cached with it: a later panic through this address only copies it.
    pub finished: Option<Arc<Frame>>,
}

impl RawFrame {
    /// A named frame at line 1 of `file` (unit tests).
    #[cfg(test)]
    pub(crate) fn named(function: &str, file: &str) -> RawFrame {
        RawFrame {
            function: Some(function.into()),
            file: Some(file.into()),
            line: Some(1),
            ..RawFrame::bare(0x1000)
        }
    }

    /// A frame known only by its address.
    pub fn bare(addr: usize) -> RawFrame {
        RawFrame {
            instruction_addr: addr,
            ..RawFrame::default()
        }
    }
}
