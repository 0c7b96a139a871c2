//! Bar charts rendered on the server as inline SVG (no charting library, no script).

use maud::{Markup, html};

/// One bar: its height, its colour class (`ok`, `bad`, `run`) and what hovering it says.
pub struct Bar {
    pub value: f64,
    pub class: &'static str,
    pub label: String,
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 160.0;
const PAD_LEFT: f64 = 48.0;
const PAD_BOTTOM: f64 = 18.0;
const PAD_TOP: f64 = 10.0;

fn axis_label(value: f64, unit: &str) -> String {
    if value >= 10_000.0 {
        format!("{:.0}k{unit}", value / 1000.0)
    } else if value >= 100.0 || value.fract() == 0.0 {
        format!("{value:.0}{unit}")
    } else {
        format!("{value:.1}{unit}")
    }
}

/// Bars left to right (oldest first), scaled to the largest; `unit` labels the axis.
pub fn bars(title: &str, bars: &[Bar], unit: &str) -> Markup {
    let max = bars.iter().map(|b| b.value).fold(0.0_f64, f64::max);
    let scale_max = if max > 0.0 { max } else { 1.0 };
    let plot_w = WIDTH - PAD_LEFT - 8.0;
    let plot_h = HEIGHT - PAD_BOTTOM - PAD_TOP;
    let slot = plot_w / bars.len().max(1) as f64;
    let bar_w = (slot * 0.7).clamp(2.0, 28.0);
    html! {
        figure.chart-figure {
            figcaption.muted { (title) }
            svg.chart role="img" aria-label=(title) data-bars=(bars.len())
                viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } width="100%" preserveAspectRatio="xMinYMin meet" {
                line.axis x1=(PAD_LEFT) y1=(PAD_TOP + plot_h) x2=(WIDTH - 4.0) y2=(PAD_TOP + plot_h) {}
                line.axis x1=(PAD_LEFT) y1=(PAD_TOP) x2=(PAD_LEFT) y2=(PAD_TOP + plot_h) {}
                text x=(PAD_LEFT - 6.0) y=(PAD_TOP + 8.0) text-anchor="end" { (axis_label(max, unit)) }
                text x=(PAD_LEFT - 6.0) y=(PAD_TOP + plot_h) text-anchor="end" { "0" }
                @if bars.is_empty() {
                    text x=(PAD_LEFT + plot_w / 2.0) y=(PAD_TOP + plot_h / 2.0) text-anchor="middle" { "no runs yet" }
                }
                @for (i, bar) in bars.iter().enumerate() {
                    @let h = (bar.value / scale_max * plot_h).max(2.0);
                    @let x = PAD_LEFT + slot * i as f64 + (slot - bar_w) / 2.0;
                    rect class={ "bar " (bar.class) } x=(format!("{x:.1}")) y=(format!("{:.1}", PAD_TOP + plot_h - h))
                        width=(format!("{bar_w:.1}")) height=(format!("{h:.1}")) rx="2" {
                        title { (bar.label) }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rect_per_bar_with_its_class_and_label() {
        let svg = bars(
            "runs",
            &[
                Bar {
                    value: 2.0,
                    class: "ok",
                    label: "ok <run>".into(),
                },
                Bar {
                    value: 4.0,
                    class: "bad",
                    label: "failed".into(),
                },
            ],
            " s",
        )
        .into_string();
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(svg.contains("bar bad"));
        assert!(svg.contains("ok &lt;run&gt;"), "labels are escaped: {svg}");
        assert!(svg.contains("4 s"));
    }
}
