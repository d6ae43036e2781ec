//! A plain-text table, printed as Markdown so that it can be pasted into notes as is.

/// Rows of cells under a header.
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column names.
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// The table of the runtime benchmarks: each figure beside the floor taken just before and
    /// just after it, what it is compared with, the ratio, and the target.
    pub fn beside_floors() -> Table {
        Table::new(&[
            "benchmark",
            "Atoll",
            "floor before",
            "floor after",
            "compared with",
            "ratio",
            "target",
        ])
    }

    /// Appends a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as Markdown, columns padded to equal width.
    pub fn render(&self) -> String {
        let columns = self.header.len();
        let width = |c: usize| {
            self.rows
                .iter()
                .filter_map(|r| r.get(c))
                .chain(std::iter::once(&self.header[c]))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..columns).map(width).collect();
        let line = |cells: &[String]| {
            let padded: Vec<String> = (0..columns)
                .map(|c| {
                    format!(
                        "{:<w$}",
                        cells.get(c).map_or("", String::as_str),
                        w = widths[c]
                    )
                })
                .collect();
            format!("| {} |", padded.join(" | "))
        };
        let mut out = vec![line(&self.header)];
        out.push(format!(
            "|{}|",
            widths
                .iter()
                .map(|w| "-".repeat(w + 2))
                .collect::<Vec<_>>()
                .join("|")
        ));
        out.extend(self.rows.iter().map(|r| line(r)));
        out.join("\n")
    }
}

/// Nanoseconds, human-readable.
pub fn ns(v: f64) -> String {
    format!("{v:.0} ns")
}

/// A rate, in scientific notation.
pub fn rate(per_s: f64, unit: &str) -> String {
    format!("{per_s:.2e} {unit}/s")
}

/// Bandwidth in GB/s (10^9 bytes).
pub fn gbps(bytes_per_s: f64) -> String {
    format!("{:.2} GB/s", bytes_per_s / 1e9)
}

/// A ratio `a / b`.
pub fn ratio(a: f64, b: f64) -> String {
    format!("{:.2}x", a / b)
}

/// `a / b`, marked when the floor moved by more than 2x between the figures compared (the host
/// changed state between them).
pub fn ratio_in_state(a: f64, b: f64, floors: &[f64]) -> String {
    let (lo, hi) = floors
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &f| (lo.min(f), hi.max(f)));
    if hi > 2.0 * lo {
        format!("{} (host state changed)", ratio(a, b))
    } else {
        ratio(a, b)
    }
}

/// `target: met` or `target: missed`.
pub fn verdict(met: bool, target: String) -> String {
    format!("{target}: {}", if met { "met" } else { "missed" })
}
