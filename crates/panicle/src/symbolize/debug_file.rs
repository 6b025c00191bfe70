//! Where this executable's debug info is: in the executable, or in a
//! separate file (`objcopy --only-keep-debug`) found the way GDB finds it:
//! by GNU build-id, `/usr/lib/debug/.build-id/ab/cdef….debug`; or by the
//! `.gnu_debuglink` name, next to the executable, in its `.debug/`
//! directory, or under `/usr/lib/debug/<the executable's directory>/`.
//! A build-id candidate counts only when its build-id is the executable's,
//! a debuglink one only when its CRC-32 is the link's: a stale debug file
//! from another build would name the wrong functions.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use object::Object;
use panicle_debuginfo::{build_id_of, has_dwarf};

/// Where distributions (and `debuginfod` caches laid out like them) keep
/// separate debug files.
const SYSTEM_DEBUG_DIR: &str = "/usr/lib/debug";

/// The file to read `exe`'s DWARF and symbol table from: `exe` itself
/// unless it has no DWARF and a separate debug file is found.
pub(super) fn debug_info_file(exe: &Path, build_id: Option<&str>) -> PathBuf {
    separate_debug_file(exe, build_id, Path::new(SYSTEM_DEBUG_DIR))
        .unwrap_or_else(|| exe.to_path_buf())
}

fn separate_debug_file(exe: &Path, build_id: Option<&str>, root: &Path) -> Option<PathBuf> {
    let file = File::open(exe).ok()?;
    let cache = object::ReadCache::new(file);
    let obj = object::File::parse(&cache).ok()?;
    if has_dwarf(&obj) {
        return None;
    }
    if let Some(id) = build_id.filter(|id| id.len() > 2 && id.is_ascii()) {
        let candidate = root
            .join(".build-id")
            .join(&id[..2])
            .join(format!("{}.debug", &id[2..]));
        if build_id_of(&candidate).as_deref() == Some(id) {
            return Some(candidate);
        }
    }
    let (name, crc) = obj.gnu_debuglink().ok()??;
    let name = std::str::from_utf8(name).ok()?;
    // A file name: never a path that leads elsewhere.
    if name.is_empty() || name.contains('/') {
        return None;
    }
    let dir = exe.parent()?;
    let mut candidates = vec![dir.join(name), dir.join(".debug").join(name)];
    if let Some(relative) = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.strip_prefix("/").ok().map(Path::to_path_buf))
    {
        candidates.push(root.join(relative).join(name));
    }
    candidates
        .into_iter()
        .find(|c| c.as_path() != exe && crc32_of(c) == Some(crc))
}

/// The CRC-32 `.gnu_debuglink` records: of the whole file.
fn crc32_of(path: &Path) -> Option<u32> {
    let mut file = File::open(path).ok()?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Some(hasher.finalize()),
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn run(cmd: &mut Command) {
        let status = cmd
            .status()
            .expect("binutils (objcopy, strip) are installed");
        assert!(status.success(), "{cmd:?}");
    }

    /// This test binary, stripped, with its debug info in `name` beside or
    /// under it, linked by `.gnu_debuglink`.
    fn split(dir: &Path, debug_at: &Path) -> PathBuf {
        let exe = dir.join("app");
        std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
        let debug = dir.join("app.debug");
        run(Command::new("objcopy")
            .arg("--only-keep-debug")
            .arg(&exe)
            .arg(&debug));
        run(Command::new("strip").arg("--strip-all").arg(&exe));
        run(Command::new("objcopy")
            .arg(format!("--add-gnu-debuglink={}", debug.display()))
            .arg(&exe));
        if debug != debug_at {
            std::fs::create_dir_all(debug_at.parent().unwrap()).unwrap();
            std::fs::rename(&debug, debug_at).unwrap();
        }
        exe
    }

    #[test]
    fn an_executable_with_dwarf_is_its_own_debug_file() {
        let me = std::env::current_exe().unwrap();
        assert_eq!(debug_info_file(&me, None), me);
    }

    #[test]
    fn a_debuglink_is_followed_beside_and_under_dot_debug_and_checked() {
        let root = tempfile::tempdir().unwrap();
        for place in ["app.debug", ".debug/app.debug"] {
            let dir = tempfile::tempdir().unwrap();
            let exe = split(dir.path(), &dir.path().join(place));
            let found = separate_debug_file(&exe, None, root.path());
            assert_eq!(found, Some(dir.path().join(place)));
            // Another file under the linked name (another build): refused.
            std::fs::write(dir.path().join(place), b"not the debug info").unwrap();
            assert_eq!(separate_debug_file(&exe, None, root.path()), None);
        }
    }

    #[test]
    fn a_build_id_path_under_the_debug_root_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let me = std::env::current_exe().unwrap();
        let id = build_id_of(&me).expect("the test binary has a build-id");
        let at = root
            .path()
            .join(".build-id")
            .join(&id[..2])
            .join(format!("{}.debug", &id[2..]));
        let exe = split(dir.path(), &at);
        assert_eq!(separate_debug_file(&exe, Some(&id), root.path()), Some(at));
        // A build-id that is not the file's: not taken.
        let other = format!("{}ff", &id[..id.len() - 2]);
        assert_eq!(separate_debug_file(&exe, Some(&other), root.path()), None);
    }
}
