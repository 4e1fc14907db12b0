//! SQL text helpers shared by the store's statements: bind placeholders
//! for either backend, nullable doubles, and the size of `IN (...)` lists.

use super::Backend;

/// Values named in one `IN (...)` or `VALUES` list of a batched statement.
pub(super) const IN_LIST_MAX: usize = 500;

/// A nullable, non-negative double as a bind value: `-1.0` stands for
/// NULL and the SQL turns it back with `NULLIF(.., -1.0)`. sqlx's `Any`
/// driver declares a NULL double as a 4-byte float to PostgreSQL, which then
/// rejects 8-byte values bound to the same cached statement.
pub(super) fn nullable_f64(v: Option<f64>) -> f64 {
    v.unwrap_or(-1.0)
}

/// `count` bind placeholders from the `first` (1-based), comma-separated,
/// for a statement whose placeholders appear in the order their values are
/// bound. PostgreSQL gets `$N`; SQLite gets anonymous `?`, because sqlx
/// asks SQLite for each parameter's name and SQLite finds a named one by
/// a linear scan: a statement of thousands of `$N` binds cost the square
/// of its size (it was most of the time of a 100-run ingest).
pub(super) fn placeholders(backend: Backend, first: usize, count: usize) -> String {
    let mut out = String::with_capacity(count * 6);
    for i in 0..count {
        if i > 0 {
            out.push_str(", ");
        }
        match backend {
            Backend::Sqlite => out.push('?'),
            Backend::Postgres => {
                out.push('$');
                out.push_str(&(first + i).to_string());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres_and_anonymous_for_sqlite() {
        assert_eq!(placeholders(Backend::Postgres, 9, 3), "$9, $10, $11");
        assert_eq!(placeholders(Backend::Sqlite, 9, 3), "?, ?, ?");
        assert_eq!(placeholders(Backend::Sqlite, 1, 0), "");
    }
}
