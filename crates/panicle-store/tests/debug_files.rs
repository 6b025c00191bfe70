//! The debug-file directory's housekeeping: what a crashed upload left is
//! removed once old, never while another replica may still be writing it.

use std::time::{Duration, SystemTime};

use panicle_store::testing::TestDb;
use panicle_store::{Backend, DebugFiles};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_temporary_files_are_swept_and_young_ones_and_stored_files_kept() {
    let db = TestDb::new(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let files = DebugFiles::new(db.store().await, dir.path().join("debug-files"));
    // Nothing there yet: nothing to do, no error.
    assert_eq!(
        files
            .sweep_temp_files(Duration::from_secs(60))
            .await
            .unwrap(),
        0
    );

    let root = files.dir().to_path_buf();
    std::fs::create_dir_all(root.join("ab")).unwrap();
    let old = root.join("tmp-0123");
    let young = root.join("tmp-4567");
    let stored = root.join("ab/cdef.debug");
    for path in [&old, &young, &stored] {
        std::fs::write(path, b"x").unwrap();
    }
    let two_days_ago = SystemTime::now() - Duration::from_secs(2 * 86_400);
    for path in [&old, &stored] {
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(two_days_ago)
            .unwrap();
    }
    let removed = files
        .sweep_temp_files(Duration::from_secs(86_400))
        .await
        .unwrap();
    assert_eq!(removed, 1);
    assert!(!old.exists());
    assert!(young.exists());
    assert!(stored.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_dropped_midway_leaves_no_temporary_file() {
    let db = TestDb::new(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let files = DebugFiles::new(db.store().await, dir.path()).with_max_bytes(10);
    let mut upload = files.begin("app").await.unwrap();
    upload.write(b"\x7fELF").await.unwrap();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    // Over the limit: refused; the caller drops the upload.
    assert!(upload.write(&[0u8; 16]).await.is_err());
    drop(upload);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    assert!(files.list().await.unwrap().is_empty());
}
