//! Addresses another process captured (a crash record left by a signal
//! handler): symbolized here when that process ran this very executable
//! (same build-id), shipped bare with their build-id and module offset
//! otherwise, for a server to symbolize later.

use panicle_protocol::Frame;

use super::classify::classify;
use super::{MAX_FRAMES, resolve};
use crate::options::Options;

/// One address of another process, and what is known of it there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignAddress {
    /// The address in the process that captured it.
    pub addr: usize,
    /// The same code's address in this process (its module is loaded here
    /// with the same build-id), to symbolize with this process's debug info.
    pub local: Option<usize>,
    /// True for the interrupted instruction itself (not a return address):
    /// looked up at the address, not the byte before it.
    pub exact: bool,
    pub build_id: Option<String>,
    pub module_offset: Option<usize>,
}

/// Schema frames, innermost first, inlined frames expanded; each carries
/// the other process's address, build-id and module offset.
pub fn foreign_frames(addresses: &[ForeignAddress], options: &Options) -> Vec<Frame> {
    let mut out = Vec::new();
    for a in addresses {
        let origin = |mut frame: Frame| {
            frame.instruction_addr = Some(format!("{:#x}", a.addr));
            frame.build_id = a.build_id.clone();
            frame.module_offset = a.module_offset.map(|o| format!("{o:#x}"));
            frame
        };
        match a.local {
            Some(local) => {
                // The resolver looks up the byte before a return address:
                // the interrupted instruction is looked up at itself.
                let probe = if a.exact {
                    local.wrapping_add(1)
                } else {
                    local
                };
                for raw in resolve(&[probe]) {
                    out.push(origin(classify(raw, options)));
                }
            }
            None => out.push(origin(Frame {
                in_app: Some(false),
                ..Frame::default()
            })),
        }
        if out.len() >= MAX_FRAMES {
            out.truncate(MAX_FRAMES);
            break;
        }
    }
    out
}
