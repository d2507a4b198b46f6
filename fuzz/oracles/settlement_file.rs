// The settlement file reader (`reconcile::reader::read_from`) on any bytes. Oracles: no panic;
// line numbers count up from 1 without gaps; every well-formed line keeps the file's rules
// (gross - fee = net, a reference present, no control characters, signs by type).
//
// Shared by the fuzz target `fuzz/fuzz_targets/settlement_file.rs` and the normal test suite
// (`crates/ferropay-cli/tests/api/fuzz_corpus.rs`), which runs the committed corpus and every
// regression input in `fuzz/regressions/settlement_file/` through it.

use ferropay::reconcile::line::{LineType, ReadLine};
use ferropay::reconcile::reader::read_from;

pub fn check(data: &[u8]) {
    let mut expected_line_no = 1_u64;
    let _ = read_from(data, "fuzz input", 7, |chunk| {
        for line in &chunk.lines {
            let line_no = match line {
                ReadLine::Line(line) => {
                    assert_eq!(
                        line.gross_minor.checked_sub(line.fee_minor),
                        Some(line.net_minor)
                    );
                    assert!(!line.psp_reference.is_empty());
                    assert!(!line.psp_reference.chars().any(char::is_control));
                    assert!(!line.merchant_reference.chars().any(char::is_control));
                    match line.kind {
                        LineType::Payment => assert!(line.gross_minor > 0),
                        LineType::Refund | LineType::Chargeback => assert!(line.gross_minor < 0),
                        _ => {}
                    }
                    line.line_no
                }
                ReadLine::Malformed { line_no, .. } => *line_no,
            };
            assert_eq!(line_no, expected_line_no);
            expected_line_no += 1;
        }
        assert!(chunk.bytes_read <= data.len() as u64);
        true
    });
}
