//! SVG plots of check quality: P(PASS) separation histograms, reliability diagrams and per-check
//! bar charts.
//!
//! Drawn with plotters' SVG backend and no font feature: text goes out as SVG `<text>` elements
//! for the viewer to render, and plotters only estimates its size for layout, so no font files or
//! fontconfig are needed at build or run time.

use std::path::{Path, PathBuf};

use assay_core::metrics::ReliabilityBin;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("drawing the plot '{title}': {message}")]
    Draw { title: String, message: String },
    #[error("writing the plot {path}: {message}")]
    Write { path: PathBuf, message: String },
}

const SIZE: (u32, u32) = (800, 500);
const FONT: &str = "sans-serif";
const MARGIN: u32 = 15;
const Y_LABEL_AREA: u32 = 60;
const BINS: usize = 10;

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Drawn = Result<(), DrawingAreaErrorKind<std::io::Error>>;

/// Renders into memory (a file-backed SVGBackend writes whatever it has when dropped, so a
/// failed plot would leave a partial file): the workbench inlines the text, `write_plot` saves it.
fn render_svg(title: &str, draw: impl FnOnce(&Area) -> Drawn) -> Result<String, PlotError> {
    let error = |message: String| PlotError::Draw { title: title.to_owned(), message };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| error(e.to_string()))?;
        draw(&root).map_err(|e| error(e.to_string()))?;
        root.present().map_err(|e| error(e.to_string()))?;
    }
    Ok(svg)
}

/// Saves a rendered plot.
pub fn write_plot(path: &Path, svg: &str) -> Result<(), PlotError> {
    std::fs::write(path, svg).map_err(|e| PlotError::Write { path: path.to_owned(), message: e.to_string() })
}

/// The title and "no data", for inputs with nothing to plot.
fn draw_no_data(root: &Area, title: &str) -> Drawn {
    let (w, h) = root.dim_in_pixel();
    let centred = |size| TextStyle::from((FONT, size).into_font()).pos(Pos::new(HPos::Center, VPos::Center));
    root.draw(&Text::new(title, (w as i32 / 2, 30), centred(24)))?;
    root.draw(&Text::new("no data", (w as i32 / 2, h as i32 / 2), centred(18)))
}

/// Counts of `p` in BINS equal bins over [0, 1]; NaN is skipped, values outside are clamped in.
fn bin_counts(p: &[f64]) -> ([u32; BINS], usize) {
    let mut counts = [0; BINS];
    let mut n = 0;
    for &v in p.iter().filter(|v| !v.is_nan()) {
        // p = 1.0 would be bin 10; it belongs to the last bin, [0.9, 1.0].
        counts[((v.clamp(0.0, 1.0) * BINS as f64) as usize).min(BINS - 1)] += 1;
        n += 1;
    }
    (counts, n)
}

/// Two overlaid histograms of P(PASS) in 10 bins over [0,1]: known-good vs known-bad outputs of one check.
pub fn separation_svg(title: &str, good: &[f64], bad: &[f64]) -> Result<String, PlotError> {
    let series = [(bin_counts(good), GREEN, "known good"), (bin_counts(bad), RED, "known bad")];
    render_svg(title, |root| {
        if series.iter().all(|((_, n), _, _)| *n == 0) {
            return draw_no_data(root, title);
        }
        let y_max = series.iter().flat_map(|((counts, _), _, _)| counts).copied().max().unwrap_or(0);
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 24))
            .margin(MARGIN)
            .x_label_area_size(40)
            .y_label_area_size(Y_LABEL_AREA)
            // Headroom above the tallest bar keeps it clear of the legend.
            .build_cartesian_2d(0f64..1f64, 0u32..y_max + y_max / 4 + 1)?;
        chart.configure_mesh().x_labels(BINS + 1).x_desc("P(PASS)").y_desc("outputs").draw()?;
        for ((counts, n), color, label) in series {
            // Half opacity so that where the two overlap both stay visible.
            let fill = color.mix(0.5).filled();
            let bars = counts.into_iter().enumerate().filter(|&(_, c)| c > 0).map(|(i, c)| Rectangle::new([(i as f64 / BINS as f64, 0), ((i + 1) as f64 / BINS as f64, c)], fill));
            chart.draw_series(bars)?.label(format!("{label} (n={n})")).legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], fill));
        }
        chart.configure_series_labels().position(SeriesLabelPosition::UpperMiddle).background_style(WHITE).border_style(BLACK).draw()
    })
}

/// A reliability diagram: per non-empty bin, the mean P(PASS) the judge gave (x) against the
/// fraction the expert labelled PASS (y), with its count; the diagonal is perfect calibration.
pub fn reliability_svg(title: &str, bins: &[ReliabilityBin]) -> Result<String, PlotError> {
    render_svg(title, |root| {
        if bins.is_empty() {
            return draw_no_data(root, title);
        }
        let mut chart = ChartBuilder::on(root).caption(title, (FONT, 24)).margin(MARGIN).x_label_area_size(40).y_label_area_size(Y_LABEL_AREA).build_cartesian_2d(0f64..1f64, 0f64..1f64)?;
        chart.configure_mesh().x_labels(BINS + 1).y_labels(BINS + 1).x_desc("mean P(PASS) in the bin").y_desc("expert PASS rate").draw()?;
        chart.draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], BLACK.mix(0.4)))?.label("perfect calibration").legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.mix(0.4)));
        let points: Vec<(f64, f64)> = bins.iter().map(|b| (b.mean_p_pass, b.observed_pass_rate)).collect();
        chart.draw_series(LineSeries::new(points.iter().copied(), BLUE))?.label("judge").legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE));
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 5, BLUE.filled())))?;
        let count_style = TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Left, VPos::Bottom));
        chart.draw_series(bins.iter().map(|b| Text::new(format!("n={}", b.n), (b.mean_p_pass, b.observed_pass_rate), count_style.clone())))?;
        chart.configure_series_labels().position(SeriesLabelPosition::UpperLeft).background_style(WHITE).border_style(BLACK).draw()
    })
}

/// One bar per named value (e.g. per-check kappa or flip rate), y axis over y_range.
/// Bars with a NaN value are left out; values outside y_range are cut at its edge. Bars rise from
/// 0, or from the edge of y_range nearest 0 when 0 is outside it.
pub fn bars_svg(title: &str, y_label: &str, bars: &[(String, f64)], y_range: (f64, f64)) -> Result<String, PlotError> {
    let (lo, hi) = y_range;
    if !(lo.is_finite() && hi.is_finite() && lo < hi) {
        return Err(PlotError::Draw { title: title.to_owned(), message: format!("empty y range {lo}..{hi}") });
    }
    let bars: Vec<(String, f64)> = bars.iter().filter(|(_, v)| !v.is_nan()).map(|(name, v)| (shorten(name), *v)).collect();
    render_svg(title, |root| {
        if bars.is_empty() {
            return draw_no_data(root, title);
        }
        // Names lie flat unless they would run into their neighbours; then they stand up, reading
        // upwards and ending at the axis. plotters' own x labels can only be centred on their
        // tick, which puts half of a rotated name inside the plot, so the names are drawn here.
        let style = TextStyle::from((FONT, 13).into_font());
        let mut widest = 0;
        for (name, _) in &bars {
            widest = widest.max(root.estimate_text_size(name, &style)?.0);
        }
        let slot = (SIZE.0 - 2 * MARGIN - Y_LABEL_AREA) / bars.len() as u32;
        let (label_area, label_style) =
            if widest + 6 > slot { (widest + 12, style.transform(FontTransform::Rotate270).pos(Pos::new(HPos::Right, VPos::Center))) } else { (30, style.pos(Pos::new(HPos::Center, VPos::Top))) };
        let mut chart =
            ChartBuilder::on(root).caption(title, (FONT, 24)).margin(MARGIN).x_label_area_size(label_area).y_label_area_size(Y_LABEL_AREA).build_cartesian_2d(0.0..bars.len() as f64, lo..hi)?;
        chart.configure_mesh().disable_x_mesh().x_labels(0).y_desc(y_label).draw()?;
        let base = 0f64.clamp(lo, hi);
        chart.draw_series(bars.iter().enumerate().map(|(i, &(_, v))| {
            let mut bar = Rectangle::new([(i as f64, base), (i as f64 + 1.0, v.clamp(lo, hi))], BLUE.mix(0.6).filled());
            // Gaps between neighbouring bars.
            bar.set_margin(0, 0, 6, 6);
            bar
        }))?;
        for (i, (name, _)) in bars.iter().enumerate() {
            let (x, y) = chart.backend_coord(&(i as f64 + 0.5, lo));
            root.draw(&Text::new(name.as_str(), (x, y + 6), label_style.clone()))?;
        }
        Ok(())
    })
}

/// Caps a bar's name so that one long name cannot take over the plot.
fn shorten(name: &str) -> String {
    const MAX_CHARS: usize = 28;
    if name.chars().count() <= MAX_CHARS {
        name.to_owned()
    } else {
        name.chars().take(MAX_CHARS - 1).chain(['…']).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(svg: &Result<String, PlotError>) -> String {
        let svg = svg.as_ref().unwrap().clone();
        assert!(svg.starts_with("<svg") || svg.starts_with("<?xml"), "not an SVG: {}", &svg[..svg.len().min(80)]);
        assert!(svg.trim_end().ends_with("</svg>"));
        svg
    }

    fn rects(svg: &str) -> usize {
        svg.matches("<rect").count()
    }

    #[test]
    fn bins_cover_the_unit_interval() {
        let (counts, n) = bin_counts(&[0.0, 0.05, 0.1, 0.95, 1.0, 1.5, -0.2, f64::NAN]);
        assert_eq!(n, 7);
        assert_eq!(counts, [3, 1, 0, 0, 0, 0, 0, 0, 0, 3]);
    }

    #[test]
    fn separation_draws_title_and_one_rect_per_filled_bin() {
        let good = [0.95, 0.91, 0.85, 0.7, f64::NAN];
        let bad = [0.05, 0.12, 0.15, 0.7];
        let svg = read(&separation_svg("Separation of check-17", &good, &bad));
        assert!(svg.contains("Separation of check-17"));
        assert!(svg.contains("known good (n=4)") && svg.contains("known bad (n=4)"));
        assert!(svg.contains("P(PASS)"));
        // 3 good bins + 2 bad bins + 2 legend swatches, plus background and legend boxes.
        let n = rects(&svg);
        assert!((7..=12).contains(&n), "{n} rects");
    }

    #[test]
    fn separation_without_data_says_so() {
        let svg = read(&separation_svg("Nothing judged", &[], &[f64::NAN]));
        assert!(svg.contains("Nothing judged") && svg.contains("no data"));
        // One side alone still plots.
        assert!(!read(&separation_svg("Only bad", &[], &[0.2])).contains("no data"));
    }

    #[test]
    fn bars_draw_one_rect_per_value_and_their_names() {
        let bars: Vec<(String, f64)> = [("cites_source", 0.8), ("no_dosage", -0.1), ("skipped", f64::NAN), ("too_high", 3.0)].map(|(n, v)| (n.to_owned(), v)).into();
        let svg = read(&bars_svg("Kappa per check", "kappa", &bars, (-0.2, 1.0)));
        assert!(svg.contains("Kappa per check") && svg.contains("kappa"));
        assert!(svg.contains("cites_source") && svg.contains("too_high"));
        assert!(!svg.contains("skipped"));
        let n = rects(&svg);
        assert!((3..=5).contains(&n), "{n} rects");
    }

    #[test]
    fn crowded_names_stand_up_and_long_ones_are_cut() {
        let few = vec![("a".to_owned(), 0.5), ("b".to_owned(), 0.25)];
        // Only the y axis description is turned.
        assert_eq!(read(&bars_svg("Few", "y", &few, (0.0, 1.0))).matches("rotate(").count(), 1);
        let many: Vec<(String, f64)> = (0..30).map(|i| (format!("check_number_{i}"), 0.5)).collect();
        let svg = read(&bars_svg("Many", "y", &many, (0.0, 1.0)));
        assert_eq!(svg.matches("rotate(270").count(), 31);
        assert!(svg.contains("check_number_29"));

        assert_eq!(shorten("kappa"), "kappa");
        let cut = shorten(&"é".repeat(40));
        assert_eq!(cut.chars().count(), 28);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn bars_without_data_or_range() {
        let svg = read(&bars_svg("Flip rate", "flips", &[], (0.0, 1.0)));
        assert!(svg.contains("Flip rate") && svg.contains("no data"));
        let bars = vec![("a".to_owned(), 0.5)];
        assert!(bars_svg("t", "y", &bars, (1.0, 1.0)).is_err());
        assert!(bars_svg("t", "y", &bars, (0.0, f64::NAN)).is_err());
    }

    #[test]
    fn unwritable_path_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("x.svg");
        let err = write_plot(&path, &separation_svg("t", &[0.5], &[]).unwrap()).unwrap_err();
        assert!(err.to_string().contains("x.svg"), "{err}");
    }

    #[test]
    fn reliability_draws_a_point_and_a_count_per_bin() {
        let bins = [ReliabilityBin { lo: 0.2, hi: 0.3, n: 4, mean_p_pass: 0.25, observed_pass_rate: 0.5 }, ReliabilityBin { lo: 0.9, hi: 1.0, n: 7, mean_p_pass: 0.95, observed_pass_rate: 0.9 }];
        let svg = read(&reliability_svg("check: reliability", &bins));
        assert!(svg.contains("check: reliability") && svg.contains("n=4") && svg.contains("n=7") && svg.contains("perfect calibration"), "{svg}");
        assert_eq!(svg.matches("<circle").count(), 2, "{svg}");
        assert!(read(&reliability_svg("empty", &[])).contains("no data"));
    }
}
