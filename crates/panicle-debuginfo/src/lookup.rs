//! The inline chain at one address: addr2line's frames, the outermost one
//! named from the symbol table, `{closure}` made what it is, bare inlined
//! names qualified.

use std::collections::HashMap;
use std::sync::Mutex;

use super::RawFrame;
use super::demangle::{clean_symbol, has_path, split_path, strip_generics};
use super::names::NameIndex;
use super::qualify::{anonymous_marker, qualify_inlined};

/// What each closure symbol is (`{async fn}`, `{async block}`), asked of
/// DWARF once per symbol.
pub type ClosureKinds = Mutex<HashMap<String, Option<&'static str>>>;

/// Most rows of one file scanned for a constructor, and per source line.
const MAX_CONSTRUCTOR_LINES: usize = 512;
const ROWS_PER_LINE: usize = 4;

/// One debug file's DWARF and symbol table, ready to be asked.
pub struct Lookup<'a> {
    pub loader: &'a addr2line::Loader,
    pub names: &'a NameIndex,
    pub closure_kinds: &'a ClosureKinds,
}

impl Lookup<'_> {
    /// The inline chain at module-relative `probe` (the byte looked up: a
    /// return address minus one), innermost first, each frame carrying
    /// `addr`. One frame, unnamed, when nothing is known there.
    pub fn frames_at(&self, probe: u64, addr: usize) -> Vec<RawFrame> {
        let loader = self.loader;
        // Demangled once at load: demangling long generic names is most of
        // the cost of a first lookup.
        let symbol = loader.find_symbol_info(probe).map(|sym| {
            match self.names.by_address.get(&sym.address()) {
                Some(name) => name.clone(),
                None => clean_symbol(sym.name()),
            }
        });
        let mut frames: Vec<RawFrame> = Vec::new();
        if let Ok(mut iter) = loader.find_frames(probe) {
            while let Ok(Some(f)) = iter.next() {
                let function = f
                    .function
                    .as_ref()
                    .and_then(|n| n.raw_name().ok())
                    .map(|n| clean_symbol(&n));
                let (file, line, column) = match f.location {
                    Some(l) => (
                        l.file.map(str::to_string),
                        l.line,
                        l.column.filter(|c| *c > 0),
                    ),
                    None => (None, None, None),
                };
                frames.push(RawFrame {
                    function,
                    file,
                    line,
                    column,
                    instruction_addr: addr,
                    finished: None,
                });
            }
        }
        let dwarf_names: Vec<Option<String>> = frames.iter().map(|f| f.function.clone()).collect();
        match frames.last_mut() {
            // The outermost frame is the real function: the symbol table has
            // its full path where line-tables-only DWARF has a bare name, and
            // DWARF tells what the symbol's `{closure}` is (`{async fn}`,
            // `{async block}`).
            Some(outer) => {
                if let Some(symbol) = symbol {
                    let kind = outer.function.as_deref().and_then(anonymous_marker);
                    outer.function = Some(self.with_body_kinds(&symbol, kind));
                }
            }
            None => frames.push(RawFrame {
                function: symbol,
                ..RawFrame::bare(addr)
            }),
        }
        let mut constructor =
            |body: &RawFrame, caller: &RawFrame| self.constructor_of(probe, body, caller);
        qualify_inlined(&mut frames, &dwarf_names, self.names, &mut constructor);
        frames
    }

    /// A symbol's name with each `{closure}` made what it is: legacy mangling
    /// calls async fn bodies and async blocks closures too. The last segment's
    /// kind comes from DWARF's name of the frame (`kind`), an outer one's from
    /// DWARF's name of that closure's own symbol (cached).
    fn with_body_kinds(&self, symbol: &str, kind: Option<&'static str>) -> String {
        if !symbol.contains("{closure}") {
            return symbol.to_string();
        }
        let parts = split_path(symbol);
        let mut out = String::with_capacity(symbol.len() + 8);
        // The symbol's own spelling up to here: the key of `closures`.
        let mut symbol_prefix = String::with_capacity(symbol.len());
        for (j, part) in parts.iter().enumerate() {
            if j > 0 {
                out.push_str("::");
                symbol_prefix.push_str("::");
            }
            symbol_prefix.push_str(part);
            let marker = if *part != "{closure}" {
                None
            } else if j + 1 == parts.len() {
                kind
            } else {
                self.closure_kind(&symbol_prefix)
            };
            out.push_str(marker.unwrap_or(part));
        }
        out
    }

    /// What the closure symbol `name` is, from DWARF's name of its body.
    fn closure_kind(&self, name: &str) -> Option<&'static str> {
        let loader = self.loader;
        let mut kinds = self.closure_kinds.try_lock().ok()?;
        if let Some(kind) = kinds.get(name) {
            return *kind;
        }
        let address = self.names.closures.get(name).copied()?;
        let mut kind = None;
        if let Ok(mut frames) = loader.find_frames(address) {
            while let Ok(Some(f)) = frames.next() {
                kind = f
                    .function
                    .as_ref()
                    .and_then(|n| n.raw_name().ok())
                    .and_then(|n| anonymous_marker(&clean_symbol(&n)));
            }
        }
        if kinds.len() < 4096 {
            kinds.insert(name.to_string(), kind);
        }
        kind
    }

    /// The function whose future `body` (an async fn's body inlined bare) is:
    /// where a body is polled by `load(id).await`, its constructor `load` was
    /// inlined at the same call site. Scans the rows of the body's file in the
    /// function holding `probe` for a named frame whose caller stands where
    /// `body`'s caller does. None when the constructor was not inlined there
    /// (the caller then names the body, or the module does).
    fn constructor_of(&self, probe: u64, body: &RawFrame, caller: &RawFrame) -> Option<String> {
        let loader = self.loader;
        let file = body.file.as_deref()?;
        let body_line = body.line?;
        let (caller_file, caller_line) = (caller.file.as_deref()?, caller.line?);
        let (start, end) = self.names.function_range(probe)?;
        let mut rows: Vec<(u32, u64)> = Vec::new();
        for (address, _, location) in loader.find_location_range(start, end).ok()? {
            if location.file == Some(file)
            && let Some(line) = location.line
            && line <= body_line
            // A constructor's rows may share a line with the body's prologue.
            && rows.iter().filter(|(l, _)| *l == line).count() < ROWS_PER_LINE
            {
                rows.push((line, address));
                if rows.len() == MAX_CONSTRUCTOR_LINES {
                    break;
                }
            }
        }
        for (_, address) in rows {
            let Ok(mut iter) = loader.find_frames(address) else {
                continue;
            };
            let mut chain: Vec<(Option<String>, Option<String>, Option<u32>)> = Vec::new();
            while let Ok(Some(f)) = iter.next() {
                let name = f
                    .function
                    .as_ref()
                    .and_then(|n| n.raw_name().ok())
                    .map(|n| clean_symbol(&n));
                let (f_file, f_line) = match f.location {
                    Some(l) => (l.file.map(str::to_string), l.line),
                    None => (None, None),
                };
                chain.push((name, f_file, f_line));
            }
            for pair in chain.windows(2) {
                let [
                    (Some(name), Some(f_file), _),
                    (_, Some(c_file), Some(c_line)),
                ] = pair
                else {
                    continue;
                };
                if f_file == file
                    && c_file == caller_file
                    && *c_line == caller_line
                    && !name.starts_with('{')
                    && !has_path(name)
                {
                    return Some(strip_generics(name).to_string());
                }
            }
        }
        None
    }
}
