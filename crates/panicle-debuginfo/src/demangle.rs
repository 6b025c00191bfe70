//! Names as people read them: demangled without the hash, closures and
//! async bodies marked, paths split outside generic arguments.

/// The root path segment of a symbol: `shop` of `<shop::Cart as Drop>::drop`.
pub fn symbol_root(function: &str) -> &str {
    let root = path_root(function);
    // `<usize as core::slice::index::SliceIndex<[T]>>::index`: a primitive
    // (or slice, tuple, array) self type has no crate; the trait's tells.
    if function.starts_with('<')
        && (root.is_empty() || PRIMITIVES.contains(&root))
        && let Some((_, rest)) = function.split_once(" as ")
    {
        return path_root(rest);
    }
    root
}

/// Rust's primitive types: the self type of many std impls.
const PRIMITIVES: &[&str] = &[
    "bool", "char", "str", "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64",
    "i128", "isize", "f32", "f64",
];

fn path_root(function: &str) -> &str {
    let f = function.trim_start_matches(['<', '&', '*']);
    let f = f.strip_prefix("mut ").unwrap_or(f);
    let f = f.strip_prefix("dyn ").unwrap_or(f);
    let end = f
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(f.len());
    &f[..end]
}

/// Demangles without the `::h…` hash and names closures and async bodies readably.
pub fn clean_symbol(raw: &str) -> String {
    let name = match rustc_demangle::try_demangle(raw) {
        Ok(d) => format!("{d:#}"),
        Err(_) => raw.to_string(),
    };
    readable_name(&name)
}

/// `{{closure}}`/`{closure#0}` → `{closure}`, `{async_fn#0}` → `{async fn}`,
/// `{async_block#0}` → `{async block}`.
pub fn readable_name(name: &str) -> String {
    if !name.contains('{') {
        return name.to_string();
    }
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let (token, len) = if tail.starts_with("{{closure}}") {
            ("{closure}", "{{closure}}".len())
        } else if let Some(end) = tail.find('}') {
            let inner = &tail[1..end];
            let kind = inner.split('#').next().unwrap_or(inner);
            let token = match kind {
                "closure" | "closure_env" => "{closure}",
                "async_fn" | "async_fn_env" => "{async fn}",
                "async_block" | "async_block_env" | "async_gen_block" => "{async block}",
                _ => "",
            };
            if token.is_empty() {
                (&tail[..=end], end + 1)
            } else {
                (token, end + 1)
            }
        } else {
            (tail, tail.len())
        };
        out.push_str(token);
        rest = &tail[len..];
    }
    out.push_str(rest);
    out
}

/// True when a name already carries a module path (outside generic arguments).
pub(crate) fn has_path(name: &str) -> bool {
    split_path(name).len() > 1
}

/// Splits `a::B<c::D>::e` into `["a", "B<c::D>", "e"]`: `::` inside `<>` stays.
pub(crate) fn split_path(name: &str) -> Vec<&str> {
    let bytes = name.as_bytes();
    let (mut depth, mut start, mut i) = (0i32, 0usize, 0usize);
    let mut parts = Vec::new();
    while i < bytes.len() {
        match bytes[i] {
            b'<' => depth += 1,
            b'>' if i == 0 || bytes[i - 1] != b'-' => depth -= 1,
            b':' if depth == 0 && bytes.get(i + 1) == Some(&b':') => {
                parts.push(&name[start..i]);
                i += 2;
                start = i;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(&name[start..]);
    parts
}

/// `unwrap<u32>` → `unwrap`.
pub(crate) fn strip_generics(segment: &str) -> &str {
    segment.split('<').next().unwrap_or(segment)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_hashes_and_closures_read_well() {
        assert_eq!(
            clean_symbol(
                "_ZN4shop6orders7reserve28_$u7b$$u7b$closure$u7d$$u7d$17h0123456789abcdefE"
            ),
            "shop::orders::reserve::{closure}"
        );
        assert_eq!(
            readable_name("shop::handler::{async_fn#0}"),
            "shop::handler::{async fn}"
        );
        assert_eq!(
            readable_name("a::{async_block#3}::{closure#1}"),
            "a::{async block}::{closure}"
        );
        assert_eq!(readable_name("a::{shim:vtable#0}"), "a::{shim:vtable#0}");
        assert_eq!(
            split_path("<a::B<c::D> as e::F>::g"),
            vec!["<a::B<c::D> as e::F>", "g"]
        );
    }

    #[test]
    fn a_primitive_self_type_takes_the_traits_crate() {
        assert_eq!(
            symbol_root("<usize as core::slice::index::SliceIndex<[T]>>::index"),
            "core"
        );
        assert_eq!(
            symbol_root("<[T] as alloc::slice::Concat<T>>::concat"),
            "alloc"
        );
        assert_eq!(symbol_root("<shop::Cart as core::ops::Drop>::drop"), "shop");
        assert_eq!(symbol_root("shop::orders::reserve"), "shop");
    }
}
