//! The harness's results: one Markdown table (scenario, system, req/s,
//! p50, p99, MB/s, RSS, ratio against the scenario's first row) and an SVG
//! plot of the latency distributions, one panel per scenario.

use std::fmt::Write as _;

use crate::Sample;

/// What a scenario's ratio column compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Rps,
    MbPerSec,
    P99,
    Rss,
}

impl Key {
    fn label(self) -> &'static str {
        match self {
            Key::Rps => "req/s",
            Key::MbPerSec => "MB/s",
            Key::P99 => "p99",
            Key::Rss => "RSS",
        }
    }

    fn of(self, r: &Row) -> Option<f64> {
        match self {
            Key::Rps => r.rps,
            Key::MbPerSec => r.mb_s,
            Key::P99 => r.p99_ms,
            Key::Rss => r.rss_mib,
        }
    }
}

/// One system's medians in one scenario.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub system: String,
    pub rps: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub mb_s: Option<f64>,
    pub rss_mib: Option<f64>,
    /// (percentile, ms) points for the plot; empty if not a latency run.
    pub dist: Vec<(f64, f64)>,
}

impl Row {
    /// A load run's row: rates, latencies and its distribution.
    pub fn from_sample(system: &str, s: &Sample, rss_mib: Option<f64>) -> Row {
        Row {
            system: system.to_string(),
            rps: Some(s.rps),
            p50_ms: Some(s.p50_ms),
            p99_ms: Some(s.p99_ms),
            mb_s: Some(s.mb_s),
            rss_mib,
            dist: s.percentiles(),
        }
    }
}

/// A scenario's rows, first row the baseline.
#[derive(Debug, Clone)]
pub struct Section {
    pub scenario: String,
    pub key: Key,
    /// What was run, one line for the results file.
    pub how: String,
    pub rows: Vec<Row>,
}

fn cell(v: Option<f64>, decimals: usize) -> String {
    v.map(|v| format!("{v:.decimals$}"))
        .unwrap_or_else(|| "–".into())
}

/// The results table and, under it, what each scenario ran.
pub fn markdown(sections: &[Section]) -> String {
    let mut md = String::from(
        "| scenario | system | req/s | p50 ms | p99 ms | MB/s | RSS MiB | vs first row |\n\
         |---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for s in sections {
        let base = s.rows.first().and_then(|r| s.key.of(r));
        for r in &s.rows {
            let ratio = match (s.key.of(r), base) {
                (Some(v), Some(b)) if b > 0.0 => format!("{:.2}x {}", v / b, s.key.label()),
                _ => "–".into(),
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                s.scenario,
                r.system,
                cell(r.rps, 0),
                cell(r.p50_ms, 3),
                cell(r.p99_ms, 3),
                cell(r.mb_s, 1),
                cell(r.rss_mib, 1),
                ratio
            );
        }
    }
    md.push_str("\nScenarios:\n");
    for s in sections {
        let _ = writeln!(md, "- **{}**: {}", s.scenario, s.how);
    }
    md
}

const PALETTE: [&str; 6] = [
    "#4e79a7", "#e15759", "#59a14f", "#f28e2b", "#b07aa1", "#76b7b2",
];
const PANEL_W: f64 = 640.0;
const PANEL_H: f64 = 230.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 40.0;

/// Percentiles spread as latency plots usually do: 50, 90, 99, 99.9 at
/// equal steps.
fn pct_x(p: f64) -> f64 {
    -(1.0 - p / 100.0).max(1e-4).log10()
}

/// Latency distributions, one panel per scenario that has them; x is the
/// percentile, y the latency on a log scale.
pub fn svg(sections: &[Section]) -> String {
    let panels: Vec<&Section> = sections
        .iter()
        .filter(|s| s.rows.iter().any(|r| !r.dist.is_empty()))
        .collect();
    let height = PANEL_H * panels.len() as f64;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{PANEL_W}\" height=\"{height}\" \
         viewBox=\"0 0 {PANEL_W} {height}\" font-family=\"sans-serif\" font-size=\"11\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    // One colour per system across all panels.
    let mut systems: Vec<&str> = Vec::new();
    for r in panels.iter().flat_map(|s| &s.rows) {
        if !systems.contains(&r.system.as_str()) {
            systems.push(&r.system);
        }
    }
    let color = |name: &str| {
        let i = systems.iter().position(|s| *s == name).unwrap_or(0);
        PALETTE[i % PALETTE.len()]
    };
    for (i, s) in panels.iter().enumerate() {
        panel(&mut out, s, PANEL_H * i as f64, &color);
    }
    out.push_str("</svg>\n");
    out
}

fn panel(out: &mut String, s: &Section, y0: f64, color: &dyn Fn(&str) -> &'static str) {
    let points: Vec<f64> = s
        .rows
        .iter()
        .flat_map(|r| r.dist.iter().map(|(_, ms)| *ms))
        .filter(|ms| *ms > 0.0)
        .collect();
    let (lo, hi) = points
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    if points.is_empty() {
        return;
    }
    // Whole decades, so the grid lines land on 0.1, 1, 10 ms.
    let (dlo, dhi) = (
        lo.log10().floor(),
        hi.log10().ceil().max(lo.log10().floor() + 1.0),
    );
    let top_pct = s
        .rows
        .iter()
        .flat_map(|r| r.dist.iter().map(|(p, _)| *p))
        .fold(99.0, f64::max);
    let (x_max, w, h) = (
        pct_x(top_pct),
        PANEL_W - LEFT - RIGHT,
        PANEL_H - TOP - BOTTOM,
    );
    let px = |p: f64| LEFT + pct_x(p) / x_max * w;
    let py = |ms: f64| y0 + TOP + h - (ms.log10() - dlo) / (dhi - dlo) * h;
    let _ = writeln!(
        out,
        "<text x=\"{LEFT}\" y=\"{}\" font-size=\"13\" font-weight=\"bold\">{}</text>",
        y0 + 18.0,
        escape(&s.scenario)
    );
    for p in [50.0, 75.0, 90.0, 99.0, 99.9]
        .into_iter()
        .filter(|p| *p <= top_pct)
    {
        let x = px(p);
        let _ = writeln!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">p{p}</text>",
            y0 + TOP,
            y0 + TOP + h,
            y0 + TOP + h + 14.0
        );
    }
    let mut decade = dlo;
    while decade <= dhi {
        let ms = 10f64.powf(decade);
        let y = py(ms);
        let _ = writeln!(
            out,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{} ms</text>",
            LEFT + w,
            LEFT - 6.0,
            y + 4.0,
            ms
        );
        decade += 1.0;
    }
    for (i, r) in s.rows.iter().filter(|r| !r.dist.is_empty()).enumerate() {
        let color = color(&r.system);
        let pts: Vec<String> = r
            .dist
            .iter()
            .filter(|(_, ms)| *ms > 0.0)
            .map(|(p, ms)| format!("{:.1},{:.1}", px(*p), py(*ms)))
            .collect();
        let _ = writeln!(
            out,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" fill=\"{color}\">{}</text>",
            pts.join(" "),
            LEFT + w + 10.0,
            y0 + TOP + 12.0 + 15.0 * i as f64,
            escape(&r.system)
        );
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section() -> Section {
        let s = |rps, p50, p99| Sample {
            rps,
            p50_ms: p50,
            p75_ms: p50 * 1.2,
            p90_ms: p50 * 1.5,
            p99_ms: p99,
            p999_ms: 0.0,
            mb_s: rps * 200.0 / 1e6,
        };
        Section {
            scenario: "HTTPS keep-alive".into(),
            key: Key::Rps,
            how: "wrk".into(),
            rows: vec![
                Row::from_sample("direct", &s(100_000.0, 0.2, 0.9), None),
                Row::from_sample("gangway <edge>", &s(20_000.0, 1.5, 3.5), Some(90.0)),
            ],
        }
    }

    #[test]
    fn the_table_gives_ratios_against_the_first_row() {
        let md = markdown(&[section()]);
        assert!(
            md.contains(
                "| HTTPS keep-alive | direct | 100000 | 0.200 | 0.900 | 20.0 | – | 1.00x req/s |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| gangway <edge> | 20000 | 1.500 | 3.500 | 4.0 | 90.0 | 0.20x req/s |"),
            "{md}"
        );
    }

    #[test]
    fn the_plot_has_a_line_per_system_inside_its_panel() {
        let svg = svg(&[section()]);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("gangway &lt;edge&gt;"));
        for pts in svg.split("points=\"").skip(1) {
            for xy in pts.split('"').next().unwrap_or("").split(' ') {
                let (x, y) = xy.split_once(',').unwrap();
                let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
                assert!((LEFT..=PANEL_W - RIGHT).contains(&x), "{x}");
                assert!((TOP..=PANEL_H - BOTTOM).contains(&y), "{y}");
            }
        }
    }
}
