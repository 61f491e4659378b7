//! select: the one way a list query runs: prepare (cached), map every row, collect,
//! with each SQLite failure saying what was being done.

use rusqlite::{Params, Row};

use crate::Store;
use crate::error::{StoreError, sqlite};

impl Store {
    /// Runs `sql` with `params` and reads every row with `read`.
    pub(crate) fn select_all<T, P: Params>(
        &self,
        doing: &str,
        sql: &str,
        params: P,
        read: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, StoreError> {
        let mut statement = self.conn.prepare_cached(sql).map_err(sqlite(|| doing))?;
        statement
            .query_map(params, read)
            .map_err(sqlite(|| doing))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sqlite(|| doing))
    }
}
