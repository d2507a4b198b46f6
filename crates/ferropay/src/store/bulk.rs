//! Set-based statements for both databases: one statement writes or reads a whole batch, its
//! rows passed as ONE JSON parameter that the database expands into a table. This module holds
//! the only dialect differences of bulk work (how JSON becomes rows, how an id list is matched,
//! how rows are locked); the statements themselves are written once, in the engine.
//!
//! Why JSON rather than arrays (`UNNEST`) or `COPY`: the store runs on sqlx's `Any` driver,
//! which binds no arrays and has no `COPY`. Switching the engine to the typed drivers would
//! have split every statement and every transaction type in two. One JSON text parameter
//! keeps one transaction type, gives each statement one text (prepared once and cached,
//! whatever the batch size, where multi-row `VALUES` made a new statement per size) and costs
//! PostgreSQL (`json_to_recordset`) and SQLite (`json_each`) little to expand.

use serde::Serialize;

use super::Backend;

/// The SQL type of a column read from a JSON row.
#[derive(Clone, Copy, Debug)]
pub enum Col {
    Text,
    Int,
}

/// `FROM`-clause source that expands parameter `param` (a JSON array of objects) into rows
/// aliased `alias`, with the named columns.
pub fn json_rows(backend: Backend, param: usize, alias: &str, columns: &[(&str, Col)]) -> String {
    match backend {
        Backend::Postgres => {
            let defs: Vec<String> = columns
                .iter()
                .map(|(name, col)| {
                    format!(
                        "{name} {}",
                        match col {
                            Col::Text => "text",
                            Col::Int => "bigint",
                        }
                    )
                })
                .collect();
            format!(
                "json_to_recordset(${param}::json) AS {alias}({})",
                defs.join(", ")
            )
        }
        Backend::Sqlite => {
            let cols: Vec<String> = columns
                .iter()
                .map(|(name, _)| format!("value ->> '{name}' AS {name}"))
                .collect();
            format!(
                "(SELECT {} FROM json_each(${param})) AS {alias}",
                cols.join(", ")
            )
        }
    }
}

/// `column` matches one of the strings in parameter `param` (a JSON array of strings).
pub fn in_json_list(backend: Backend, column: &str, param: usize) -> String {
    match backend {
        Backend::Postgres => {
            format!("{column} = ANY(ARRAY(SELECT json_array_elements_text(${param}::json)))")
        }
        Backend::Sqlite => format!("{column} IN (SELECT value FROM json_each(${param}))"),
    }
}

/// ` FOR UPDATE [OF table]` on PostgreSQL; nothing on SQLite, whose write transaction holds
/// the whole database.
pub fn for_update(backend: Backend, of: Option<&str>) -> String {
    match (backend, of) {
        (Backend::Postgres, Some(table)) => format!(" FOR UPDATE OF {table}"),
        (Backend::Postgres, None) => " FOR UPDATE".to_owned(),
        (Backend::Sqlite, _) => String::new(),
    }
}

/// Serializes rows as the JSON text parameter of a bulk statement.
pub fn to_param<T: Serialize>(rows: &[T]) -> String {
    serde_json::to_string(rows).expect("bulk rows are plain strings and integers")
}

/// SQLite: `statements`, each reading its one JSON parameter as `$1`, as ONE query of several
/// statements (`…;\n…`), each statement's parameter renumbered to its place: bind them in
/// order. sqlx's SQLite driver runs such a query statement by statement on its worker thread,
/// answering each one's rows and count in order, where each query was a hop to that thread and
/// back. (sqlx calls several statements with arguments in one query a deprecated form, its
/// issue 3108: an upgrade that drops it fails every SQLite engine test rather than passing
/// unseen.)
pub fn one_call<'a>(statements: impl IntoIterator<Item = &'a str>) -> String {
    statements
        .into_iter()
        .enumerate()
        .map(|(n, sql)| {
            assert_eq!(
                sql.matches("$1").count(),
                1,
                "a statement of one call reads its one parameter once"
            );
            assert!(
                !sql.contains("$2"),
                "a statement of one call has one parameter"
            );
            sql.replace("$1", &format!("${}", n + 1))
        })
        .collect::<Vec<_>>()
        .join(";\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_call_numbers_each_statements_parameter() {
        let a = "SELECT value FROM json_each($1)";
        let b = "UPDATE t SET n = 1 WHERE id IN (SELECT value FROM json_each($1))";
        assert_eq!(
            one_call([a, b, a]),
            "SELECT value FROM json_each($1);\n\
             UPDATE t SET n = 1 WHERE id IN (SELECT value FROM json_each($2));\n\
             SELECT value FROM json_each($3)"
        );
    }

    #[test]
    fn each_dialect_expands_json_into_rows() {
        let cols = [("id", Col::Text), ("n", Col::Int)];
        assert_eq!(
            json_rows(Backend::Postgres, 2, "x", &cols),
            "json_to_recordset($2::json) AS x(id text, n bigint)"
        );
        assert_eq!(
            json_rows(Backend::Sqlite, 1, "x", &cols),
            "(SELECT value ->> 'id' AS id, value ->> 'n' AS n FROM json_each($1)) AS x"
        );
        assert_eq!(
            in_json_list(Backend::Sqlite, "id", 1),
            "id IN (SELECT value FROM json_each($1))"
        );
        assert_eq!(for_update(Backend::Sqlite, Some("w")), "");
    }
}
