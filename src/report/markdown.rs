//! The report as Markdown tables for a terminal (`report` without `-o`, or
//! with `-o -`). Cells are cleaned of what a terminal or a table would
//! read as markup: control characters (escape sequences), `|`, backticks
//! and newlines.

use super::{MAX_ROWS, Summary, Table};
use std::fmt::Write;

/// A cell: control characters replaced by U+FFFD, `|` escaped.
fn cell(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            c if c.is_control() => "\u{fffd}".to_string(),
            '|' => "\\|".to_string(),
            '`' => "'".to_string(),
            c => c.to_string(),
        })
        .collect()
}

fn table(o: &mut String, t: &Table) {
    let _ = writeln!(o, "## {}\n", t.title);
    if t.rows.is_empty() {
        o.push_str("None.\n\n");
        return;
    }
    let _ = writeln!(o, "| {} |", t.head.join(" | "));
    let _ = writeln!(o, "|{}", " --- |".repeat(t.head.len()));
    for (_, cells) in &t.rows {
        let c: Vec<String> = cells.iter().map(|c| cell(c)).collect();
        let _ = writeln!(o, "| {} |", c.join(" | "));
    }
    if t.left_out > 0 {
        let _ = writeln!(
            o,
            "\n{} more not shown (at most {MAX_ROWS} rows).",
            t.left_out
        );
    }
    o.push('\n');
}

/// The text.
pub fn render(sum: &Summary) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# blindspot report\n\n{} records from {}.\n",
        sum.records,
        cell(&sum.files.join(", "))
    );
    let tables = sum.tables();
    if let Some(t) = tables.first() {
        table(&mut o, t);
    }
    o.push_str("## Timelines\n\n");
    for (_, title, series, unit) in sum.charts() {
        let pts: Vec<String> = series
            .points
            .iter()
            .take(24)
            .map(|p| format!("+{:.1}s {}", p.t, p.y))
            .collect();
        let _ = writeln!(
            o,
            "- {} ({} from {}, {unit}): {}{}",
            cell(&title),
            series.total,
            cell(&series.start),
            pts.join(", "),
            if series.points.len() > 24 {
                ", …"
            } else {
                ""
            }
        );
    }
    o.push_str("\n## Coverage: the blind spots\n\n| blind spot | count | of | share |\n| --- | --- | --- | --- |\n");
    for (name, count, of) in sum.coverage_shares() {
        let share = if of > 0 {
            format!("{:.1} %", count as f64 * 100.0 / of as f64)
        } else {
            "-".into()
        };
        let _ = writeln!(o, "| {name} | {count} | {of} | {share} |");
    }
    o.push('\n');
    for t in tables.iter().skip(1) {
        table(&mut o, t);
    }
    o
}
