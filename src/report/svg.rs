//! Inline SVG charts, drawn as text: a timeline (stems at each point's
//! time, as high as its value) and a bar chart of shares. No script, no
//! external reference; every label is escaped with [`esc`].

use super::Point;
use std::fmt::Write;

const W: f64 = 640.0;
const H: f64 = 150.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 30.0;

/// Text for HTML or SVG, element content or quoted attribute: `& < > " '`
/// escaped, and control characters (a terminal's escapes among them)
/// replaced by U+FFFD.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if c.is_control() => o.push('\u{fffd}'),
            c => o.push(c),
        }
    }
    o
}

/// A number for an axis label: whole, or with up to 2 decimals.
fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// A timeline: one stem per point at its time (seconds since the first),
/// as high as its value; `y_label` names the value.
pub fn timeline(id: &str, title: &str, points: &[Point], y_label: &str) -> String {
    let span = points.iter().map(|p| p.t).fold(0.0, f64::max);
    let ymax = points.iter().map(|p| p.y).fold(0.0, f64::max);
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let x = |t: f64| LEFT + if span > 0.0 { t / span * pw } else { pw / 2.0 };
    let y = |v: f64| TOP + ph - if ymax > 0.0 { v / ymax * ph } else { 0.0 };
    let mut o = String::new();
    let _ = write!(
        o,
        r##"<svg id="{id}" class="chart" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img"><title>{t}</title>"##,
        id = esc(id),
        t = esc(title)
    );
    let base = TOP + ph;
    let _ = write!(
        o,
        r##"<line x1="{LEFT}" y1="{base}" x2="{r}" y2="{base}" stroke="#444"/><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{base}" stroke="#444"/>"##,
        r = W - RIGHT
    );
    for p in points {
        let (px, py) = (x(p.t), y(p.y));
        let _ = write!(
            o,
            r##"<line x1="{px:.1}" y1="{base}" x2="{px:.1}" y2="{py:.1}" stroke="#c0392b"/><circle cx="{px:.1}" cy="{py:.1}" r="3" fill="#c0392b"><title>+{t} s: {v}</title></circle>"##,
            t = num(p.t),
            v = num(p.y)
        );
    }
    let _ = write!(
        o,
        r##"<text x="{LEFT}" y="{ty}" font-size="11">0 s</text><text x="{r}" y="{ty}" font-size="11" text-anchor="end">{span} s</text><text x="{lx}" y="{ly}" font-size="11" text-anchor="end">{ymax}</text><text x="{lx}" y="{base}" font-size="11" text-anchor="end">0</text><text x="4" y="{my}" font-size="11">{yl}</text></svg>"##,
        ty = H - 10.0,
        r = W - RIGHT,
        span = num(span),
        lx = LEFT - 4.0,
        ly = TOP + 10.0,
        ymax = num(ymax),
        my = TOP + ph / 2.0,
        yl = esc(y_label)
    );
    o
}

/// Horizontal bars: per row its name, `count` of `of`, and the share.
pub fn shares(id: &str, title: &str, rows: &[(String, u64, u64)]) -> String {
    const ROW: f64 = 22.0;
    const LABEL: f64 = 190.0;
    let h = TOP + ROW * rows.len() as f64 + 8.0;
    let bar_w = W - LABEL - 130.0;
    let mut o = String::new();
    let _ = write!(
        o,
        r##"<svg id="{id}" class="chart" width="{W}" height="{h}" viewBox="0 0 {W} {h}" role="img"><title>{t}</title>"##,
        id = esc(id),
        t = esc(title)
    );
    for (i, (name, count, of)) in rows.iter().enumerate() {
        let share = if *of > 0 {
            *count as f64 / *of as f64
        } else {
            0.0
        };
        let share = share.clamp(0.0, 1.0);
        let y0 = TOP + ROW * i as f64;
        let _ = write!(
            o,
            r##"<text x="{lx}" y="{ty}" font-size="12" text-anchor="end">{n}</text><rect x="{LABEL}" y="{y0}" width="{bar_w}" height="14" fill="#eee"/><rect x="{LABEL}" y="{y0}" width="{w:.1}" height="14" fill="#d35400"/><text x="{vx}" y="{ty}" font-size="12">{count} of {of} ({pct:.1} %)</text>"##,
            lx = LABEL - 6.0,
            ty = y0 + 11.0,
            n = esc(name),
            w = bar_w * share,
            vx = LABEL + bar_w + 6.0,
            pct = share * 100.0
        );
    }
    o.push_str("</svg>");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_labels_are_escaped() {
        let t = timeline(
            "a\"b",
            "<script>alert(1)</script>",
            &[Point { t: 0.0, y: 1.0 }],
            "x'\u{1b}[2J",
        );
        assert!(!t.contains("<script"), "{t}");
        assert!(t.contains("&lt;script&gt;"));
        assert!(t.contains("a&quot;b"));
        assert!(t.contains("x&#39;\u{fffd}[2J"));
    }

    #[test]
    fn stems_span_the_plot() {
        let pts = [Point { t: 0.0, y: 10.0 }, Point { t: 30.0, y: 5.0 }];
        let t = timeline("b", "t", &pts, "bytes");
        // The first at the left edge, full height; the last at the right, half.
        assert!(t.contains(r#"<circle cx="56.0" cy="14.0""#), "{t}");
        assert!(t.contains(r#"<circle cx="624.0" cy="67.0""#), "{t}");
        assert!(t.contains(">30 s<"));
    }
}
