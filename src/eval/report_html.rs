//! `report.html`: the run's report as one self-contained page for people who have no Lethe — an
//! auditor's reader opens it in any browser, prints it, or mails it. It is `report.md` rendered
//! (so the two never disagree), with its pictures inlined, per-class bars, the recipe, the
//! device, and the SHA-256 of every other file of the folder (`SHA256SUMS` then covers the page
//! itself).

use std::fmt::Write as _;

use base64::Engine as _;
use pulldown_cmark::{CowStr, Event, Options, Parser, Tag};

use super::metrics::ClassRow;
use crate::viz::map::{EmbeddingMap, Place, class_colour};

/// Where `report.md` asks for the embedding map figure (an HTML comment, so Markdown viewers
/// show nothing there).
pub const MAP_FIGURE: &str = "<!-- embedding map -->";

/// The page's file name, beside `report.md`.
pub const REPORT_HTML: &str = "report.html";

/// What the page shows beside the Markdown report.
pub struct ReportPage<'a> {
    /// `report.md`'s text.
    pub markdown: &'a str,
    /// The recipe as run.
    pub recipe: &'a str,
    /// Where it ran, e.g. "cpu (burn-flex)" (a batch's page leaves it to its concepts' pages).
    pub device: Option<&'a str>,
    /// PNG files the report links to, by the name it links them with; inlined as data URIs.
    pub pictures: &'a [(&'a str, Vec<u8>)],
    /// The forget dataset's classes before and after, drawn as bars.
    pub per_class: &'a [ClassRow],
    /// The embedding map before and after, drawn as two scatter plots.
    pub map: Option<&'a EmbeddingMap>,
    /// (path, SHA-256) of every other file of the result folder.
    pub files: &'a [(String, String)],
}

/// The page's HTML.
pub fn report_html(page: &ReportPage) -> String {
    let title = page
        .markdown
        .lines()
        .find_map(|l| l.strip_prefix("# "))
        .unwrap_or("Unlearning report");
    let mut body = String::new();
    pulldown_cmark::html::push_html(&mut body, linked_inline(page));
    if !page.per_class.is_empty() {
        body.push_str("<h2>Per-class accuracy</h2>\n");
        body.push_str(&class_bars(page.per_class));
    }
    body.push_str("<h2>Recipe</h2>\n");
    if let Some(device) = page.device {
        let _ = writeln!(body, "<p>Run on {}.</p>", escape(device));
    }
    let _ = writeln!(body, "<pre>{}</pre>", escape(page.recipe));
    body.push_str(&files_table(page.files));
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n{body}</main>\n\
         </body>\n</html>\n",
        escape(title)
    )
}

/// The Markdown's events with its pictures inlined and its links to other reports turned to
/// their HTML pages (a batch's report links each concept's).
fn linked_inline<'a>(page: &'a ReportPage<'a>) -> impl Iterator<Item = Event<'a>> {
    Parser::new_ext(page.markdown, Options::ENABLE_TABLES).map(move |event| match event {
        Event::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) => {
            let inlined = page
                .pictures
                .iter()
                .find(|(name, _)| *name == dest_url.as_ref())
                .map_or(dest_url, |(_, png)| {
                    let encoded = base64::engine::general_purpose::STANDARD.encode(png);
                    CowStr::from(format!("data:image/png;base64,{encoded}"))
                });
            Event::Start(Tag::Image {
                link_type,
                dest_url: inlined,
                title,
                id,
            })
        }
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) => {
            let dest_url = match dest_url.strip_suffix("report.md") {
                Some(folder) => CowStr::from(format!("{folder}report.html")),
                None => dest_url,
            };
            Event::Start(Tag::Link {
                link_type,
                dest_url,
                title,
                id,
            })
        }
        Event::Html(html) if html.trim() == MAP_FIGURE => {
            Event::Html(page.map.map(map_figure).unwrap_or_default().into())
        }
        other => other,
    })
}

/// Horizontal bars, before (grey) and after (blue, red for forgotten classes), one pair per
/// class, as inline SVG with the numbers written beside the bars.
fn class_bars(rows: &[ClassRow]) -> String {
    const LABEL: f64 = 150.0;
    const WIDTH: f64 = 360.0;
    const ROW: f64 = 30.0;
    let height = ROW * rows.len() as f64 + 24.0;
    let mut svg = format!(
        "<svg class=\"bars\" role=\"img\" aria-label=\"accuracy per class before and after\" \
         width=\"{}\" height=\"{height}\" viewBox=\"0 0 {} {height}\">\n",
        LABEL + WIDTH + 120.0,
        LABEL + WIDTH + 120.0
    );
    for (i, row) in rows.iter().enumerate() {
        let y = ROW * i as f64;
        let after_colour = if row.forgotten { "#d1495b" } else { "#2e6fba" };
        let name = if row.forgotten {
            format!("{} (forgotten)", row.class)
        } else {
            row.class.clone()
        };
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
             <rect x=\"{LABEL}\" y=\"{}\" width=\"{:.1}\" height=\"10\" fill=\"#b8b8b8\"/>\
             <rect x=\"{LABEL}\" y=\"{}\" width=\"{:.1}\" height=\"10\" fill=\"{after_colour}\"/>\
             <text x=\"{}\" y=\"{}\" class=\"value\">{:.1}% → {:.1}%</text>",
            LABEL - 8.0,
            y + 17.0,
            escape(&name),
            y + 4.0,
            WIDTH * row.before.value,
            y + 15.0,
            WIDTH * row.after.value,
            LABEL + WIDTH + 8.0,
            y + 17.0,
            100.0 * row.before.value,
            100.0 * row.after.value,
        );
    }
    let legend_y = ROW * rows.len() as f64 + 14.0;
    let _ = writeln!(
        svg,
        "<rect x=\"{LABEL}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"#b8b8b8\"/>\
         <text x=\"{}\" y=\"{legend_y}\">before</text>\
         <rect x=\"{}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"#2e6fba\"/>\
         <text x=\"{}\" y=\"{legend_y}\">after</text>\n</svg>",
        legend_y - 9.0,
        LABEL + 14.0,
        LABEL + 70.0,
        legend_y - 9.0,
        LABEL + 84.0,
    );
    svg
}

/// The map before and after as two inline SVG scatter plots on one scale, with a legend, in
/// place of `report.md`'s [`MAP_FIGURE`].
fn map_figure(map: &EmbeddingMap) -> String {
    const SIDE: f64 = 380.0;
    const MARGIN: f64 = 14.0;
    let all = map.points.iter().flat_map(|p| [p.before, p.after]);
    let (mut low, mut high) = ([f64::MAX; 2], [f64::MIN; 2]);
    for place in all {
        for axis in 0..2 {
            low[axis] = low[axis].min(place[axis] as f64);
            high[axis] = high[axis].max(place[axis] as f64);
        }
    }
    let span = (high[0] - low[0]).max(high[1] - low[1]).max(1e-9);
    let at = |place: Place| {
        (
            MARGIN + (place[0] as f64 - low[0]) / span * (SIDE - 2.0 * MARGIN),
            MARGIN + (high[1] - place[1] as f64) / span * (SIDE - 2.0 * MARGIN),
        )
    };
    let colour = |label: usize| {
        let [r, g, b] = class_colour(&map.classes[label], label);
        format!("#{r:02x}{g:02x}{b:02x}")
    };
    let mut html = String::from("<div class=\"maps\">\n");
    for (title, after) in [
        ("before (original model)", false),
        ("after (edited model)", true),
    ] {
        let _ = write!(
            html,
            "<figure><svg class=\"map\" role=\"img\" aria-label=\"embedding map {title}\" \
             width=\"{SIDE}\" height=\"{SIDE}\" viewBox=\"0 0 {SIDE} {SIDE}\">\n\
             <rect width=\"{SIDE}\" height=\"{SIDE}\" fill=\"#fafafa\" stroke=\"#ddd\"/>\n"
        );
        for point in map.points.iter().filter(|p| p.item.is_some()) {
            let (x, y) = at(point.place(after));
            let _ = writeln!(
                html,
                "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"2.4\" fill=\"{}\" stroke=\"#00000040\" stroke-width=\"0.5\"/>",
                colour(point.label)
            );
        }
        for point in map.points.iter().filter(|p| p.item.is_none()) {
            let (x, y) = at(point.place(after));
            let _ = writeln!(
                html,
                "<path class=\"prompt\" d=\"M{x:.1} {:.1}L{:.1} {y:.1}L{x:.1} {:.1}L{:.1} {y:.1}Z\" \
                 fill=\"{}\" stroke=\"#1d1d1f\"/><text x=\"{:.1}\" y=\"{:.1}\"{}>{}</text>",
                y - 7.0,
                x + 7.0,
                y + 7.0,
                x - 7.0,
                colour(point.label),
                // Names on the right half go to the diamond's left, so none leaves the plot.
                if x > SIDE / 2.0 { x - 9.0 } else { x + 9.0 },
                y + 4.0,
                if x > SIDE / 2.0 {
                    " text-anchor=\"end\""
                } else {
                    ""
                },
                escape(&map.classes[point.label]),
            );
        }
        let _ = writeln!(html, "</svg><figcaption>{title}</figcaption></figure>");
    }
    html.push_str("</div>\n<p class=\"legend\">");
    for (label, class) in map.classes.iter().enumerate() {
        let forgotten = if map.forgotten.contains(&label) {
            " (forgotten)"
        } else {
            ""
        };
        let _ = write!(
            html,
            "<span><svg width=\"10\" height=\"10\"><circle cx=\"5\" cy=\"5\" r=\"4.5\" fill=\"{}\" stroke=\"#00000040\"/></svg> {}{forgotten}</span> ",
            colour(label),
            escape(class)
        );
    }
    html.push_str("</p>\n");
    html
}

fn files_table(files: &[(String, String)]) -> String {
    let mut html = String::from(
        "<h2>Files</h2>\n<p>SHA-256 of every other file of this folder. <code>SHA256SUMS</code> \
         lists them with this page; check them with <code>sha256sum --check SHA256SUMS</code>.</p>\n\
         <table class=\"files\">\n<thead><tr><th>file</th><th>SHA-256</th></tr></thead>\n<tbody>\n",
    );
    for (path, digest) in files {
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td><code>{digest}</code></td></tr>",
            escape(path)
        );
    }
    html.push_str("</tbody>\n</table>\n");
    html
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const STYLE: &str = "
body { font-family: system-ui, sans-serif; color: #1d1d1f; background: #fff; margin: 0; }
main { max-width: 60rem; margin: 2rem auto; padding: 0 1.5rem; line-height: 1.45; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.92rem; }
th, td { border: 1px solid #d0d0d0; padding: 0.25rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f3f3f5; }
pre { background: #f6f6f8; padding: 0.8rem; overflow-x: auto; font-size: 0.85rem; }
code { font-size: 0.85rem; }
img { max-width: 100%; image-rendering: pixelated; }
svg.bars text { font-size: 13px; fill: #1d1d1f; } svg.bars text.value { font-size: 12px; }
table.files td:last-child { word-break: break-all; }
div.maps { display: flex; flex-wrap: wrap; gap: 1rem; } figure { margin: 0; }
figcaption { text-align: center; font-size: 0.9rem; color: #555; }
svg.map text { font-size: 11px; fill: #1d1d1f; } p.legend span { margin-right: 0.8rem; white-space: nowrap; }
@media print { main { margin: 0; max-width: none; } }
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::interval::Estimate;

    fn page_with<'a>(
        markdown: &'a str,
        pictures: &'a [(&'a str, Vec<u8>)],
        per_class: &'a [ClassRow],
        files: &'a [(String, String)],
    ) -> String {
        report_html(&ReportPage {
            markdown,
            recipe: "seed = 0\n[method]\nname = \"lip\" # <forget>\n",
            device: Some("cpu (burn-flex)"),
            pictures,
            per_class,
            map: None,
            files,
        })
    }

    #[test]
    fn renders_the_markdown_tables_and_inlines_the_pictures_it_links() {
        let markdown = "# Unlearning report: lip forgets red\n\n## Datasets\n\n\
                        | dataset | before | after |\n|---|---|---|\n| `colors` | 1.000 | 0.100 |\n\n\
                        ![sheet](synthetic.png) ![elsewhere](other.png)\n";
        let png = vec![0x89, b'P', b'N', b'G'];
        let html = page_with(markdown, &[("synthetic.png", png)], &[], &[]);
        assert!(html.contains("<title>Unlearning report: lip forgets red</title>"));
        assert!(html.contains("<td>1.000</td>"), "{html}");
        assert!(
            html.contains("src=\"data:image/png;base64,iVBORw==\""),
            "{html}"
        );
        // A picture the page was not given stays a link rather than vanishing.
        assert!(html.contains("src=\"other.png\""), "{html}");
        // The recipe is shown as text, never as markup.
        assert!(html.contains("# &lt;forget&gt;"), "{html}");
        assert!(html.contains("Run on cpu (burn-flex)."));
    }

    #[test]
    fn draws_the_map_before_and_after_with_a_dot_per_picture_and_a_diamond_per_class() {
        use crate::viz::map::MapPoint;
        let point = |label, item, before: Place, after: Place| MapPoint {
            label,
            item,
            before,
            after,
        };
        let map = EmbeddingMap {
            classes: vec!["red".into(), "green <b>".into()],
            forgotten: vec![0],
            points: vec![
                point(0, Some(3), [0.0, 0.0], [5.0, 5.0]),
                point(1, Some(4), [1.0, 1.0], [1.0, 1.0]),
                point(1, Some(9), [2.0, 0.0], [2.0, 0.0]),
                point(0, None, [0.0, 1.0], [4.0, 4.0]),
                point(1, None, [2.0, 1.0], [2.0, 1.0]),
            ],
        };
        let html = report_html(&ReportPage {
            markdown: &format!("# r\n\n## Embedding map\n\n{MAP_FIGURE}\n"),
            recipe: "",
            device: None,
            pictures: &[],
            per_class: &[],
            map: Some(&map),
            files: &[],
        });
        assert_eq!(html.matches("<svg class=\"map\"").count(), 2);
        // Two panels of three pictures; the legend's swatches are circles too.
        assert_eq!(html.matches("r=\"2.4\"").count(), 6);
        assert_eq!(html.matches("class=\"prompt\"").count(), 4);
        assert!(html.contains("red (forgotten)</span>"), "{html}");
        assert!(html.contains("green &lt;b&gt;</text>"), "{html}");
        // One scale for both panels: the point at the far corner after the edit is at the edge.
        assert!(html.contains("cx=\"366.0\" cy=\"14.0\""), "{html}");
    }

    #[test]
    fn links_to_other_reports_point_at_their_pages() {
        let html = page_with("[red](concepts/01-red/report.md)", &[], &[], &[]);
        assert!(
            html.contains("href=\"concepts/01-red/report.html\""),
            "{html}"
        );
    }

    #[test]
    fn draws_a_pair_of_bars_per_class_and_lists_the_files() {
        let row = |class: &str, forgotten, before, after| ClassRow {
            class: class.into(),
            forgotten,
            before: Estimate::from_counts(before, 10),
            after: Estimate::from_counts(after, 10),
        };
        let rows = [row("red", true, 10, 1), row("green", false, 9, 9)];
        let files = [("metrics.json".to_string(), "ab".repeat(32))];
        let html = page_with("# r", &[], &rows, &files);
        assert!(html.contains("red (forgotten)</text>"), "{html}");
        assert!(html.contains("100.0% → 10.0%"), "{html}");
        assert!(html.contains("90.0% → 90.0%"), "{html}");
        assert_eq!(html.matches("fill=\"#d1495b\"").count(), 1);
        assert!(html.contains(&format!(
            "<tr><td>metrics.json</td><td><code>{}</code></td></tr>",
            "ab".repeat(32)
        )));
    }
}
