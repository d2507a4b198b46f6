// The PSP webhook's signature check and body parser (`SandboxConnector::verify_webhook`), on
// any header and body. The first byte picks the mode: odd, the body is signed correctly (so the
// fuzzer reaches the JSON parser behind the signature); even, the next bytes up to a newline
// are the header itself. Oracles: no panic; an unsigned or wrongly signed body is never
// accepted; an accepted event has an id.
//
// Shared by the fuzz target `fuzz/fuzz_targets/webhook.rs` and the normal test suite
// (`crates/ferropay-cli/tests/api/fuzz_corpus.rs`), which runs the committed corpus and every
// regression input in `fuzz/regressions/webhook/` through it.

use std::sync::OnceLock;

use ferropay::psp::sandbox::SandboxConnector;
use ferropay::psp::{Connector, WebhookError, signature};
use ferropay::secret::Secret;

const SECRET: &str = "whsec_fuzz";
const NOW_S: i64 = 1_764_000_000;

fn connector() -> &'static SandboxConnector {
    static CONNECTOR: OnceLock<SandboxConnector> = OnceLock::new();
    CONNECTOR.get_or_init(|| {
        SandboxConnector::new(
            "http://127.0.0.1:9",
            Secret::new("psk_fuzz"),
            Secret::new(SECRET),
            1_000,
            None,
        )
        .expect("a connector")
    })
}

pub fn check(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 1 {
        let header = signature::sign(&Secret::new(SECRET), NOW_S, rest);
        match connector().verify_webhook(Some(&header), rest, NOW_S) {
            Ok(events) => assert!(
                events.iter().all(|event| !event.id.is_empty()),
                "an event without an id"
            ),
            Err(WebhookError::MalformedBody(_)) => {}
            Err(other) => panic!("a correctly signed body refused for its signature: {other}"),
        }
    } else {
        let split = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let header = String::from_utf8_lossy(&rest[..split]);
        let body = rest.get(split + 1..).unwrap_or(&[]);
        let result = connector().verify_webhook(Some(&header), body, NOW_S);
        if result.is_ok() {
            // Accepted: then the header holds the body's true signature at its timestamp (the
            // last `t=`, as the parser reads it), within the tolerance.
            let t = header
                .split(',')
                .filter_map(|part| part.trim().strip_prefix("t="))
                .filter_map(|t| t.parse::<i64>().ok())
                .next_back()
                .expect("accepted without a timestamp");
            assert!((t - NOW_S).abs() <= signature::TOLERANCE_S);
            let expected = signature::sign(&Secret::new(SECRET), t, body);
            let v1 = expected.split_once(",v1=").map(|(_, v1)| v1).unwrap_or("");
            assert!(
                header.to_ascii_lowercase().contains(v1),
                "accepted a body whose signature is not in the header"
            );
        }
    }
}
