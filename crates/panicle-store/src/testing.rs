//! Test support: a fresh, isolated database per test on either backend.
//!
//! SQLite gets a file in a temporary directory; PostgreSQL gets a database of
//! its own (`panicle_t_<random>`) on `PANICLE_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), dropped when the guard goes.

use rand::RngCore;
use sqlx::{AnyConnection, AssertSqlSafe, Connection, Executor};

use crate::{Backend, Store};

pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Holds the test database alive; drops it on drop.
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    _dir: Option<tempfile::TempDir>,
    pg_name: Option<(String, String)>,
}

impl TestDb {
    /// A fresh empty database URL for the backend (not yet migrated).
    pub async fn new(backend: Backend) -> TestDb {
        sqlx::any::install_default_drivers();
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("panicle.db").display());
                TestDb {
                    url,
                    backend,
                    _dir: Some(dir),
                    pg_name: None,
                }
            }
            Backend::Postgres => {
                let admin = admin_url();
                let mut suffix = [0u8; 8];
                rand::rng().fill_bytes(&mut suffix);
                let name = format!("panicle_t_{}", hex::encode(suffix));
                let mut conn = AnyConnection::connect(&admin).await.unwrap_or_else(|e| {
                    panic!("PostgreSQL at {admin} is needed by this test (start it, or set PANICLE_TEST_POSTGRES_URL): {e}")
                });
                conn.execute(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .await
                    .expect("create test database");
                let _ = conn.close().await;
                let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
                TestDb {
                    url: format!("{base}/{name}"),
                    backend,
                    _dir: None,
                    pg_name: Some((admin, name)),
                }
            }
        }
    }

    /// Runs raw SQL on this database: test setup such as a trigger that
    /// makes the database refuse a row.
    pub async fn execute(&self, sql: &str) {
        let mut conn = AnyConnection::connect(&self.url)
            .await
            .expect("connect to the test database");
        conn.execute(AssertSqlSafe(sql.to_string()))
            .await
            .unwrap_or_else(|e| panic!("test SQL failed: {e}\n{sql}"));
        let _ = conn.close().await;
    }

    /// A migrated store on this database.
    pub async fn store(&self) -> Store {
        Store::connect(&self.url).await.expect("connect test store")
    }
}

fn admin_url() -> String {
    std::env::var("PANICLE_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_string())
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin, name)) = self.pg_name.take() else {
            return;
        };
        // Drop runs outside any runtime guarantee: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = AnyConnection::connect(&admin).await {
                    let _ = conn
                        .execute(AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}

/// Runs a test body once per backend: `store_tests!(name, |db| async move { … })`.
#[macro_export]
macro_rules! backend_tests {
    ($(async fn $name:ident($db:ident: &TestDb) $body:block)*) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = $crate::testing::TestDb::new($crate::Backend::Sqlite).await;
                    super::$name(&db).await;
                }
            )*
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = $crate::testing::TestDb::new($crate::Backend::Postgres).await;
                    super::$name(&db).await;
                }
            )*
        }
        $(
            async fn $name($db: &$crate::testing::TestDb) $body
        )*
    };
}
