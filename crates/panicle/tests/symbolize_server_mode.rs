//! `symbolize = Server`: the process loads no debug info and ships bare
//! addresses with their module's build-id and offset (its own process: the
//! mode is process-wide).

use panicle::{Options, Symbolize, hook_bench};

#[test]
fn server_mode_ships_addresses_with_build_id_and_offset_only() {
    hook_bench::set_symbolize(Symbolize::Server);
    hook_bench::warm_up();
    assert!(hook_bench::is_warm(), "nothing to load: warm at once");
    let event = hook_bench::capture_event(&Options::default());
    assert!(event.frames.len() >= 3, "{:#?}", event.frames);
    assert!(
        event.frames.iter().all(|f| f.function.is_none()),
        "{:#?}",
        event.frames
    );
    let build_id = std::fs::read(std::env::current_exe().unwrap())
        .ok()
        .and_then(|b| panicle_debuginfo::inspect(&b).ok())
        .map(|i| i.build_id)
        .expect("the test binary has a build-id");
    let in_exe = event
        .frames
        .iter()
        .filter(|f| f.build_id.as_deref() == Some(build_id.as_str()))
        .filter(|f| f.module_offset.is_some())
        .count();
    assert!(in_exe >= 3, "{:#?}", event.frames);
}
