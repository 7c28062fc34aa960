//! The report as one self-contained HTML page: inline CSS and SVG, no
//! script and no external resource (the Content-Security-Policy forbids
//! both), readable in a browser without JavaScript.

use super::svg::{esc, shares, timeline};
use super::{MAX_CHARTS, MAX_POINTS, MAX_ROWS, Summary, Table};
use std::fmt::Write;

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;margin:.5em 0 1.5em}\
th,td{border:1px solid #bbb;padding:3px 6px;font-size:13px;vertical-align:top;text-align:left}\
th{background:#eee}td{max-width:28em;overflow-wrap:anywhere}\
tr.high td:first-child{background:#f5b7b1}tr.medium td:first-child{background:#fad7a0}\
tr.low td:first-child{background:#d5f5e3}figure{margin:.5em 0 1em}\
figcaption{font-size:13px}.note{color:#666;font-size:13px}";

fn table(o: &mut String, t: &Table) {
    let _ = write!(o, "<h2>{}</h2>", esc(t.title));
    if t.rows.is_empty() {
        let _ = write!(o, r#"<p id="{}" class="note">None.</p>"#, t.id);
        return;
    }
    let _ = write!(o, r#"<table id="{}"><thead><tr>"#, t.id);
    for h in &t.head {
        let _ = write!(o, "<th>{}</th>", esc(h));
    }
    o.push_str("</tr></thead><tbody>");
    for (id, cells) in &t.rows {
        match id {
            // The first cell of a detection is its severity: the row's class.
            Some(id) => {
                let _ = write!(
                    o,
                    r#"<tr id="{}" class="{}">"#,
                    esc(id),
                    esc(cells.first().map(String::as_str).unwrap_or(""))
                );
            }
            None => o.push_str("<tr>"),
        }
        for c in cells {
            let _ = write!(o, "<td>{}</td>", esc(c));
        }
        o.push_str("</tr>");
    }
    o.push_str("</tbody></table>");
    if t.left_out > 0 {
        let _ = write!(
            o,
            r#"<p class="note">{} more not shown (at most {MAX_ROWS} rows).</p>"#,
            t.left_out
        );
    }
}

/// The page.
pub fn render(sum: &Summary) -> String {
    let mut o = String::with_capacity(64 << 10);
    let _ = write!(
        o,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'"><title>blindspot report</title><style>{STYLE}</style></head><body><h1>blindspot report</h1>"#
    );
    let _ = write!(
        o,
        r#"<p id="summary">{} records from {}"#,
        sum.records,
        esc(&sum.files.join(", "))
    );
    for (k, n) in &sum.by_type {
        let _ = write!(o, "; {} {}", n, esc(k));
    }
    if sum.bad_lines > 0 {
        let _ = write!(o, "; {} lines not JSON (skipped)", sum.bad_lines);
    }
    o.push_str(".</p>");
    let tables = sum.tables();
    let mut tables = tables.iter();
    if let Some(t) = tables.next() {
        table(&mut o, t);
    }
    o.push_str("<h2>Timelines</h2>");
    let charts = sum.charts();
    if charts.is_empty() {
        o.push_str(r#"<p class="note">No beacon or rejection series.</p>"#);
    }
    for (id, title, series, unit) in &charts {
        let shown = if series.total > series.points.len() {
            format!(
                " (the first {} of {}; at most {MAX_POINTS} points a chart)",
                series.points.len(),
                series.total
            )
        } else {
            String::new()
        };
        let _ = write!(
            o,
            "<figure>{}<figcaption>{}: {} from {}{}</figcaption></figure>",
            timeline(id, title, &series.points, unit),
            esc(title),
            series.total,
            esc(&series.start),
            esc(&shown)
        );
    }
    let _ = write!(
        o,
        r#"<p class="note">At most {MAX_CHARTS} charts per kind.</p><h2>Coverage: the blind spots</h2>"#
    );
    let rows = sum.coverage_shares();
    if rows.is_empty() {
        o.push_str(r#"<p id="coverage-chart" class="note">No coverage record.</p>"#);
    } else {
        o.push_str(&shares("coverage-chart", "Blind spots", &rows));
    }
    for t in tables {
        table(&mut o, t);
    }
    o.push_str("</body></html>\n");
    o
}
