//! What `ferropay serve` prints when it is ready: where it listens and the next commands, spelled
//! so that they work from where the reader stands (`./target/debug/ferropay …` right after
//! `cargo run`, `ferropay …` when the binary is on the PATH).

use std::path::Path;

use ferropay::store::DEFAULT_DATABASE_URL;

/// How to run this very binary again from the current directory, from how it was started:
/// `ferropay` when the shell found it on the PATH, `./target/debug/ferropay` after `cargo run`
/// or when typed so, else its absolute path.
pub fn command_name() -> String {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let cwd = std::env::current_dir().ok();
    command_name_for(Path::new(&argv0), cwd.as_deref())
}

fn command_name_for(argv0: &Path, cwd: Option<&Path>) -> String {
    let text = argv0.to_string_lossy();
    if text.is_empty() {
        return "ferropay".to_owned();
    }
    if !text.contains('/') {
        // Found on the PATH by the shell.
        return text.into_owned();
    }
    if argv0.is_relative() {
        return if text.starts_with('.') {
            text.into_owned()
        } else {
            format!("./{text}")
        };
    }
    match cwd.and_then(|cwd| argv0.strip_prefix(cwd).ok()) {
        Some(relative) => format!("./{}", relative.display()),
        None => text.into_owned(),
    }
}

/// What the banner says.
pub struct Banner<'a> {
    pub command: &'a str,
    pub public_url: &'a str,
    pub database_url: &'a str,
    /// The in-process sandbox's base URL and API key, when it runs.
    pub sandbox: Option<(&'a str, &'a str)>,
    /// Today's UTC date, `YYYY-MM-DD`.
    pub today: &'a str,
}

impl Banner<'_> {
    pub fn render(&self) -> String {
        let Banner {
            command,
            public_url,
            database_url,
            sandbox,
            today,
        } = self;
        // The commands must reach the same database as this server.
        let database = if *database_url == DEFAULT_DATABASE_URL {
            String::new()
        } else if database_url.contains('@') {
            " --database-url …(as above)".to_owned()
        } else {
            format!(" --database-url {database_url}")
        };
        let mut out = format!(
            "ferropay is serving on {public_url} (API, webhooks, buyer pages)\n\
             \x20 make an API key:      {command} api-key create{database}\n\
             \x20 check the books:      {command} ledger verify{database}\n\
             \x20 a day's PSP file:     curl -s {public_url}/v1/reconciliation/settlement_files/{today} -H \"Authorization: Bearer $KEY\"\n"
        );
        if let Some((url, api_key)) = sandbox {
            out.push_str(&format!(
                "sandbox PSP (hosted payment page, test cards) on {url}\n\
                 \x20 its API key:          {api_key} (fixed with --sandbox-api-key)\n\
                 \x20 its settlement file:  curl -s {url}/v1/settlements/{today}.csv -H \"Authorization: Bearer {api_key}\"\n"
            ));
        }
        out.push_str("Stop with Ctrl-C.");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_is_what_works_from_here() {
        let clone = Path::new("/home/ada/ferropay");
        // `cargo run` starts the binary by its absolute path.
        assert_eq!(
            command_name_for(
                Path::new("/home/ada/ferropay/target/debug/ferropay"),
                Some(clone)
            ),
            "./target/debug/ferropay"
        );
        assert_eq!(
            command_name_for(Path::new("./target/debug/ferropay"), Some(clone)),
            "./target/debug/ferropay"
        );
        assert_eq!(
            command_name_for(Path::new("target/release/ferropay"), Some(clone)),
            "./target/release/ferropay"
        );
        assert_eq!(
            command_name_for(Path::new("ferropay"), Some(clone)),
            "ferropay"
        );
        assert_eq!(
            command_name_for(Path::new("/opt/ferropay/bin/ferropay"), Some(clone)),
            "/opt/ferropay/bin/ferropay"
        );
    }

    #[test]
    fn the_banner_names_the_database_when_it_is_not_the_default() {
        let banner = Banner {
            command: "./target/debug/ferropay",
            public_url: "http://127.0.0.1:8080",
            database_url: "sqlite://./other.db",
            sandbox: Some(("http://127.0.0.1:8090", "psk_1")),
            today: "2026-12-02",
        }
        .render();
        assert!(
            banner.contains(
                "./target/debug/ferropay api-key create --database-url sqlite://./other.db"
            )
        );
        assert!(banner.contains("Bearer psk_1"));
        assert!(banner.contains("/v1/settlements/2026-12-02.csv"));
    }
}
