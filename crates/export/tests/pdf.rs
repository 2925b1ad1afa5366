//! End-to-end checks of the PDF renderer with the tools an auditor's side would use: `qpdf
//! --check` for the structure, `pdftotext` for the text, `pdftoppm` for rasterising.
//!
//! A missing tool skips only the checks that need it, with the reason printed, unless `CI` is
//! set: then it fails.
// Test helpers outside #[test] functions unwrap too (clippy.toml only covers the latter).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use blackbox_export::doc::{Block, Document, Section};
use blackbox_export::pdf::render_pdf;

const SECTION_TITLES: [&str; 4] = [
    "Summary",
    "Monitoring activity",
    "Population of recorded events",
    "Verification by the auditor",
];
const TABLE_ROWS: usize = 300;

/// Whether `tool` can be run; without `CI`, a missing tool is reported and its checks skipped.
fn have(tool: &str) -> bool {
    match Command::new(tool).arg("-v").output() {
        Ok(_) => true,
        Err(error) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{tool} is required when CI is set (apt-get install qpdf poppler-utils): {error}"
            );
            eprintln!(
                "SKIPPED: checks with {tool}: it cannot be run ({error}); \
                 install qpdf and poppler-utils to run them"
            );
            false
        }
    }
}

fn run(tool: &str, args: &[&str]) -> String {
    let output = Command::new(tool).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{tool} {args:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn qpdf_check(path: &Path) {
    if have("qpdf") {
        let out = run("qpdf", &["--check", path.to_str().unwrap()]);
        assert!(out.contains("No syntax or stream encoding errors"), "{out}");
    }
}

fn page_count(path: &Path) -> usize {
    run("qpdf", &["--show-npages", path.to_str().unwrap()])
        .trim()
        .parse()
        .unwrap()
}

/// Every day of 2025, `YYYY-MM-DD`.
fn days_of_2025() -> Vec<String> {
    let lengths = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let mut days = Vec::new();
    for (month, length) in lengths.iter().enumerate() {
        for day in 1..=*length {
            days.push(format!("2025-{:02}-{day:02}", month + 1));
        }
    }
    days
}

/// A small deterministic generator, so that the sample looks like real data.
fn noise(i: u64) -> u64 {
    let mut x = i
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    x ^= x >> 33;
    x.wrapping_mul(0xff51_afd7_ed55_8ccd) >> 40
}

fn sample() -> Document {
    let days = days_of_2025();
    let events: Vec<u64> = (0..days.len() as u64)
        .map(|i| {
            let weekday = i % 7;
            let base = if weekday >= 5 { 300 } else { 1_400 };
            base + noise(i) % 600 + i * 3
        })
        .collect();
    let alerts: Vec<u64> = (0..days.len() as u64)
        .map(|i| 40 + noise(i + 7) % 160)
        .collect();
    let actions = [
        "tool_call: read_file",
        "tool_call: http_request to api.payments.example",
        "model_response",
        "tool_call: shell (rm -rf /tmp/build-cache)",
        "policy_decision: deny",
    ];
    let agents = [
        "billing-agent",
        "support-bot",
        "Zoë (research)",
        "deploy-agent",
    ];
    let rows: Vec<Vec<String>> = (1..=TABLE_ROWS as u64)
        .map(|i| {
            vec![
                format!("evt-{i:06}"),
                format!(
                    "2025-03-{:02}T{:02}:{:02}:07Z",
                    1 + i % 28,
                    i % 24,
                    (i * 7) % 60
                ),
                agents[(i % 4) as usize].to_owned(),
                actions[(noise(i) % 5) as usize].to_owned(),
                if noise(i + 1).is_multiple_of(9) {
                    "denied"
                } else {
                    "ok"
                }
                .to_owned(),
                format!("{}", 12_000 + noise(i) % 9_000),
                format!("{:016x}", noise(i) * 0x9e37_79b9 + i),
            ]
        })
        .collect();
    Document {
        lang: "en".into(),
        created_ms: 1_767_225_600_000,
        attachments: Vec::new(),
        title: "SOC 2 CC7.2 evidence".to_owned(),
        subtitle: "Monitoring of system components for anomalies".to_owned(),
        cover: vec![
            ("Organisation".to_owned(), "Acme Corp GmbH".to_owned()),
            (
                "System".to_owned(),
                "Customer-support agents (production)".to_owned(),
            ),
            ("Period".to_owned(), "2025-01-01 to 2025-12-31".to_owned()),
            ("Tenant".to_owned(), "acme-prod".to_owned()),
            (
                "Generated from".to_owned(),
                "log acme-prod, entries 1 to 412,907, checkpoint 9f3c2a…e41b signed by key \
                 blackbox-2025"
                    .to_owned(),
            ),
        ],
        header: "Acme Corp — SOC 2 CC7.2 — 2025".to_owned(),
        sections: vec![
            Section {
                title: SECTION_TITLES[0].to_owned(),
                blocks: vec![
                    Block::Paragraph(
                        "This report gives the evidence for SOC 2 CC7.2 (the entity monitors \
                         system components for anomalies) over the period. Every action of the \
                         agents was recorded in a tamper-evident, hash-chained log; the chain \
                         was verified end to end before this report was produced. Reviewed by \
                         José Müller and Zoë Ångström — availability ≥ 99.9 % per § 4 of the \
                         policy."
                            .to_owned(),
                    ),
                    Block::KeyValues(vec![
                        ("Entries".to_owned(), "412,907".to_owned()),
                        (
                            "Chain verification".to_owned(),
                            "passed (0 gaps, 0 mismatches)".to_owned(),
                        ),
                        ("Alerts raised".to_owned(), "1,204".to_owned()),
                        (
                            "Retention".to_owned(),
                            "400 days, then deletion with a signed tombstone per segment"
                                .to_owned(),
                        ),
                    ]),
                    Block::Subheading("Scope".to_owned()),
                    Block::Paragraph(
                        "All agents of the tenant are in scope. Administrative access to the log \
                         is itself logged."
                            .to_owned(),
                    ),
                ],
            },
            Section {
                title: SECTION_TITLES[1].to_owned(),
                blocks: vec![
                    Block::Paragraph("Events and alerts per day over the year.".to_owned()),
                    Block::Chart {
                        title: "Recorded events and alerts per day".to_owned(),
                        days,
                        series: vec![("Events".to_owned(), events), ("Alerts".to_owned(), alerts)],
                    },
                ],
            },
            Section {
                title: SECTION_TITLES[2].to_owned(),
                blocks: vec![
                    Block::Paragraph("A sample of the population, in log order.".to_owned()),
                    Block::Table {
                        columns: [
                            "Event",
                            "Time (UTC)",
                            "Agent",
                            "Action",
                            "Outcome",
                            "Tokens",
                            "Entry hash",
                        ]
                        .map(str::to_owned)
                        .to_vec(),
                        rows,
                        caption: Some(format!(
                            "{TABLE_ROWS} of 412,907 rows shown; all are in events.csv."
                        )),
                    },
                ],
            },
            Section {
                title: SECTION_TITLES[3].to_owned(),
                blocks: vec![
                    Block::Paragraph(
                        "The auditor can verify the log and this report offline with the public \
                         key alone:"
                            .to_owned(),
                    ),
                    Block::Code(
                        "blackbox verify --log acme-prod.log \\\n\
                         \t--key blackbox-2025.pub --manifest report.manifest.json\n\
                         # expected output: OK 412907 entries, checkpoint 9f3c2a…e41b"
                            .to_owned(),
                    ),
                ],
            },
        ],
    }
}

/// The pages of `pdftotext -layout`, in order.
fn pages_text(path: &Path) -> Vec<String> {
    let text = run("pdftotext", &["-layout", path.to_str().unwrap(), "-"]);
    text.split('\u{c}').map(str::to_owned).collect()
}

#[test]
fn sample_report_is_valid_complete_and_deterministic() {
    let doc = sample();
    let pdf = blackbox_export::pdf::render_pdf_a(&doc).unwrap();
    assert!(pdf.starts_with(b"%PDF-"));
    assert_eq!(
        pdf,
        render_pdf(&doc).unwrap(),
        "the same document gave different bytes"
    );
    // Fonts are subset: the three DejaVu files alone weigh 1.8 MB.
    assert!(pdf.len() < 1_000_000, "{} bytes", pdf.len());

    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "report.pdf", &pdf);
    qpdf_check(&path);

    let mut pages = None;
    if have("qpdf") {
        let count = page_count(&path);
        // Cover, contents, summary and chart, a 300-row table over several pages, the code.
        assert!((8..=40).contains(&count), "{count} pages");
        pages = Some(count);
    }

    if have("pdftotext") {
        let texts = pages_text(&path);
        let all = texts.concat();
        for title in SECTION_TITLES {
            assert!(all.contains(title), "missing section {title}");
        }
        // The table of contents (page 2) gives each section's page; the heading is there.
        let toc = &texts[1];
        assert!(toc.contains("Contents"), "{toc}");
        for (n, title) in SECTION_TITLES.iter().enumerate() {
            let heading = format!("{}. {title}", n + 1);
            let line = toc
                .lines()
                .map(str::trim)
                .find(|line| line.starts_with(&heading))
                .unwrap_or_else(|| panic!("no contents entry for {heading}:\n{toc}"));
            let page: usize = line.split_whitespace().last().unwrap().parse().unwrap();
            assert!(
                texts[page - 1].contains(&heading),
                "contents say {heading} is on page {page}:\n{}",
                texts[page - 1]
            );
        }
        assert!(!texts[0].contains("Page 1 of"), "the cover has no footer");
        match pages {
            Some(count) => assert!(all.contains(&format!("Page 2 of {count}")), "no footer"),
            None => assert!(all.contains("Page 2 of"), "no footer"),
        }
        assert!(
            texts[1].contains("Acme Corp — SOC 2 CC7.2 — 2025"),
            "no running header"
        );
        // First and last rows of the table, and the header repeated on every table page.
        assert!(all.contains("evt-000001"));
        assert!(all.contains(&format!("evt-{TABLE_ROWS:06}")));
        let table_pages = texts.iter().filter(|t| t.contains("evt-0")).count();
        assert!(table_pages >= 3, "the table spans {table_pages} pages");
        for page in texts.iter().filter(|t| t.contains("evt-0")) {
            assert!(
                page.contains("Entry hash"),
                "a table page without the header row"
            );
        }
        assert!(
            all.contains("of 412,907 rows shown; all are in events.csv."),
            "no caption"
        );
        // Unicode, and the chart's labels.
        for text in [
            "José Müller",
            "Zoë Ångström",
            "≥ 99.9 %",
            "§ 4",
            "Zoë",
            "(research)",
        ] {
            assert!(all.contains(text), "missing {text}");
        }
        assert!(
            all.contains("2025-03-01") && all.contains("Alerts"),
            "chart labels missing"
        );
        assert!(
            all.contains("blackbox verify --log acme-prod.log"),
            "code block missing"
        );
    }

    if have("pdftoppm") {
        let table_page = if have("pdftotext") {
            pages_text(&path)
                .iter()
                .position(|t| t.contains("evt-000150"))
                .map_or(5, |i| i + 1)
        } else {
            5
        };
        for page in [1, table_page] {
            let prefix = dir.path().join(format!("page-{page}"));
            let page = page.to_string();
            run(
                "pdftoppm",
                &[
                    "-png",
                    "-r",
                    "50",
                    "-f",
                    &page,
                    "-l",
                    &page,
                    "-singlefile",
                    path.to_str().unwrap(),
                    prefix.to_str().unwrap(),
                ],
            );
            let png = std::fs::read(prefix.with_extension("png")).unwrap();
            assert!(png.starts_with(b"\x89PNG") && png.len() > 1_000);
        }
    }
}

#[test]
fn metadata_names_the_title_and_blackbox() {
    let pdf = blackbox_export::pdf::render_pdf_a(&sample()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "report.pdf", &pdf);
    if have("pdfinfo") {
        let info = run("pdfinfo", &[path.to_str().unwrap()]);
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim_start_matches(':').trim().to_owned())
        };
        assert_eq!(
            field("Title").as_deref(),
            Some("SOC 2 CC7.2 evidence"),
            "{info}"
        );
        assert_eq!(field("Producer").as_deref(), Some("Blackbox"), "{info}");
        assert_eq!(field("Creator").as_deref(), Some("Blackbox"), "{info}");
        // The document's own date (when the report was made), not the clock of the renderer.
        assert_eq!(
            field("CreationDate").as_deref(),
            Some("Thu Jan  1 00:00:00 2026 UTC"),
            "{info}"
        );
        assert_eq!(field("Tagged").as_deref(), Some("yes"), "{info}");
        // PDF/A-3a, in the XMP metadata, and the document's language.
        let meta = run("pdfinfo", &["-meta", path.to_str().unwrap()]);
        for want in [
            "<pdfaid:part>3</pdfaid:part>",
            "<pdfaid:conformance>A</pdfaid:conformance>",
        ] {
            assert!(
                meta.contains(want),
                "{want} not in the XMP metadata:\n{meta}"
            );
        }
        assert!(
            meta.contains("x-default") || meta.contains("<dc:language>"),
            "{meta}"
        );
        assert_eq!(
            field("Page size")
                .as_deref()
                .map(|s| s.starts_with("595 x 842")),
            Some(true)
        );
    }
    // The report's JSON and CSV ride along as associated files (PDF/A-3).
    let mut doc = sample();
    doc.attachments.push(blackbox_export::doc::Attachment {
        name: "report.json".into(),
        mime_type: "application/json".into(),
        description: "The report as JSON".into(),
        bytes: b"{\"format\":\"blackbox.evidence.v1\"}\n".to_vec(),
    });
    let pdf = blackbox_export::pdf::render_pdf_a(&doc).unwrap();
    let path = write(dir.path(), "attached.pdf", &pdf);
    if have("pdfdetach") {
        let list = run("pdfdetach", &["-list", path.to_str().unwrap()]);
        assert!(list.contains("report.json"), "{list}");
        let out = dir.path().join("out.json");
        run(
            "pdfdetach",
            &[
                "-save",
                "1",
                "-o",
                out.to_str().unwrap(),
                path.to_str().unwrap(),
            ],
        );
        assert_eq!(
            std::fs::read(&out).unwrap(),
            b"{\"format\":\"blackbox.evidence.v1\"}\n"
        );
    }
}

fn section(title: &str, blocks: Vec<Block>) -> Section {
    Section {
        title: title.to_owned(),
        blocks,
    }
}

#[test]
fn degenerate_documents_render() {
    let empty = Document {
        lang: "en".into(),
        created_ms: 1_767_225_600_000,
        attachments: Vec::new(),
        title: String::new(),
        subtitle: String::new(),
        cover: Vec::new(),
        header: String::new(),
        sections: Vec::new(),
    };
    let long_word = "x".repeat(20_000);
    let odd = Document {
        lang: "en".into(),
        created_ms: 1_767_225_600_000,
        attachments: Vec::new(),
        title: format!("A title with a very long word {long_word}"),
        subtitle: "line one\nline two\r\nwith\ttab and \u{7} bell".to_owned(),
        cover: vec![
            (long_word.clone(), long_word.clone()),
            (String::new(), String::new()),
        ],
        header: "—".repeat(500),
        sections: vec![
            section("", Vec::new()),
            section(
                "Empty blocks",
                vec![
                    Block::Paragraph(String::new()),
                    Block::Subheading(String::new()),
                    Block::KeyValues(Vec::new()),
                    Block::Code(String::new()),
                    Block::Table {
                        columns: Vec::new(),
                        rows: Vec::new(),
                        caption: None,
                    },
                    Block::Table {
                        columns: vec!["Only header".to_owned()],
                        rows: Vec::new(),
                        caption: Some(String::new()),
                    },
                    Block::Table {
                        columns: Vec::new(),
                        rows: vec![vec!["no".to_owned(), "header".to_owned()], Vec::new()],
                        caption: None,
                    },
                ],
            ),
            section(
                "Charts at the edges",
                vec![
                    Block::Chart {
                        title: String::new(),
                        days: Vec::new(),
                        series: Vec::new(),
                    },
                    Block::Chart {
                        title: "No series".to_owned(),
                        days: vec!["2025-01-01".to_owned()],
                        series: Vec::new(),
                    },
                    Block::Chart {
                        title: "One day".to_owned(),
                        days: vec!["2025-01-01".to_owned()],
                        series: vec![("a".to_owned(), vec![3]), ("b".to_owned(), vec![1])],
                    },
                    Block::Chart {
                        title: "All zero, short series".to_owned(),
                        days: (0..366).map(|i| format!("day {i}")).collect(),
                        series: vec![("a".to_owned(), vec![0; 10]), ("b".to_owned(), Vec::new())],
                    },
                    Block::Chart {
                        title: "Huge values".to_owned(),
                        days: vec!["x".to_owned(); 3],
                        series: vec![
                            ("a".to_owned(), vec![u64::MAX, 0, 1]),
                            ("b".to_owned(), vec![u64::MAX; 5]),
                            ("c".to_owned(), vec![1, 2, 3]),
                        ],
                    },
                    Block::Chart {
                        title: "a title that never ends ".repeat(400),
                        days: vec!["2025-01-01".to_owned(), "2025-01-02".to_owned()],
                        series: (0..500)
                            .map(|i| (format!("series {i}"), vec![i, 1]))
                            .collect(),
                    },
                ],
            ),
            section(
                "Huge cells",
                vec![
                    Block::Table {
                        columns: vec!["A".to_owned(), long_word.clone(), "C".to_owned()],
                        rows: vec![
                            vec![
                                "1".to_owned(),
                                format!("{long_word} {long_word}"),
                                "3".to_owned(),
                            ],
                            vec!["only one cell".to_owned()],
                            vec!["a".into(), "b".into(), "c".into(), "extra".into()],
                        ],
                        caption: Some(long_word.clone()),
                    },
                    Block::Table {
                        columns: (0..60).map(|i| format!("c{i}")).collect(),
                        rows: vec![(0..60).map(|i| format!("value {i}")).collect()],
                        caption: None,
                    },
                    Block::Code(format!("{long_word}\n\n{}", "line\n".repeat(200))),
                    Block::KeyValues(vec![("k".to_owned(), "word ".repeat(3_000))]),
                ],
            ),
        ],
    };
    let dir = tempfile::tempdir().unwrap();
    for (name, doc) in [("empty", &empty), ("odd", &odd)] {
        let pdf = render_pdf(doc).unwrap();
        assert_eq!(pdf, render_pdf(doc).unwrap(), "{name} is not deterministic");
        let path = write(dir.path(), &format!("{name}.pdf"), &pdf);
        qpdf_check(&path);
        if name == "empty" && have("qpdf") {
            assert_eq!(page_count(&path), 2, "cover and contents");
        }
    }
}

#[test]
fn a_table_of_ten_thousand_rows_renders() {
    let rows: Vec<Vec<String>> = (0..10_000)
        .map(|i| {
            vec![
                format!("row-{i:05}"),
                format!("value {}", i * 7),
                "ok".to_owned(),
            ]
        })
        .collect();
    let doc = Document {
        lang: "en".into(),
        created_ms: 1_767_225_600_000,
        attachments: Vec::new(),
        title: "Long table".to_owned(),
        subtitle: String::new(),
        cover: Vec::new(),
        header: "Long table".to_owned(),
        sections: vec![section(
            "Rows",
            vec![Block::Table {
                columns: vec!["Id".to_owned(), "Value".to_owned(), "Status".to_owned()],
                rows,
                caption: Some("All rows.".to_owned()),
            }],
        )],
    };
    let pdf = render_pdf(&doc).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "long.pdf", &pdf);
    qpdf_check(&path);
    if have("qpdf") {
        let pages = page_count(&path);
        assert!((150..=400).contains(&pages), "{pages} pages");
    }
    if have("pdftotext") {
        let all = pages_text(&path).concat();
        assert!(all.contains("row-00000") && all.contains("row-09999"));
    }
}

/// Renders the sample report, checks it as an auditor's tools would (structure, every section
/// title in the text), and writes it for a person to look at when `BLACKBOX_PDF_PREVIEW` names a
/// file: `BLACKBOX_PDF_PREVIEW=/tmp/sample-report.pdf cargo test -p blackbox-export --test pdf
/// preview`. Without the variable the file goes to a temporary directory.
#[test]
fn preview() {
    let bytes = render_pdf(&sample()).unwrap();
    assert!(bytes.starts_with(b"%PDF-"));
    let tmp = tempfile::tempdir().unwrap();
    let requested = std::env::var_os("BLACKBOX_PDF_PREVIEW").map(PathBuf::from);
    let path = requested
        .clone()
        .unwrap_or_else(|| tmp.path().join("sample-report.pdf"));
    std::fs::write(&path, &bytes).unwrap();
    qpdf_check(&path);
    if have("pdftotext") {
        let text = pages_text(&path).concat();
        for title in SECTION_TITLES {
            assert!(text.contains(title), "preview lacks section {title:?}");
        }
    }
    if requested.is_some() {
        eprintln!("wrote {}", path.display());
    }
}

/// Text the fonts have no glyph for (CJK, emoji, a private-use character) still renders as a
/// conforming PDF/A-3a document, and its text is extracted as written.
#[test]
fn characters_without_a_glyph_keep_the_document_conforming() {
    let doc = Document {
        lang: "en".into(),
        created_ms: 1_767_225_600_000,
        attachments: Vec::new(),
        title: "Agents 代理 🤖".to_owned(),
        subtitle: "\u{e000} private use".to_owned(),
        cover: vec![("Agent".to_owned(), "客服-agent-01 🤖".to_owned())],
        header: "代理".to_owned(),
        sections: vec![section(
            "漢字 section",
            vec![Block::Table {
                columns: vec!["Agent".into(), "Tool".into()],
                rows: vec![vec!["客服-agent-01".into(), "检索 🤖".into()]],
                caption: None,
            }],
        )],
    };
    let pdf = blackbox_export::pdf::render_pdf_a(&doc).unwrap();
    if have("pdftotext") {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "cjk.pdf", &pdf);
        let text = run("pdftotext", &[path.to_str().unwrap(), "-"]);
        assert!(text.contains("客服-agent-01"), "{text}");
    }
}
