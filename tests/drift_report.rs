//! `mlrollout drift --output html` looked at: the real binary writes the page for generated
//! CSV data (one shifted numeric feature, one stable numeric feature, one categorical feature
//! whose mix changed), headless Chromium from Debian (tests/harness/install.sh) takes a
//! screenshot, and the decoded PNG must show the charts: the reference and current bar
//! colours in one band per feature card, the current bars right of the reference ones for the
//! shifted feature and level with them for the stable one, and the categories' bars as long
//! as their shares. The same page with its charts cut out must show none of that.
#![cfg(feature = "harness")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // test code states expectations

use std::io::Write;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mlrollout::drift::report::{CURRENT_COLOUR, REFERENCE_COLOUR};

const WIDTH: u32 = 1280;
const HEIGHT: u32 = 1700;

/// Deterministic standard normals (Box–Muller over an LCG).
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    fn pick<'a>(&mut self, options: &[(&'a str, f64)]) -> &'a str {
        let mut u = self.uniform();
        for (name, p) in options {
            if u < *p {
                return name;
            }
            u -= p;
        }
        options[options.len() - 1].0
    }
}

/// `shifted` moves by 1.5 σ in the current data, `stable` does not; `channel` goes from
/// mostly web to mostly atm; a few `stable` cells are empty (missing values).
fn write_data(path: &Path, rows: usize, current: bool, seed: u64) {
    let mut rng = Rng(seed);
    let mix: &[(&str, f64)] = if current {
        &[("web", 0.2), ("pos", 0.3), ("atm", 0.5)]
    } else {
        &[("web", 0.6), ("pos", 0.3), ("atm", 0.1)]
    };
    let mut out = String::from("shifted,stable,channel\n");
    for i in 0..rows {
        let shifted = 50.0 + 10.0 * (rng.normal() + if current { 1.5 } else { 0.0 });
        let stable = 20.0 + 4.0 * rng.normal();
        let stable = if i % 40 == 7 {
            String::new()
        } else {
            format!("{stable:.4}")
        };
        out.push_str(&format!("{shifted:.4},{stable},{}\n", rng.pick(mix)));
    }
    std::fs::write(path, out).unwrap();
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// Chromium: env `MLROLLOUT_CHROMIUM_BIN`, else `chromium` on PATH.
fn chromium_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("MLROLLOUT_CHROMIUM_BIN").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    which("chromium").unwrap_or_else(|| {
        panic!(
            "chromium not found (MLROLLOUT_CHROMIUM_BIN unset, not on PATH); \
             run tests/harness/install.sh"
        )
    })
}

/// A screenshot of `page` by headless Chromium, within a minute.
fn screenshot(page: &Path, png: &Path, scratch: &Path) {
    let profile = tempfile::tempdir_in(scratch).unwrap();
    let mut child = Command::new(chromium_bin())
        .args([
            "--headless",
            // no sandbox: tests run as root in containers, where Chromium's sandbox cannot start
            // (the page is our own, with no script and nothing to fetch)
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--force-device-scale-factor=1",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--window-size={WIDTH},{HEIGHT}"))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            // the whole group: Chromium's zygote and renderers too
            let _ = Command::new("kill")
                .args(["-KILL", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            panic!("chromium took more than 90 s for {}", page.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    assert!(status.success(), "chromium failed ({status}): {err}");
    assert!(png.is_file(), "chromium wrote no screenshot: {err}");
}

/// An RGB screenshot.
struct Image {
    width: usize,
    height: usize,
    rgb: Vec<[u8; 3]>,
}

fn decode(path: &Path) -> Image {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let channels = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    let rgb = buf[..info.buffer_size()]
        .chunks_exact(channels)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    Image {
        width: info.width as usize,
        height: info.height as usize,
        rgb,
    }
}

fn colour(hex: &str) -> [u8; 3] {
    let v = u32::from_str_radix(hex.trim_start_matches('#'), 16).unwrap();
    [(v >> 16) as u8, (v >> 8) as u8, v as u8]
}

/// Pixels of the reference and current colours within rows `top..bottom`.
#[derive(Debug, Default)]
struct Band {
    top: usize,
    bottom: usize,
    /// (x, y) of every reference-coloured / current-coloured pixel.
    reference: Vec<(usize, usize)>,
    current: Vec<(usize, usize)>,
}

impl Band {
    fn centroid_x(points: &[(usize, usize)]) -> f64 {
        points.iter().map(|p| p.0 as f64).sum::<f64>() / points.len().max(1) as f64
    }

    fn x_extent(&self) -> f64 {
        let xs = self.reference.iter().chain(&self.current).map(|p| p.0);
        (xs.clone().max().unwrap_or(0) - xs.min().unwrap_or(0)) as f64
    }
}

/// The charts in a screenshot: runs of rows holding bar colours (gaps under 30 rows joined),
/// keeping those with enough coloured pixels to be a chart (a legend's swatches are not).
fn chart_bands(img: &Image) -> Vec<Band> {
    let (r, c) = (colour(REFERENCE_COLOUR), colour(CURRENT_COLOUR));
    let mut bands: Vec<Band> = Vec::new();
    let mut open: Option<Band> = None;
    let mut last_coloured = 0usize;
    for y in 0..img.height {
        let row = &img.rgb[y * img.width..(y + 1) * img.width];
        let refs: Vec<usize> = (0..img.width).filter(|&x| row[x] == r).collect();
        let curs: Vec<usize> = (0..img.width).filter(|&x| row[x] == c).collect();
        if refs.is_empty() && curs.is_empty() {
            if open.is_some() && y - last_coloured >= 30 {
                bands.extend(open.take());
            }
            continue;
        }
        last_coloured = y;
        let band = open.get_or_insert_with(|| Band {
            top: y,
            ..Band::default()
        });
        band.bottom = y + 1;
        band.reference.extend(refs.into_iter().map(|x| (x, y)));
        band.current.extend(curs.into_iter().map(|x| (x, y)));
    }
    bands.extend(open);
    bands.retain(|b| b.reference.len() + b.current.len() >= 3000);
    bands
}

/// Feature names of the cards, in page order.
fn card_names(page: &str) -> Vec<String> {
    page.split("<section class=\"card\"")
        .skip(1)
        .map(|card| {
            let start = card.find("<span class=\"name\">").unwrap() + "<span class=\"name\">".len();
            card[start..start + card[start..].find('<').unwrap()].to_owned()
        })
        .collect()
}

/// Within a categorical chart: the rows of bars (runs of coloured rows at least 16 pixels
/// high: a legend swatch is smaller), and for each the right end of the reference bar and of
/// the current bar.
fn category_rows(band: &Band) -> Vec<(usize, usize)> {
    // (first y, last y, reference end, current end)
    let mut rows: Vec<(usize, usize, usize, usize)> = Vec::new();
    let mut points: Vec<(usize, usize, bool)> = band
        .reference
        .iter()
        .map(|&(x, y)| (y, x, true))
        .chain(band.current.iter().map(|&(x, y)| (y, x, false)))
        .collect();
    points.sort_unstable();
    for (y, x, is_reference) in points {
        let row = match rows.last_mut() {
            Some(row) if y <= row.1 + 1 => row,
            _ => {
                rows.push((y, y, 0, 0));
                rows.last_mut().unwrap()
            }
        };
        row.1 = y;
        if is_reference {
            row.2 = row.2.max(x);
        } else {
            row.3 = row.3.max(x);
        }
    }
    rows.into_iter()
        .filter(|r| r.1 - r.0 >= 15 && r.2 > 0 && r.3 > 0)
        .map(|r| (r.2, r.3))
        .collect()
}

fn render(dir: &Path) -> String {
    let (reference, current) = (dir.join("reference.csv"), dir.join("current.csv"));
    write_data(&reference, 5000, false, 1);
    write_data(&current, 4000, true, 2);
    let out = Command::new(env!("CARGO_BIN_EXE_mlrollout"))
        .args(["drift", "--output", "html", "--reference"])
        .arg(&reference)
        .arg("--current")
        .arg(&current)
        .env_remove("MLFLOW_TRACKING_URI")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn report_page_shows_the_distributions_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let page = render(dir.path());
    assert!(page.starts_with("<!DOCTYPE html>"));
    for banned in ["<script", "http:", "https:", "src=", "url(", "@import"] {
        assert!(!page.contains(banned), "the page holds {banned}");
    }
    let names = card_names(&page);
    // most severe first; the stable feature last
    assert_eq!(names.len(), 3, "{names:?}");
    assert_eq!(names[2], "stable");
    assert!(page.contains("DRIFT DETECTED"));
    assert!(page.contains("missing values"));
    let html = dir.path().join("report.html");
    std::fs::write(&html, &page).unwrap();
    let png = dir.path().join("report.png");
    screenshot(&html, &png, dir.path());
    let kept = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("drift-report.png");
    std::fs::copy(&png, &kept).unwrap();
    let img = decode(&png);
    assert_eq!((img.width, img.height), (WIDTH as usize, HEIGHT as usize));

    let bands = chart_bands(&img);
    let summary: Vec<(usize, usize, usize, usize)> = bands
        .iter()
        .map(|b| (b.top, b.bottom, b.reference.len(), b.current.len()))
        .collect();
    assert_eq!(
        bands.len(),
        3,
        "one chart per card expected; bands (top, bottom, reference px, current px): {summary:?}; screenshot {}",
        kept.display()
    );
    for (name, band) in names.iter().zip(&bands) {
        assert!(band.bottom < img.height - 2, "{name}: chart cut off");
        assert!(
            band.reference.len() >= 2000 && band.current.len() >= 1000,
            "{name}: both sides drawn: {summary:?}"
        );
        let shift = Band::centroid_x(&band.current) - Band::centroid_x(&band.reference);
        let extent = band.x_extent();
        eprintln!(
            "{name}: rows {}..{}, {} reference px, {} current px, current centroid {shift:+.1} px right of the reference one (chart {extent} px wide)",
            band.top,
            band.bottom,
            band.reference.len(),
            band.current.len()
        );
        match name.as_str() {
            // the current mass sits in the upper bins: right of the level reference bars
            "shifted" => assert!(shift > 0.15 * extent, "shifted: {shift} of {extent}"),
            // the current bars stand over the reference ones
            "stable" => assert!(shift.abs() < 0.05 * extent, "stable: {shift} of {extent}"),
            "channel" => {
                // rows by largest share: web (60 % → 20 %), atm (10 % → 50 %), pos (30 % → 30 %)
                let rows = category_rows(band);
                eprintln!("channel rows (reference end, current end): {rows:?}");
                assert_eq!(rows.len(), 3, "channel rows (ref end, cur end): {rows:?}");
                let (web, atm, pos) = (rows[0], rows[1], rows[2]);
                assert!(web.0 > web.1 + 100, "web shrank: {rows:?}");
                assert!(atm.1 > atm.0 + 100, "atm grew: {rows:?}");
                assert!(pos.0.abs_diff(pos.1) < 30, "pos level: {rows:?}");
            }
            other => panic!("unexpected card {other}"),
        }
    }

    // The checks can fail: the same page without its charts shows no chart band.
    let mut bare = String::new();
    let mut rest = page.as_str();
    while let Some(start) = rest.find("<svg") {
        bare.push_str(&rest[..start]);
        let end = rest[start..].find("</svg>").unwrap() + start + "</svg>".len();
        rest = &rest[end..];
    }
    bare.push_str(rest);
    let bare_html = dir.path().join("bare.html");
    std::fs::File::create(&bare_html)
        .unwrap()
        .write_all(bare.as_bytes())
        .unwrap();
    let bare_png = dir.path().join("bare.png");
    screenshot(&bare_html, &bare_png, dir.path());
    let bare_bands = chart_bands(&decode(&bare_png));
    assert!(
        bare_bands.is_empty(),
        "a page without charts has no chart band, found {}",
        bare_bands.len()
    );
}
