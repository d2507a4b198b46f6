//! Statements with a variable number of parameters (`IN (…)`, multi-row `VALUES`). PostgreSQL
//! numbers its parameters (`$1`); on SQLite they are anonymous (`?`), bound in order, because
//! SQLite looks a named or numbered parameter up in a list, which costs time in the square of
//! their count: 5,000 `$n` made one INSERT a hundred times slower than 5,000 `?`.

use std::fmt::Write as _;

use crate::store::Backend;

/// Appends parameters `first..first + count`, comma-separated.
fn push_params(sql: &mut String, backend: Backend, first: usize, count: usize) {
    for i in 0..count {
        if i > 0 {
            sql.push_str(", ");
        }
        push_param(sql, backend, first + i);
    }
}

/// Appends parameter number `n` (1-based) in the backend's style.
pub(crate) fn push_param(sql: &mut String, backend: Backend, n: usize) {
    match backend {
        Backend::Sqlite => sql.push('?'),
        Backend::Postgres => {
            let _ = write!(sql, "${n}");
        }
    }
}

/// `prefix`, then `(` parameters `first..first + count` `)`, then `suffix`: for `x IN (…)`.
pub(crate) fn in_list(
    backend: Backend,
    prefix: &str,
    first: usize,
    count: usize,
    suffix: &str,
) -> String {
    let mut sql = String::with_capacity(prefix.len() + suffix.len() + count * 7);
    sql.push_str(prefix);
    sql.push('(');
    push_params(&mut sql, backend, first, count);
    sql.push(')');
    sql.push_str(suffix);
    sql
}

/// Appends `(p1, …, p_columns), (…), …` for `rows` rows, numbered from 1.
pub(crate) fn push_value_rows(sql: &mut String, backend: Backend, rows: usize, columns: usize) {
    push_value_rows_from(sql, backend, 1, rows, columns);
}

/// The same, numbered from `first`.
pub(crate) fn push_value_rows_from(
    sql: &mut String,
    backend: Backend,
    first: usize,
    rows: usize,
    columns: usize,
) {
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        push_params(sql, backend, first + row * columns, columns);
        sql.push(')');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_order() {
        assert_eq!(
            in_list(Backend::Postgres, "SELECT 1 WHERE x IN ", 2, 3, " AND y"),
            "SELECT 1 WHERE x IN ($2, $3, $4) AND y"
        );
        assert_eq!(
            in_list(Backend::Sqlite, "SELECT 1 WHERE x IN ", 2, 3, ""),
            "SELECT 1 WHERE x IN (?, ?, ?)"
        );
        let mut sql = String::from("VALUES ");
        push_value_rows(&mut sql, Backend::Postgres, 2, 2);
        assert_eq!(sql, "VALUES ($1, $2), ($3, $4)");
    }
}
