//! The SDK's side of classification: the shared rules (`panicle_debuginfo`)
//! with this process's module map and the options' in-app overrides.

use panicle_debuginfo::{MAX_FRAMES, RawFrame, cut_machinery};
use panicle_protocol::Frame;

use crate::modules;
use crate::options::Options;

/// Drops the machinery above the panicking frame and classifies the rest.
pub fn to_frames(raw: Vec<RawFrame>, options: &Options) -> Vec<Frame> {
    let start = cut_machinery(&raw);
    raw.into_iter()
        .skip(start)
        .take(MAX_FRAMES)
        .map(|f| classify(f, options))
        .collect()
}

/// The schema frame, with `in_app` as the options' include/exclude
/// prefixes override it.
pub(super) fn classify(raw: RawFrame, options: &Options) -> Frame {
    let mut frame = match raw.finished {
        Some(done) => Frame::clone(&done),
        None => finish(&raw),
    };
    let matches = |prefixes: &[String]| {
        frame.function.as_deref().is_some_and(|f| {
            prefixes
                .iter()
                .any(|p| f.trim_start_matches('<').starts_with(p.as_str()))
        })
    };
    if matches(&options.in_app_include) {
        frame.in_app = Some(true);
    } else if matches(&options.in_app_exclude) {
        frame.in_app = Some(false);
    }
    frame
}

/// The schema frame, with the build-id and offset of the module of this
/// process the address is in.
pub(super) fn finish(raw: &RawFrame) -> Frame {
    let module = modules::find(raw.instruction_addr);
    panicle_debuginfo::finish(
        raw,
        module.and_then(|m| m.build_id.clone()),
        module.map(|m| m.relative(raw.instruction_addr) as u64),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(function: &str, file: &str) -> RawFrame {
        RawFrame {
            function: Some(function.into()),
            file: Some(file.into()),
            line: Some(1),
            ..RawFrame::bare(0x1000)
        }
    }

    #[test]
    fn include_and_exclude_override() {
        let options = Options {
            in_app_include: vec!["serde_json::".into()],
            in_app_exclude: vec!["shop::vendored".into()],
            ..Options::default()
        };
        let out = to_frames(
            vec![
                raw("shop::vendored::thing", "src/vendored.rs"),
                raw(
                    "serde_json::de::from_str",
                    "/root/.cargo/registry/src/i/serde_json-1.0.1/src/de.rs",
                ),
            ],
            &options,
        );
        assert_eq!(out[0].in_app, Some(false));
        assert_eq!(out[1].in_app, Some(true));
    }
}
