//! Keyset pagination with an opaque cursor: unlike OFFSET, new rows do not
//! shift pages. Events page on (ts, id), which never changes. Groups page on
//! (last_seen, id): a group that sees a new event while someone pages moves
//! to the front, so a walk through the pages may miss it once; the next
//! look at the first page shows it.

use serde::Serialize;

use crate::StoreError;

/// A position in a list ordered by (time desc, id desc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub ts: i64,
    pub id: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        hex::encode(format!("{}|{}", self.ts, self.id))
    }

    pub fn decode(s: &str) -> Result<Cursor, StoreError> {
        let bytes = hex::decode(s).map_err(|_| StoreError::InvalidCursor)?;
        let text = String::from_utf8(bytes).map_err(|_| StoreError::InvalidCursor)?;
        // No NUL: PostgreSQL cannot compare one, and no stored id holds it.
        if text.contains('\0') {
            return Err(StoreError::InvalidCursor);
        }
        let (ts, id) = text.split_once('|').ok_or(StoreError::InvalidCursor)?;
        Ok(Cursor {
            ts: ts.parse().map_err(|_| StoreError::InvalidCursor)?,
            id: id.to_string(),
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Builds a WHERE clause with `$n` placeholders and the values to bind.
#[derive(Default)]
pub(crate) struct Filter {
    pub clauses: Vec<String>,
    pub binds: Vec<Bind>,
}

pub(crate) enum Bind {
    Int(i64),
    Text(String),
}

impl Filter {
    /// Adds a clause where `?` stands for the next placeholder.
    pub fn push(&mut self, clause: &str, bind: Bind) {
        let n = self.binds.len() + 1;
        self.clauses.push(clause.replacen('?', &format!("${n}"), 1));
        self.binds.push(bind);
    }

    /// Adds a clause with several placeholders.
    pub fn push_many(&mut self, clause: &str, binds: Vec<Bind>) {
        let mut clause = clause.to_string();
        for bind in binds {
            let n = self.binds.len() + 1;
            clause = clause.replacen('?', &format!("${n}"), 1);
            self.binds.push(bind);
        }
        self.clauses.push(clause);
    }

    /// Keeps the rows after `cursor` in a list ordered by (`ts_col` desc,
    /// `id_col` desc): the keyset condition every paged list uses.
    pub fn after(&mut self, ts_col: &str, id_col: &str, cursor: &Cursor) {
        self.push_many(
            &format!("({ts_col} < ? OR ({ts_col} = ? AND {id_col} < ?))"),
            vec![
                Bind::Int(cursor.ts),
                Bind::Int(cursor.ts),
                Bind::Text(cursor.id.clone()),
            ],
        );
    }

    pub fn where_sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        }
    }
}

/// Rows per multi-row statement: 18 columns × 200 stays far below both
/// backends' bound on bound values (SQLite 32,766; PostgreSQL 65,535).
pub(crate) const ROWS_PER_STATEMENT: usize = 200;

/// Placeholders of a statement's values, in the order they are bound: `?`
/// on SQLite, where finding a numbered one (`$n`) takes a scan of all of
/// them, which makes binding a multi-row statement quadratic in its values
/// (a fifth of ingest's time at 3,600 values); `$n` on PostgreSQL.
pub(crate) struct Marks {
    numbered: bool,
    bound: usize,
}

impl Marks {
    pub fn for_conn(conn: &sqlx::AnyConnection) -> Marks {
        Marks {
            numbered: conn.backend_name() != "SQLite",
            bound: 0,
        }
    }

    /// The next value's placeholder.
    pub fn next(&mut self) -> String {
        self.bound += 1;
        if self.numbered {
            format!("${}", self.bound)
        } else {
            "?".to_string()
        }
    }

    /// `k` placeholders, comma-separated.
    pub fn list(&mut self, k: usize) -> String {
        (0..k).map(|_| self.next()).collect::<Vec<_>>().join(", ")
    }

    /// `rows` parenthesized rows of `columns` placeholders each.
    pub fn rows(&mut self, rows: usize, columns: usize) -> String {
        (0..rows)
            .map(|_| format!("({})", self.list(columns)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `column IN ($n, …)` over the given values.
pub(crate) fn push_in(f: &mut Filter, column: &str, values: &[String]) {
    let marks = vec!["?"; values.len()].join(", ");
    f.push_many(
        &format!("{column} IN ({marks})"),
        values.iter().map(|v| Bind::Text(v.clone())).collect(),
    );
}

/// `column IN ($n, …)` over integer ids (a token's projects).
pub(crate) fn push_in_ids(f: &mut Filter, column: &str, values: &[i64]) {
    let marks = vec!["?"; values.len()].join(", ");
    f.push_many(
        &format!("{column} IN ({marks})"),
        values.iter().map(|v| Bind::Int(*v)).collect(),
    );
}

/// A page from `limit + 1` fetched rows: the extra row says a next page
/// exists, and the last row kept is where it starts.
pub(crate) fn page_of<T>(mut items: Vec<T>, limit: u32, key: impl Fn(&T) -> Cursor) -> Page<T> {
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|item| key(item).encode())
    } else {
        None
    };
    Page { items, next_cursor }
}

pub(crate) fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    binds: Vec<Bind>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    for b in binds {
        q = match b {
            Bind::Int(v) => q.bind(v),
            Bind::Text(v) => q.bind(v),
        };
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let c = Cursor {
            ts: 1_700_000_000_000,
            id: "a|b".into(),
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        assert!(Cursor::decode("zz").is_err());
        assert!(Cursor::decode(&hex::encode("nobar")).is_err());
    }
}
