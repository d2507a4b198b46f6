//! Statements with a variable number of parameters (`IN ($1, …, $n)`, multi-row `VALUES`),
//! written in the `$n` style that both databases accept through sqlx's `Any` driver.

use std::fmt::Write as _;

/// Appends `$first, …, $(first + count - 1)`.
fn push_params(sql: &mut String, first: usize, count: usize) {
    for i in 0..count {
        if i > 0 {
            sql.push_str(", ");
        }
        let _ = write!(sql, "${}", first + i);
    }
}

/// `prefix`, then `($first, …, $(first + count - 1))`, then `suffix`: for `WHERE x IN (…)`.
pub(crate) fn in_list(prefix: &str, first: usize, count: usize, suffix: &str) -> String {
    let mut sql = String::with_capacity(prefix.len() + suffix.len() + count * 7);
    sql.push_str(prefix);
    sql.push('(');
    push_params(&mut sql, first, count);
    sql.push(')');
    sql.push_str(suffix);
    sql
}

/// Appends `($1, …, $columns), ($columns+1, …), …` for `rows` rows.
pub(crate) fn push_value_rows(sql: &mut String, rows: usize, columns: usize) {
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        push_params(sql, row * columns + 1, columns);
        sql.push(')');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_order() {
        assert_eq!(
            in_list("SELECT 1 WHERE x IN ", 2, 3, " AND y"),
            "SELECT 1 WHERE x IN ($2, $3, $4) AND y"
        );
        let mut sql = String::from("VALUES ");
        push_value_rows(&mut sql, 2, 2);
        assert_eq!(sql, "VALUES ($1, $2), ($3, $4)");
    }
}
