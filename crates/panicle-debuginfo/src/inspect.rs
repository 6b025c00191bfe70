//! What an uploaded file is: an ELF with a GNU build-id and something to
//! name addresses with (DWARF, or at least a symbol table), checked before
//! anything is stored, so a bad upload is refused whole.

use std::path::Path;

use object::{Object, ObjectSection, SectionKind};

/// Largest debug file accepted: a large Rust service's full DWARF is a few
/// hundred MB.
pub const MAX_DEBUG_FILE_BYTES: u64 = 1 << 30;

/// What an accepted debug file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebugFileInfo {
    /// GNU build-id, lowercase hex: the key events name it by.
    pub build_id: String,
    /// DWARF line tables or units: functions, files, lines, inlined frames.
    pub has_dwarf: bool,
    /// An ELF symbol table: function names without lines.
    pub has_symbols: bool,
    /// `executable` (code and debug info in one file) or `debug` (a
    /// `--only-keep-debug` file: debug info only).
    pub kind: &'static str,
    /// CPU architecture (`x86_64`, `aarch64`).
    pub arch: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InspectError {
    #[error("not an ELF file ({0}): upload the executable or its `objcopy --only-keep-debug` file")]
    NotElf(String),
    #[error(
        "the file has no GNU build-id, so no event can name it: link with `-C link-arg=-Wl,--build-id` (the default on most Linux toolchains)"
    )]
    NoBuildId,
    #[error(
        "the file has no debug info and no symbol table (it was stripped): upload the unstripped binary or its `objcopy --only-keep-debug` file"
    )]
    NoDebugInfo,
    #[error("the file is truncated or damaged: section {0} lies outside it; upload it again")]
    Truncated(String),
}

/// Inspects an ELF held in memory.
pub fn inspect(data: &[u8]) -> Result<DebugFileInfo, InspectError> {
    let elf = data.starts_with(ELF_MAGIC);
    inspect_object(data, data.len() as u64, elf)
}

/// Inspects the ELF at `path` without reading it whole: headers, the
/// build-id note and the symbol table's first entry, not the DWARF (a
/// section is checked against the file's length, not read).
pub fn inspect_path(path: &Path) -> Result<DebugFileInfo, InspectError> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| InspectError::NotElf(e.to_string()))?;
    let len = file
        .metadata()
        .map_err(|e| InspectError::NotElf(e.to_string()))?
        .len();
    let mut magic = [0u8; 4];
    let elf = file.read_exact(&mut magic).is_ok() && magic == *ELF_MAGIC;
    let cache = object::ReadCache::new(file);
    inspect_object(&cache, len, elf)
}

const ELF_MAGIC: &[u8; 4] = b"\x7fELF";

/// `len`: the file's length; `elf`: it starts with ELF's magic number (a
/// file that does but does not parse was cut short).
fn inspect_object<'data, R: object::ReadRef<'data>>(
    data: R,
    len: u64,
    elf: bool,
) -> Result<DebugFileInfo, InspectError> {
    let obj = object::File::parse(data).map_err(|e| {
        if elf {
            InspectError::Truncated(format!("headers ({e})"))
        } else {
            InspectError::NotElf(e.to_string())
        }
    })?;
    if obj.format() != object::BinaryFormat::Elf {
        return Err(InspectError::NotElf(format!("{:?}", obj.format())));
    }
    let build_id = match obj.build_id() {
        Ok(Some(id)) if !id.is_empty() => hex_of(id),
        Ok(_) => return Err(InspectError::NoBuildId),
        Err(e) => return Err(InspectError::Truncated(format!(".note.gnu.build-id ({e})"))),
    };
    // Every section we would read must lie inside the file.
    for section in obj.sections() {
        let name = section.name().unwrap_or("?");
        let read = name.starts_with(".debug_") || name == ".symtab" || name == ".strtab";
        let inside = section
            .file_range()
            .is_none_or(|(offset, size)| offset.checked_add(size).is_some_and(|end| end <= len));
        if read && section.kind() != SectionKind::UninitializedData && !inside {
            return Err(InspectError::Truncated(name.to_string()));
        }
    }
    let has_dwarf = has_dwarf(&obj);
    let has_symbols = obj.symbols().next().is_some();
    if !has_dwarf && !has_symbols {
        return Err(InspectError::NoDebugInfo);
    }
    let has_code = obj
        .section_by_name(".text")
        .is_some_and(|s| s.kind() != SectionKind::UninitializedData && s.size() > 0);
    Ok(DebugFileInfo {
        build_id,
        has_dwarf,
        has_symbols,
        kind: if has_code { "executable" } else { "debug" },
        arch: format!("{:?}", obj.architecture()).to_lowercase(),
    })
}

/// True when the object carries DWARF line tables or units (a stripped
/// executable has neither; an `--only-keep-debug` file has both).
pub fn has_dwarf<'data, R: object::ReadRef<'data>>(obj: &object::File<'data, R>) -> bool {
    [".debug_line", ".debug_info"].iter().any(|name| {
        obj.section_by_name(name)
            .is_some_and(|s| s.size() > 0 && s.kind() != SectionKind::UninitializedData)
    })
}

/// True when the ELF at `path` has DWARF or a symbol table: something to
/// name addresses with here, build-id or not.
pub fn has_debug_info(path: &Path) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let cache = object::ReadCache::new(file);
    object::File::parse(&cache).is_ok_and(|obj| has_dwarf(&obj) || obj.symbols().next().is_some())
}

/// The GNU build-id of the ELF at `path`, as lowercase hex.
pub fn build_id_of(path: &Path) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    let cache = object::ReadCache::new(file);
    let obj = object::File::parse(&cache).ok()?;
    let id = obj.build_id().ok()??;
    Some(hex_of(id))
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn this_binary() -> Vec<u8> {
        std::fs::read(std::env::current_exe().unwrap()).unwrap()
    }

    #[test]
    fn this_test_binary_is_an_executable_with_dwarf() {
        let info = inspect(&this_binary()).unwrap();
        assert_eq!(info.kind, "executable");
        assert!(info.has_dwarf && info.has_symbols);
        assert_eq!(
            Some(info.build_id),
            build_id_of(&std::env::current_exe().unwrap())
        );
        assert_eq!(
            inspect_path(&std::env::current_exe().unwrap()).map(|i| i.kind),
            Ok("executable")
        );
    }

    #[test]
    fn bad_files_are_refused_with_their_reason() {
        assert!(matches!(
            inspect(b"#!/bin/sh\necho hi\n"),
            Err(InspectError::NotElf(_))
        ));
        assert!(matches!(inspect(b""), Err(InspectError::NotElf(_))));
        // Cut in the middle: the debug sections lie past the end.
        let whole = this_binary();
        let cut = &whole[..whole.len() / 2];
        assert!(
            matches!(inspect(cut), Err(InspectError::Truncated(_))),
            "{:?}",
            inspect(cut)
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut");
        std::fs::write(&path, cut).unwrap();
        assert!(matches!(
            inspect_path(&path),
            Err(InspectError::Truncated(_))
        ));
    }

    #[test]
    fn a_stripped_copy_and_one_without_build_id_are_refused() {
        use std::process::Command;
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("app");
        std::fs::copy(std::env::current_exe().unwrap(), &copy).unwrap();
        let no_id = dir.path().join("no-id");
        let status = Command::new("objcopy")
            .args(["--remove-section", ".note.gnu.build-id"])
            .arg(&copy)
            .arg(&no_id)
            .status()
            .expect("binutils (objcopy, strip) are installed");
        assert!(status.success());
        assert_eq!(inspect_path(&no_id), Err(InspectError::NoBuildId));
        let debug = dir.path().join("app.debug");
        let status = Command::new("objcopy")
            .arg("--only-keep-debug")
            .arg(&copy)
            .arg(&debug)
            .status()
            .unwrap();
        assert!(status.success());
        let status = Command::new("strip")
            .arg("--strip-all")
            .arg(&copy)
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(inspect_path(&copy), Err(InspectError::NoDebugInfo));
        assert!(!has_debug_info(&copy));
        assert!(has_debug_info(&no_id));
        let info = inspect_path(&debug).unwrap();
        assert_eq!(info.kind, "debug");
        assert!(info.has_dwarf);
    }
}
