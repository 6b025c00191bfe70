//! A debug file opened for lookups, and the server's symbolication of an
//! event's frames that arrived as bare addresses (a stripped binary, or an
//! SDK told to leave symbolization to the server).

use std::path::Path;
use std::sync::{Arc, Mutex};

use panicle_protocol::Frame;

use super::classify::{cut_machinery, finish};
use super::inspect::{DebugFileInfo, InspectError, inspect_path};
use super::lookup::{ClosureKinds, Lookup};
use super::names::NameIndex;
use super::{MAX_FRAMES, RawFrame};

/// One module's DWARF and symbol table, loaded.
pub struct DebugFile {
    pub info: DebugFileInfo,
    loader: Mutex<addr2line::Loader>,
    names: NameIndex,
    closure_kinds: ClosureKinds,
}

impl DebugFile {
    /// Opens (and checks) the ELF at `path`.
    pub fn open(path: &Path) -> Result<DebugFile, InspectError> {
        let info = inspect_path(path)?;
        let loader = addr2line::Loader::new(path)
            .map_err(|e| InspectError::Truncated(format!("DWARF ({e})")))?;
        Ok(DebugFile {
            info,
            loader: Mutex::new(loader),
            names: NameIndex::read(path),
            closure_kinds: ClosureKinds::default(),
        })
    }

    /// The inline chain at a return address's module offset, innermost first.
    pub fn frames_at_return(&self, module_offset: u64, addr: usize) -> Vec<RawFrame> {
        let Ok(loader) = self.loader.lock() else {
            return vec![RawFrame::bare(addr)];
        };
        Lookup {
            loader: &loader,
            names: &self.names,
            closure_kinds: &self.closure_kinds,
        }
        // A return address points after the call: look up the call itself.
        .frames_at(module_offset.saturating_sub(1), addr)
    }
}

/// An event's frames with every bare frame (a `build_id` and a
/// `module_offset`, no function) whose debug file `debug_file` finds
/// symbolized, inlined frames expanded. When no frame of the event was
/// named, the panic machinery on top is cut the way the SDK cuts it, so the
/// event reads and groups as it would have, symbolized at the panic.
/// `None` when nothing could be symbolized.
pub fn symbolicate(
    frames: &[Frame],
    debug_file: &mut dyn FnMut(&str) -> Option<Arc<DebugFile>>,
) -> Option<Vec<Frame>> {
    /// A frame as it will be: kept as it came, or resolved from its address.
    enum Slot {
        Kept(Frame),
        Resolved { raw: RawFrame, origin: Frame },
    }
    let all_bare = frames.iter().all(|f| f.function.is_none());
    let mut slots: Vec<Slot> = Vec::with_capacity(frames.len());
    let mut resolved_any = false;
    for frame in frames {
        let found = match (&frame.function, &frame.build_id, &frame.module_offset) {
            (None, Some(id), Some(offset)) => parse_hex(offset).zip(debug_file(id)),
            _ => None,
        };
        let Some((offset, file)) = found else {
            slots.push(Slot::Kept(frame.clone()));
            continue;
        };
        let addr = frame
            .instruction_addr
            .as_deref()
            .and_then(parse_hex)
            .unwrap_or(0) as usize;
        let chain = file.frames_at_return(offset, addr);
        resolved_any |= chain.iter().any(|f| f.function.is_some());
        for raw in chain {
            slots.push(Slot::Resolved {
                raw,
                origin: frame.clone(),
            });
        }
    }
    if !resolved_any {
        return None;
    }
    let start = if all_bare {
        let raw: Vec<RawFrame> = slots
            .iter()
            .map(|s| match s {
                Slot::Resolved { raw, .. } => raw.clone(),
                Slot::Kept(_) => RawFrame::default(),
            })
            .collect();
        cut_machinery(&raw)
    } else {
        0
    };
    Some(
        slots
            .into_iter()
            .skip(start)
            .take(MAX_FRAMES)
            .map(|slot| match slot {
                Slot::Kept(frame) => frame,
                Slot::Resolved { raw, origin } => Frame {
                    // The address, build-id and offset as the process saw them.
                    instruction_addr: origin.instruction_addr,
                    build_id: origin.build_id,
                    module_offset: origin.module_offset,
                    ..finish(&raw, None, None)
                },
            })
            .collect(),
    )
}

fn parse_hex(s: &str) -> Option<u64> {
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    u64::from_str_radix(digits, 16).ok()
}
