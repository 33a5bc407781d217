//! Line plots as inline SVG, drawn on the server: no script, no fonts to fetch, readable in
//! any browser and in a screenshot. Pure: data in, markup out.
//!
//! Each plot's `<svg>` carries `data-plot` (its id), `data-series` (series drawn) and
//! `data-points` (points drawn), and each line its `data-series` label, so a test (or a
//! curious operator) can tell an empty plot from one with data without reading pixels.

use std::fmt::Write;

use super::escape;

/// Points one series may have; more are thinned (every n-th kept) before drawing.
pub const MAX_POINTS: usize = 2000;
/// Series one plot may have; more are dropped (and the plot says so).
pub const MAX_SERIES: usize = 12;

pub const WIDTH: u32 = 560;
pub const HEIGHT: u32 = 180;
/// Room for the y labels on the left and the x labels below.
const LEFT: f64 = 52.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 22.0;

/// How far above the data's maximum a rule may be and still be drawn to scale.
pub const RULE_REACH: f64 = 3.0;

/// Colours that stay apart for common colour blindness (Okabe–Ito).
pub const PALETTE: [&str; 8] = ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#f0e442"];

#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub label: String,
    pub color: &'static str,
    /// `(x, y)`: x in ms since the epoch; a non-finite y is a gap.
    pub points: Vec<(f64, f64)>,
    pub dashed: bool,
}

/// A horizontal reference line (a budget, a limit).
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub label: String,
    pub y: f64,
    pub color: &'static str,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plot {
    pub id: String,
    pub title: String,
    /// Of the y axis (`MB`, `ms`, `%`).
    pub unit: String,
    /// The x range shown (ms since the epoch); points outside are dropped.
    pub from_ms: u64,
    pub to_ms: u64,
    pub series: Vec<Series>,
    pub rules: Vec<Rule>,
}

/// Axis ticks: about `n` round numbers from 0 to at least `max`.
pub fn ticks(max: f64, n: usize) -> Vec<f64> {
    let max = if max.is_finite() && max > 0.0 { max } else { 1.0 };
    let raw = max / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let count = (max / step).ceil() as usize;
    (0..=count.min(50)).map(|i| i as f64 * step).collect()
}

/// `1500` → `1.5k`, `0.25` → `0.25`: short labels for the y axis.
pub fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.3}G", v / 1e9).trim_end_matches('0').trim_end_matches('.').to_owned()
    } else if a >= 1e6 {
        format!("{:.3}M", v / 1e6).replace(".000M", "M")
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 1000.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Keep at most `max` points, evenly spread, always with the last.
fn thin(points: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    if points.len() <= max || max < 2 {
        return points.iter().copied().take(max.max(points.len().min(1))).collect();
    }
    let step = points.len() as f64 / (max - 1) as f64;
    let mut out: Vec<(f64, f64)> = (0..max - 1).map(|i| points[(i as f64 * step) as usize]).collect();
    if let Some(last) = points.last() {
        out.push(*last);
    }
    out
}

/// The plot as an `<svg>` element (with a legend below it, inside a `<figure>`).
pub fn render(plot: &Plot) -> String {
    let (w, h) = (f64::from(WIDTH), f64::from(HEIGHT));
    let (x0, x1) = (plot.from_ms as f64, (plot.to_ms.max(plot.from_ms + 1)) as f64);
    let series: Vec<(&Series, Vec<(f64, f64)>)> = plot
        .series
        .iter()
        .take(MAX_SERIES)
        .map(|s| {
            let inside: Vec<(f64, f64)> = s.points.iter().copied().filter(|(x, _)| *x >= x0 && *x <= x1).collect();
            (s, thin(&inside, MAX_POINTS))
        })
        .collect();
    let finite = |p: &&(f64, f64)| p.1.is_finite();
    let data_max = series.iter().flat_map(|(_, pts)| pts.iter().filter(finite).map(|p| p.1)).fold(0.0f64, f64::max);
    // a rule far above the data (a 2 s budget over 20 ms answers) would flatten the lines:
    // it is named at the top instead of scaling the axis
    let on_scale = |r: &&Rule| r.y.is_finite() && (data_max <= 0.0 || r.y <= data_max * RULE_REACH);
    let rule_max = plot.rules.iter().filter(on_scale).map(|r| r.y).fold(0.0f64, f64::max);
    let ys = ticks(data_max.max(rule_max) * 1.05, 4);
    let y_max = ys.last().copied().unwrap_or(1.0).max(f64::MIN_POSITIVE);
    let px = |x: f64| LEFT + (x - x0) / (x1 - x0) * (w - LEFT - RIGHT);
    let py = |y: f64| TOP + (1.0 - y.max(0.0) / y_max) * (h - TOP - BOTTOM);
    let drawn: usize = series.iter().map(|(_, pts)| pts.iter().filter(finite).count()).sum();

    let mut out = String::with_capacity(4096);
    let _ = write!(
        out,
        "<figure class=\"plot\"><figcaption>{title} <span class=\"unit\">({unit})</span></figcaption>\
         <svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         role=\"img\" aria-label=\"{title}\" data-plot=\"{id}\" data-series=\"{n}\" data-points=\"{drawn}\">",
        title = escape(&plot.title),
        unit = escape(&plot.unit),
        id = escape(&plot.id),
        n = series.len(),
    );
    // grid and y labels
    for y in &ys {
        let _ = write!(
            out,
            "<line x1=\"{LEFT}\" x2=\"{x2:.1}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"#ddd\" stroke-width=\"1\"/>\
             <text x=\"{tx:.1}\" y=\"{ty:.1}\" font-size=\"10\" text-anchor=\"end\" fill=\"#555\">{label}</text>",
            x2 = w - RIGHT,
            yy = py(*y),
            tx = LEFT - 4.0,
            ty = py(*y) + 3.5,
            label = short(*y),
        );
    }
    // x labels: hours before the end of the range (no time zones to get wrong)
    let span_h = (x1 - x0) / 3_600_000.0;
    for i in 0..=4 {
        let x = x0 + (x1 - x0) * f64::from(i) / 4.0;
        let ago = span_h * (1.0 - f64::from(i) / 4.0);
        let label = if i == 4 {
            "now".to_owned()
        } else if span_h >= 4.0 {
            format!("-{ago:.0} h")
        } else if span_h >= 4.0 / 60.0 {
            format!("-{:.0} min", ago * 60.0)
        } else {
            format!("-{:.0} s", ago * 3600.0)
        };
        let anchor = match i {
            0 => "start",
            4 => "end",
            _ => "middle",
        };
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"{anchor}\" fill=\"#555\">{label}</text>",
            px(x),
            h - 6.0,
        );
    }
    let _ = write!(out, "<line x1=\"{LEFT}\" x2=\"{LEFT}\" y1=\"{TOP}\" y2=\"{:.1}\" stroke=\"#999\"/>", h - BOTTOM);
    let mut above = 0;
    for r in &plot.rules {
        if !r.y.is_finite() {
            continue;
        }
        if !on_scale(&r) {
            above += 1;
            let _ = write!(
                out,
                "<text class=\"rule\" data-rule=\"{label}\" data-above=\"true\" x=\"{x:.1}\" y=\"{y:.1}\" \
                 font-size=\"10\" text-anchor=\"end\" fill=\"{c}\">{label} ↑ (above the scale)</text>",
                label = escape(&r.label),
                x = w - RIGHT,
                y = TOP + 10.0 * f64::from(above),
                c = r.color,
            );
            continue;
        }
        let _ = write!(
            out,
            "<line class=\"rule\" data-rule=\"{label}\" x1=\"{LEFT}\" x2=\"{x2:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" \
             stroke=\"{c}\" stroke-width=\"1.5\" stroke-dasharray=\"2 3\"/>\
             <text x=\"{x2:.1}\" y=\"{ty:.1}\" font-size=\"10\" text-anchor=\"end\" fill=\"{c}\">{label}</text>",
            label = escape(&r.label),
            x2 = w - RIGHT,
            y = py(r.y),
            ty = py(r.y) - 3.0,
            c = r.color,
        );
    }
    for (s, pts) in &series {
        // a gap (non-finite y) splits a line into segments
        let mut segments: Vec<String> = Vec::new();
        let mut cur = String::new();
        for (x, y) in pts {
            if y.is_finite() {
                let _ = write!(cur, "{:.1},{:.1} ", px(*x), py(*y));
            } else if !cur.is_empty() {
                segments.push(std::mem::take(&mut cur));
            }
        }
        if !cur.is_empty() {
            segments.push(cur);
        }
        let dash = if s.dashed { " stroke-dasharray=\"6 4\"" } else { "" };
        for seg in segments {
            let _ = write!(
                out,
                "<polyline data-series=\"{label}\" fill=\"none\" stroke=\"{c}\" stroke-width=\"1.5\"{dash} points=\"{pts}\"/>",
                label = escape(&s.label),
                c = s.color,
                pts = seg.trim_end(),
            );
        }
    }
    if drawn == 0 {
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"middle\" fill=\"#888\">no samples in this range</text>",
            (LEFT + w - RIGHT) / 2.0,
            h / 2.0
        );
    }
    out.push_str("</svg><div class=\"legend\">");
    for (s, _) in &series {
        let _ = write!(
            out,
            "<span><svg width=\"12\" height=\"4\"><rect width=\"12\" height=\"4\" fill=\"{c}\"/></svg> {label}{dash}</span>",
            c = s.color,
            label = escape(&s.label),
            dash = if s.dashed { " (fit)" } else { "" }
        );
    }
    if plot.series.len() > MAX_SERIES {
        let _ = write!(out, "<span>(and {} more, not drawn)</span>", plot.series.len() - MAX_SERIES);
    }
    out.push_str("</div></figure>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plot(points: Vec<(f64, f64)>) -> Plot {
        Plot {
            id: "mem".into(),
            title: "Memory <rss>".into(),
            unit: "MB".into(),
            from_ms: 0,
            to_ms: 1000,
            series: vec![Series { label: "rss".into(), color: PALETTE[0], points, dashed: false }],
            rules: vec![Rule { label: "budget 512 MB".into(), y: 512.0, color: "#c00" }],
        }
    }

    #[test]
    fn a_plot_says_what_it_drew() {
        let svg = render(&plot(vec![(0.0, 10.0), (500.0, 20.0), (1000.0, 30.0), (2000.0, 99.0)]));
        assert!(svg.contains("data-points=\"3\""), "the point outside the range is dropped: {svg}");
        assert!(svg.contains("data-series=\"1\""));
        assert!(svg.contains("<polyline data-series=\"rss\""));
        assert!(svg.contains("data-rule=\"budget 512 MB\""));
        assert!(svg.contains("Memory &lt;rss&gt;"), "titles are escaped");
        assert!(!svg.contains("<rss>"));
        assert!(!svg.contains("no samples"));
    }

    #[test]
    fn gaps_split_lines_and_an_empty_plot_says_so() {
        let svg = render(&plot(vec![(0.0, 1.0), (100.0, 2.0), (200.0, f64::NAN), (300.0, 3.0), (400.0, 4.0)]));
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
        assert!(svg.contains("data-points=\"4\""));
        let empty = render(&plot(vec![]));
        assert!(empty.contains("data-points=\"0\"") && empty.contains("no samples in this range"));
    }

    #[test]
    fn the_y_axis_holds_the_data_and_the_rules() {
        // the budget line (512) is above the data, within reach: the axis reaches it
        let svg = render(&plot(vec![(0.0, 10.0), (1000.0, 300.0)]));
        let y_of = |svg: &str, needle: &str| -> f64 {
            let at = svg.find(needle).unwrap();
            let rest = &svg[at..];
            let y1 = rest.find("y1=\"").unwrap() + 4;
            rest[y1..y1 + rest[y1..].find('"').unwrap()].parse().unwrap()
        };
        let rule_y = y_of(&svg, "data-rule=");
        assert!(rule_y >= TOP && rule_y < f64::from(HEIGHT) - BOTTOM, "{rule_y}");
        // every drawn coordinate is inside the frame
        for pts in svg.split(" points=\"").skip(1) {
            for xy in pts[..pts.find('"').unwrap()].split_whitespace() {
                let (x, y) = xy.split_once(',').unwrap();
                let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
                assert!((LEFT..=f64::from(WIDTH)).contains(&x) && (0.0..=f64::from(HEIGHT)).contains(&y), "{xy}");
            }
        }
    }

    #[test]
    fn a_rule_far_above_the_data_is_named_not_drawn() {
        let svg = render(&plot(vec![(0.0, 10.0), (1000.0, 20.0)]));
        assert!(svg.contains("data-above=\"true\""), "{svg}");
        assert!(svg.contains("budget 512 MB ↑"));
        assert!(!svg.contains(">500<"), "the axis stays near the data: {svg}");
    }

    #[test]
    fn many_points_and_series_are_bounded() {
        let pts: Vec<(f64, f64)> = (0..10_000).map(|i| (i as f64 / 10.0, i as f64)).collect();
        let mut p = plot(pts);
        p.series = (0..MAX_SERIES + 3).map(|i| Series { label: format!("s{i}"), ..p.series[0].clone() }).collect();
        let svg = render(&p);
        assert!(svg.contains(&format!("data-series=\"{MAX_SERIES}\"")));
        assert!(svg.contains(&format!("data-points=\"{}\"", MAX_SERIES * MAX_POINTS)));
        assert!(svg.contains("and 3 more, not drawn"));
        assert_eq!(thin(&[(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)], 2), vec![(0.0, 1.0), (2.0, 3.0)]);
    }

    #[test]
    fn ticks_are_round_and_cover_the_maximum() {
        assert_eq!(ticks(100.0, 4), vec![0.0, 25.0, 50.0, 75.0, 100.0]);
        assert_eq!(ticks(0.0, 4), vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        let t = ticks(537.6, 4);
        assert!(*t.last().unwrap() >= 537.6 && t.len() <= 6, "{t:?}");
        assert!(ticks(f64::NAN, 4).len() > 1);
        assert_eq!(short(1500.0), "1500");
        assert_eq!(short(25_000.0), "25k");
        assert_eq!(short(0.25), "0.25");
        assert_eq!(short(2.5), "2.5");
    }
}
