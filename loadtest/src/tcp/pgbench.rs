//! Parsing what `pgbench` prints: its report on stdout, and the clients
//! that aborted on stderr.

/// What a pgbench run reported.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Transactions per second (without the initial connection time).
    pub tps: f64,
    /// Transactions processed.
    pub processed: u64,
    /// Failed transactions plus clients that aborted.
    pub errors: u64,
}

/// Parses pgbench's report (stdout) and counts the clients that aborted
/// (stderr). A run cut short by aborted clients prints
/// `processed: N/M`; its N counts.
pub fn parse(stdout: &str, stderr: &str) -> Option<Report> {
    let mut tps = None;
    let mut processed = None;
    let mut failed = 0;
    for line in stdout.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("tps = ") {
            tps = rest.split_whitespace().next()?.parse().ok();
        } else if let Some(rest) = line.strip_prefix("number of transactions actually processed: ")
        {
            processed = rest.split('/').next()?.trim().parse().ok();
        } else if let Some(rest) = line.strip_prefix("number of failed transactions: ") {
            failed = rest.split_whitespace().next()?.parse().ok()?;
        }
    }
    let aborted = stderr
        .lines()
        .filter(|l| l.contains("client ") && l.contains(" aborted "))
        .count() as u64;
    Some(Report {
        tps: tps?,
        processed: processed?,
        errors: failed + aborted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLEAN: &str = include_str!("testdata/pgbench.txt");

    #[test]
    fn parses_a_clean_run() {
        let r = parse(CLEAN, "").expect("parses");
        assert_eq!(r.processed, 57_928);
        assert!((r.tps - 19_410.852_09).abs() < 1e-6);
        assert_eq!(r.errors, 0);
    }

    #[test]
    fn counts_failures_and_aborted_clients() {
        let stdout = CLEAN
            .replace("processed: 57928", "processed: 50000/57928")
            .replace(
                "failed transactions: 0 (0.000%)",
                "failed transactions: 3 (0.006%)",
            );
        let stderr = "pgbench: error: client 3 aborted in command 1 (SQL) of script 0; perhaps the backend died while processing\n\
                      pgbench: error: client 7 aborted in command 1 (SQL) of script 0; perhaps the backend died while processing\n\
                      pgbench: error: Run was aborted; the above results are incomplete.\n";
        let r = parse(&stdout, stderr).expect("parses");
        assert_eq!(r.processed, 50_000);
        assert_eq!(r.errors, 5);
    }

    #[test]
    fn a_run_that_never_connected_is_no_report() {
        let stderr = "pgbench: error: connection to server at \"127.0.0.1\", port 15499 failed: Connection refused\n";
        assert_eq!(parse("", stderr), None);
    }
}
