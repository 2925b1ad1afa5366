//! PDF rendering of a [`Document`]: what an auditor receives.
//!
//! The layout is done here: line breaking, column sizing, pagination, the table of contents,
//! the running header and footer. [krilla] writes the PDF, subsets the fonts and embeds them;
//! [rustybuzz] shapes the text, so that what is measured for the layout is exactly what is
//! drawn. The fonts are DejaVu Sans, DejaVu Sans Bold and DejaVu Sans Mono, compiled in from
//! `assets/` (licence: `assets/DEJAVU-LICENSE.txt`).
//!
//! The output is a pure function of the document: no clock, no randomness, no document ID but
//! a hash of the content; its creation date is the document's ([`Document::created_ms`]).
//!
//! It is PDF/A-3a (ISO 19005-3, level A), checked by krilla as it is written: fonts embedded,
//! every glyph mapped to Unicode (a character the fonts lack is drawn as U+FFFD and extracted
//! as written; private-use characters become U+FFFD), the language set, XMP metadata, and
//! tagged: a structure tree gives every heading, paragraph, table (header cells, rows, cells,
//! caption), chart (a figure with its description in words) and the table of contents (links
//! included), while rules, fills, running headers and footers and table headers repeated on a
//! later page are artifacts. The report's JSON and CSV are embedded as associated files
//! ([`Document::attachments`]).
//!
//! Pages are A4: the cover, then the table of contents, then the numbered sections. Every page
//! after the cover carries the running header ([`Document::header`]) and a footer with the
//! title and "Page N of M", N being the physical page number (the cover is page 1), so that the
//! numbers in the table of contents match the PDF viewer's.
//!
//! Deliberately left out: bidirectional text (every line is set left to right), font fallback
//! (a character DejaVu lacks, e.g. CJK, shows as the missing-glyph box) and hyphenation (a word
//! wider than its column is broken after a `-`, `/`, `.`… or, failing that, between any two
//! characters).

use std::ops::Range;

use std::num::NonZeroU16;

use krilla::SerializeSettings;
use krilla::annotation::{Annotation, LinkAnnotation, Target};
use krilla::color::rgb;
use krilla::configure::{Archival, Configuration, ConfigurationBuilder};
use krilla::destination::XyzDestination;
use krilla::embed::{AssociationKind, EmbeddedFile, MimeType};
use krilla::geom::{PathBuilder, Point, Rect};
use krilla::metadata::DateTime;
use krilla::metadata::Metadata;
use krilla::num::NormalizedF32;
use krilla::outline::{Outline, OutlineNode};
use krilla::page::PageSettings;
use krilla::paint::{Fill, FillRule, LineCap, Stroke, StrokeDash};
use krilla::surface::{Location, Surface};
use krilla::tagging::{
    Artifact, ArtifactType, ContentTag, Identifier, SpanTag, TableHeaderScope, Tag, TagGroup,
    TagKind, TagTree,
};
use krilla::text::{Font, GlyphId};
use rustybuzz::{Direction, UnicodeBuffer};

use crate::doc::{Block, Document, Section};

/// Why a document could not be rendered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PdfError {
    /// A font compiled into the crate could not be parsed (a broken asset, not bad input).
    #[error("the embedded font {name} could not be parsed")]
    Font {
        /// File name of the font under `crates/export/assets/`.
        name: &'static str,
    },
    /// krilla could not write the PDF (or found it would not conform to PDF/A-3a).
    #[error("writing the PDF failed: {0:?}")]
    Write(krilla::error::KrillaError),
    /// The PDF/A configuration was refused.
    #[error("the PDF/A configuration was refused: {0}")]
    Config(String),
}

/// Renders `doc` as an A4 PDF report (see the [module docs](self) for the layout).
///
/// Any content is accepted: empty sections and tables, words wider than the page, tables of
/// any length, charts of any number of days including none. The same document always gives
/// the same bytes.
///
/// # Errors
///
/// [`PdfError::Font`] if an embedded font is broken, [`PdfError::Write`] if krilla fails to
/// serialise the document; neither depends on the document's content in practice.
pub fn render_pdf(doc: &Document) -> Result<Vec<u8>, PdfError> {
    match render(doc, true) {
        // Evidence is never refused for its form: a document that would not conform (a
        // character PDF/A forbids that slipped through) is written as a tagged PDF that does
        // not claim PDF/A.
        Err(PdfError::Write(krilla::error::KrillaError::Validation(_))) => render(doc, false),
        other => other,
    }
}

/// Renders `doc` as PDF/A-3a, or fails naming what does not conform.
///
/// # Errors
/// As [`render_pdf`], and [`PdfError::Write`] with krilla's validation errors.
pub fn render_pdf_a(doc: &Document) -> Result<Vec<u8>, PdfError> {
    render(doc, true)
}

fn render(doc: &Document, archival: bool) -> Result<Vec<u8>, PdfError> {
    let fonts = Fonts::load()?;

    let mut cover = Layout::new(&fonts);
    cover.cover(doc);
    let mut toc = Layout::new(&fonts);
    toc.contents(&doc.sections);
    let mut body = Layout::new(&fonts);
    for (index, section) in doc.sections.iter().enumerate() {
        body.section(index + 1, section);
    }

    if doc.sections.is_empty() {
        body.pages.clear();
    }
    let cover_pages = cover.pages.len();
    let body_offset = cover_pages + toc.pages.len();
    // Physical index of each section's first page, and the heading's position on it.
    let anchors: Vec<(usize, f32)> = body
        .anchors
        .iter()
        .map(|&(page, y)| (body_offset + page, y))
        .collect();
    // The three layouts' structures as one, in reading order.
    let mut nodes: Vec<StructNode> = Vec::new();
    let mut pages: Vec<Vec<(Item, Option<usize>)>> = Vec::new();
    for layout in [cover, toc, body] {
        let offset = nodes.len();
        nodes.extend(layout.nodes.into_iter().map(|n| StructNode {
            role: n.role,
            parent: n.parent.map(|p| p + offset),
        }));
        pages.extend(layout.pages.into_iter().map(|items| {
            items
                .into_iter()
                .map(|(item, node)| (item, node.map(|n| n + offset)))
                .collect::<Vec<_>>()
        }));
    }

    let settings = SerializeSettings {
        configuration: if archival {
            pdf_a()?
        } else {
            Configuration::default()
        },
        // A tagged PDF: the structure tree below gives every heading, paragraph, table and
        // chart; rules, fills, running headers and repeated table headers are artifacts.
        enable_tagging: true,
        ..SerializeSettings::default()
    };
    let mut pdf = krilla::Document::new_with(settings);
    let header = fonts.fit(FontId::Regular, CHROME_SIZE, &doc.header, TEXT_W);
    let footer_title = fonts.fit(FontId::Regular, CHROME_SIZE, &doc.title, TEXT_W - 100.0);
    let total = pages.len();
    let mut leaves: Vec<Vec<Identifier>> = vec![Vec::new(); nodes.len()];
    for (index, items) in pages.iter().enumerate() {
        // The default page settings are A4 (595 × 842 pt), the size the layout uses.
        let mut page = pdf.start_page_with(PageSettings::default());
        let mut links = Vec::new();
        {
            let mut painter = Painter {
                surface: page.surface(),
                fonts: &fonts,
            };
            for (item, node) in items {
                let role = node.and_then(|n| nodes.get(n)).map(|n| &n.role);
                if let (Some(id), Some(n)) = (painter.draw(item, role, &anchors), node) {
                    leaves[*n].push(id);
                }
                if let (Item::Link { rect, section }, Some(n)) = (item, node) {
                    let [x, y, w, h] = *rect;
                    links.push((Rect::from_xywh(x, y, w, h), *section, *n));
                }
            }
            if index >= cover_pages {
                painter.chrome(&header, &footer_title, index + 1, total);
            }
            painter.surface.finish();
        }
        for (rect, section, node) in links {
            let (Some(rect), Some((target, y)), Some(title)) =
                (rect, anchors.get(section), doc.sections.get(section))
            else {
                continue;
            };
            let destination = XyzDestination::new(*target, Point::from_xy(0.0, anchor_top(*y)));
            let link = LinkAnnotation::new(rect, Target::Destination(destination.into()));
            let alt = label(&title.title, &format!("Section {}", section + 1));
            let id = page.add_tagged_annotation(Annotation::new_link(link, Some(alt)));
            leaves[node].push(id);
        }
        page.finish();
    }
    pdf.set_tag_tree(tag_tree(&nodes, leaves, &doc.lang));

    let mut outline = Outline::new();
    for (index, (section, &(page, y))) in doc.sections.iter().zip(&anchors).enumerate() {
        let title = format!("{}. {}", index + 1, label(&section.title, "(untitled)"));
        let destination = XyzDestination::new(page, Point::from_xy(0.0, anchor_top(y)));
        outline.push_child(OutlineNode::new(title, destination));
    }
    pdf.set_outline(outline);
    let created = pdf_date(doc.created_ms);
    pdf.set_metadata(
        Metadata::new()
            .title(label(&doc.title, "Blackbox report"))
            .language(doc.lang.clone())
            .creation_date(created)
            .creator("Blackbox".to_owned())
            .producer("Blackbox".to_owned()),
    );
    for a in &doc.attachments {
        pdf.embed_file(EmbeddedFile {
            path: a.name.clone(),
            mime_type: MimeType::new(&a.mime_type),
            description: Some(label(&a.description, &a.name)),
            association_kind: AssociationKind::Alternative,
            data: a.bytes.clone().into(),
            modification_date: Some(created),
            compress: Some(true),
            location: None,
        });
    }
    pdf.finish().map_err(PdfError::Write)
}

/// PDF/A-3a: archival (ISO 19005-3), with the JSON and CSV as associated files, and tagged
/// (level A: the logical structure, Unicode text, a language).
fn pdf_a() -> Result<Configuration, PdfError> {
    ConfigurationBuilder::new()
        .with_archival_validator(Archival::A3_A)
        .finish()
        .map_err(|e| PdfError::Config(format!("{e:?}")))
}

/// The creation date of the PDF and of its attachments (UTC), from Unix ms.
fn pdf_date(ms: i64) -> DateTime {
    let t = jiff::tz::Offset::UTC
        .to_datetime(jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH));
    let small = |v: i8| u8::try_from(v).unwrap_or(0);
    DateTime::new(u16::try_from(t.year()).unwrap_or(1970))
        .month(small(t.month()))
        .day(small(t.day()))
        .hour(small(t.hour()))
        .minute(small(t.minute()))
        .second(small(t.second()))
        .utc_offset_hour(0)
        .utc_offset_minute(0)
}

/// The tag tree: each structure node a group, in reading order, holding the content drawn for
/// it (`leaves`) and its child nodes.
fn tag_tree(nodes: &[StructNode], mut leaves: Vec<Vec<Identifier>>, lang: &str) -> TagTree {
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    let mut roots = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        match n.parent {
            Some(p) => children[p].push(i),
            None => roots.push(i),
        }
    }
    // Children come after their parents: build the groups from the last node to the first.
    let mut groups: Vec<Option<TagGroup>> = vec![None; nodes.len()];
    for i in (0..nodes.len()).rev() {
        let mut g = TagGroup::new(tag_of(&nodes[i].role));
        for id in std::mem::take(&mut leaves[i]) {
            g.push(id);
        }
        for &c in &children[i] {
            if let Some(child) = groups[c].take() {
                g.push(child);
            }
        }
        groups[i] = Some(g);
    }
    let mut tree = TagTree::new().with_lang(Some(lang.to_owned()));
    for r in roots {
        if let Some(g) = groups[r].take() {
            tree.push(g);
        }
    }
    tree
}

fn tag_of(role: &Role) -> TagKind {
    match role {
        Role::Sect => Tag::Section.into(),
        Role::Heading(level, title) => Tag::Hn(
            NonZeroU16::new(*level).unwrap_or(NonZeroU16::MIN),
            Some(title.clone()),
        )
        .into(),
        Role::P => Tag::P.into(),
        Role::Code => Tag::Code.into(),
        Role::Table => Tag::Table.into(),
        Role::Row => Tag::TR.into(),
        Role::HeaderCell { of_row } => Tag::TH(if *of_row {
            TableHeaderScope::Row
        } else {
            TableHeaderScope::Column
        })
        .into(),
        Role::Cell => Tag::TD.into(),
        Role::Caption => Tag::Caption.into(),
        Role::Figure(alt) => Tag::Figure(Some(alt.clone())).into(),
        Role::Toc => Tag::TOC.into(),
        Role::TocItem => Tag::TOCI.into(),
        Role::Link => Tag::Link.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Page geometry and style (points; origin at the top left, y grows downwards).

const PAGE_W: f32 = 595.0;
const PAGE_H: f32 = 842.0;
const MARGIN_X: f32 = 56.0;
const TEXT_W: f32 = PAGE_W - 2.0 * MARGIN_X;
const RIGHT: f32 = MARGIN_X + TEXT_W;
const BODY_TOP: f32 = 80.0;
const BODY_BOTTOM: f32 = PAGE_H - 72.0;
const BODY_H: f32 = BODY_BOTTOM - BODY_TOP;

const CHROME_SIZE: f32 = 7.5;
const HEADER_BASELINE: f32 = 44.0;
const HEADER_RULE: f32 = 51.0;
const FOOTER_RULE: f32 = PAGE_H - 54.0;
const FOOTER_BASELINE: f32 = PAGE_H - 42.0;

const BODY_SIZE: f32 = 9.5;
const BODY_LH: f32 = 13.5;
const H1_SIZE: f32 = 15.0;
const H1_LH: f32 = 20.0;
const H2_SIZE: f32 = 11.0;
const H2_LH: f32 = 15.0;
const BLOCK_GAP: f32 = 9.0;

const TABLE_SIZE: f32 = 8.0;
const TABLE_LH: f32 = 10.5;
const CELL_PAD_X: f32 = 4.5;
const CELL_PAD_Y: f32 = 3.0;
const HEADER_MAX_LINES: usize = 3;
const CAPTION_SIZE: f32 = 7.5;
const CAPTION_LH: f32 = 10.0;

const CODE_SIZE: f32 = 8.0;
const CODE_LH: f32 = 10.5;
const CODE_PAD: f32 = 6.0;

const CHART_PLOT_H: f32 = 150.0;
const CHART_LABEL_SIZE: f32 = 7.0;

const INK: Rgb = Rgb(0x1f, 0x23, 0x28);
const MUTED: Rgb = Rgb(0x5b, 0x66, 0x75);
const ACCENT: Rgb = Rgb(0x1f, 0x3a, 0x5f);
const RULE: Rgb = Rgb(0xc5, 0xcd, 0xd8);
const HAIRLINE: Rgb = Rgb(0xe1, 0xe5, 0xeb);
const HEADER_FILL: Rgb = Rgb(0xdf, 0xe6, 0xef);
const ZEBRA: Rgb = Rgb(0xf6, 0xf8, 0xfa);
const CODE_FILL: Rgb = Rgb(0xf3, 0xf4, 0xf6);
const CODE_BORDER: Rgb = Rgb(0xdc, 0xdf, 0xe4);
const GRID: Rgb = Rgb(0xe6, 0xe9, 0xee);
const SERIES: [Rgb; 4] = [
    Rgb(0x3b, 0x6e, 0xa8),
    Rgb(0xd9, 0x82, 0x2b),
    Rgb(0x4c, 0x9a, 0x5b),
    Rgb(0x9b, 0x4d, 0xca),
];

/// Where a link or bookmark lands: a little above the heading, never above the page.
fn anchor_top(y: f32) -> f32 {
    (y - 12.0).max(0.0)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rgb(u8, u8, u8);

impl Rgb {
    fn fill(self) -> Fill {
        Fill {
            paint: rgb::Color::new(self.0, self.1, self.2).into(),
            opacity: NormalizedF32::ONE,
            rule: FillRule::NonZero,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fonts and text shaping.

const SANS: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
const SANS_BOLD: &[u8] = include_bytes!("../assets/DejaVuSans-Bold.ttf");
const MONO: &[u8] = include_bytes!("../assets/DejaVuSansMono.ttf");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FontId {
    Regular,
    Bold,
    Mono,
}

struct Face {
    pdf: Font,
    shaper: rustybuzz::Face<'static>,
    units_per_em: f32,
    /// The glyph of U+FFFD (else `?`) and its advance in ems: what a missing character shows.
    replacement: Option<(u16, f32)>,
}

impl Face {
    fn load(data: &'static [u8], name: &'static str) -> Result<Self, PdfError> {
        let broken = || PdfError::Font { name };
        let shaper = rustybuzz::Face::from_slice(data, 0).ok_or_else(broken)?;
        let pdf = Font::new(data.into(), 0).ok_or_else(broken)?;
        let units_per_em = match shaper.units_per_em() {
            upem if upem > 0 => upem as f32,
            _ => return Err(broken()),
        };
        let replacement = ['\u{fffd}', '?'].iter().find_map(|&c| {
            let g = shaper.glyph_index(c)?;
            let advance = f32::from(shaper.glyph_hor_advance(g)?) / units_per_em;
            Some((g.0, advance))
        });
        Ok(Self {
            pdf,
            shaper,
            units_per_em,
            replacement,
        })
    }
}

struct Fonts {
    regular: Face,
    bold: Face,
    mono: Face,
}

/// How a text is broken into lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wrap {
    /// Prose: break at spaces, else after punctuation, else anywhere; spaces at the breaks
    /// vanish.
    Words,
    /// Literal text: break anywhere, keep every space.
    Chars,
}

/// A glyph as positioned by the shaper; advances and offsets in ems, the text range in bytes
/// of its line's text.
#[derive(Clone, Copy, Debug)]
struct ShapedGlyph {
    id: u32,
    start: usize,
    end: usize,
    advance: f32,
    dx: f32,
    dy: f32,
}

impl krilla::text::Glyph for ShapedGlyph {
    fn glyph_id(&self) -> GlyphId {
        GlyphId::new(self.id)
    }
    fn text_range(&self) -> Range<usize> {
        self.start..self.end
    }
    fn x_advance(&self, size: f32) -> f32 {
        self.advance * size
    }
    fn x_offset(&self, size: f32) -> f32 {
        self.dx * size
    }
    fn y_offset(&self, size: f32) -> f32 {
        self.dy * size
    }
    fn y_advance(&self, _size: f32) -> f32 {
        0.0
    }
    fn location(&self) -> Option<Location> {
        None
    }
}

/// A cluster: the smallest piece of text a line may be broken around.
#[derive(Clone, Copy, Debug)]
struct Unit {
    start: usize,
    end: usize,
    glyphs: (usize, usize),
    advance: f32,
    space: bool,
    /// A line may end after it (a hyphen, a slash, a full stop…).
    soft_break: bool,
}

/// One hard line of text (no newline), shaped.
struct Shaped {
    text: String,
    glyphs: Vec<ShapedGlyph>,
    units: Vec<Unit>,
}

impl Shaped {
    /// Width of the whole line and of its widest space-delimited word, in ems.
    fn extents(&self) -> (f32, f32) {
        let (mut total, mut word, mut widest) = (0.0f32, 0.0f32, 0.0f32);
        for unit in &self.units {
            total += unit.advance;
            if unit.space {
                word = 0.0;
            } else {
                word += unit.advance;
                widest = widest.max(word);
            }
        }
        (total, widest)
    }
}

/// A line ready to draw.
#[derive(Clone, Debug)]
struct TextLine {
    font: FontId,
    size: f32,
    text: String,
    glyphs: Vec<ShapedGlyph>,
    width: f32,
}

impl Fonts {
    fn load() -> Result<Self, PdfError> {
        Ok(Self {
            regular: Face::load(SANS, "DejaVuSans.ttf")?,
            bold: Face::load(SANS_BOLD, "DejaVuSans-Bold.ttf")?,
            mono: Face::load(MONO, "DejaVuSansMono.ttf")?,
        })
    }

    fn face(&self, font: FontId) -> &Face {
        match font {
            FontId::Regular => &self.regular,
            FontId::Bold => &self.bold,
            FontId::Mono => &self.mono,
        }
    }

    /// Shapes one hard line (no newline in `text`), left to right.
    fn shape(&self, font: FontId, text: String) -> Shaped {
        // Private-use characters have no meaning a reader could extract (PDF/A-3a maps every
        // glyph to Unicode): they become U+FFFD.
        let is_private =
            |c: char| matches!(c, '\u{e000}'..='\u{f8ff}' | '\u{f0000}'..='\u{10ffff}');
        let text = if text.chars().any(is_private) {
            text.chars()
                .map(|c| if is_private(c) { '\u{fffd}' } else { c })
                .collect()
        } else {
            text
        };
        if text.is_empty() {
            return Shaped {
                text,
                glyphs: Vec::new(),
                units: Vec::new(),
            };
        }
        let face = self.face(font);
        let mut buffer = UnicodeBuffer::new();
        buffer.push_str(&text);
        buffer.set_direction(Direction::LeftToRight);
        buffer.guess_segment_properties();
        let output = rustybuzz::shape(&face.shaper, &[], buffer);
        let len = text.len();
        let em = face.units_per_em;

        // Clusters are byte offsets of chars and never decrease left to right; clamping keeps
        // that true whatever the shaper does, so that every range below is a valid slice.
        let mut starts = Vec::with_capacity(output.len());
        let mut previous = 0;
        for info in output.glyph_infos() {
            let start = (info.cluster as usize).clamp(previous, len);
            starts.push(start);
            previous = start;
        }
        let mut glyphs = Vec::with_capacity(starts.len());
        let mut units: Vec<Unit> = Vec::new();
        for (index, (info, position)) in output
            .glyph_infos()
            .iter()
            .zip(output.glyph_positions())
            .enumerate()
        {
            let start = starts.get(index).copied().unwrap_or(len);
            let end = starts
                .get(index + 1..)
                .and_then(|rest| rest.iter().copied().find(|&next| next > start))
                .unwrap_or(len);
            // A character the font lacks is drawn as the replacement character (PDF/A forbids
            // the .notdef glyph); its text stays the original, so it is extracted as written.
            let (id, advance, dx, dy) = match (info.glyph_id, face.replacement) {
                (0, Some((id, adv))) => (u32::from(id), adv, 0.0, 0.0),
                _ => (
                    info.glyph_id,
                    position.x_advance as f32 / em,
                    position.x_offset as f32 / em,
                    position.y_offset as f32 / em,
                ),
            };
            glyphs.push(ShapedGlyph {
                id,
                start,
                end,
                advance,
                dx,
                dy,
            });
            match units.last_mut() {
                Some(unit) if unit.start == start => {
                    unit.glyphs.1 = index + 1;
                    unit.advance += advance;
                }
                _ => units.push(Unit {
                    start,
                    end,
                    glyphs: (index, index + 1),
                    advance,
                    space: false,
                    soft_break: false,
                }),
            }
        }
        for unit in &mut units {
            let piece = text.get(unit.start..unit.end).unwrap_or("");
            unit.space = !piece.is_empty() && piece.chars().all(is_break_space);
            unit.soft_break = piece.chars().last().is_some_and(is_soft_break);
        }
        Shaped {
            text,
            glyphs,
            units,
        }
    }

    /// Breaks `text` into lines at most `max_w` wide (a single cluster wider than that gets a
    /// line of its own). Newlines are kept; an empty text gives no line.
    fn wrap(&self, font: FontId, size: f32, text: &str, max_w: f32, mode: Wrap) -> Vec<TextLine> {
        let mut lines = Vec::new();
        if text.is_empty() {
            return lines;
        }
        for hard in clean(text, mode == Wrap::Chars).split('\n') {
            let shaped = self.shape(font, hard.to_owned());
            wrap_shaped(&shaped, font, size, max_w, mode, &mut lines);
        }
        lines
    }

    /// Width of the widest hard line and of the widest word of `text`, in points.
    fn extents(&self, font: FontId, size: f32, text: &str) -> (f32, f32) {
        let (mut line, mut word) = (0.0f32, 0.0f32);
        for hard in clean(text, false).split('\n') {
            let (l, w) = self.shape(font, hard.to_owned()).extents();
            line = line.max(l * size);
            word = word.max(w * size);
        }
        (line, word)
    }

    /// `text` on one line, newlines flattened.
    fn line(&self, font: FontId, size: f32, text: &str) -> TextLine {
        let shaped = self.shape(font, one_line(text));
        let units = shaped.units.len();
        slice_line(&shaped, font, size, 0, units, false)
    }

    /// `text` on one line, cut with an ellipsis if wider than `max_w`.
    fn fit(&self, font: FontId, size: f32, text: &str, max_w: f32) -> TextLine {
        let line = self.line(font, size, text);
        if line.width <= max_w {
            return line;
        }
        let ellipsis = self.line(font, size, "…").width;
        let shaped = self.shape(font, line.text);
        let mut width = 0.0;
        let mut end = 0;
        for unit in &shaped.units {
            width += unit.advance * size;
            if width + ellipsis > max_w {
                break;
            }
            end = unit.end;
        }
        let kept = shaped.text.get(..end).unwrap_or("").trim_end();
        self.line(font, size, &format!("{kept}…"))
    }
}

fn is_break_space(c: char) -> bool {
    (c.is_whitespace() && !matches!(c, '\u{a0}' | '\u{2007}' | '\u{202f}')) || c == '\u{200b}'
}

/// Characters a line may end after, inside a word. Not the hyphen-minus: text extractors
/// (pdftotext) take a line ending in one for a hyphenated word and drop it, which corrupts a
/// copied identifier (a UUID, an agent id); such a word breaks elsewhere, or anywhere.
fn is_soft_break(c: char) -> bool {
    matches!(
        c,
        '/' | '\\'
            | '_'
            | '.'
            | ','
            | ';'
            | ':'
            | '|'
            | '='
            | '&'
            | '?'
            | '+'
            | ')'
            | ']'
            | '}'
            | '>'
            | '–'
            | '—'
    )
}

/// Normalises line ends, expands tabs and drops control characters (they have no glyph).
fn clean(text: &str, literal: bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut column = 0usize;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push('\n');
                column = 0;
            }
            '\n' | '\u{2028}' | '\u{2029}' => {
                out.push('\n');
                column = 0;
            }
            '\t' if literal => {
                let pad = 4 - column % 4;
                out.extend(std::iter::repeat_n(' ', pad));
                column += pad;
            }
            '\t' => {
                out.push(' ');
                column += 1;
            }
            c if c.is_control() => {}
            c => {
                out.push(c);
                column += 1;
            }
        }
    }
    out
}

/// `text` with every line break and control character turned into a space.
fn one_line(text: &str) -> String {
    clean(text, false).replace('\n', " ")
}

/// `text` on one line and short enough for a PDF string (PDF/A allows 32,767 bytes): for
/// metadata, bookmarks, headings' titles and alternate texts; `fallback` when it is blank.
fn label(text: &str, fallback: &str) -> String {
    const MAX_CHARS: usize = 2_000;
    let line = one_line(text);
    let line = line.trim();
    if line.is_empty() {
        return fallback.to_owned();
    }
    if line.chars().count() <= MAX_CHARS {
        return line.to_owned();
    }
    let mut out: String = line.chars().take(MAX_CHARS).collect();
    out.push('…');
    out
}

fn wrap_shaped(
    shaped: &Shaped,
    font: FontId,
    size: f32,
    max_w: f32,
    mode: Wrap,
    lines: &mut Vec<TextLine>,
) {
    let units = &shaped.units;
    let words = mode == Wrap::Words;
    if units.is_empty() {
        lines.push(slice_line(shaped, font, size, 0, 0, words));
        return;
    }
    let limit = max_w.max(0.0) / size;
    let mut start = 0;
    let mut first = true;
    while start < units.len() {
        if words && !first {
            while units.get(start).is_some_and(|u| u.space) {
                start += 1;
            }
            if start >= units.len() {
                break;
            }
        }
        first = false;
        let mut width = 0.0;
        let mut end = start;
        let mut space_break = None;
        let mut soft_break = None;
        let mut overflow = false;
        while let Some(unit) = units.get(end) {
            if words && unit.space {
                if end > start {
                    space_break = Some(end);
                }
                width += unit.advance;
                end += 1;
                continue;
            }
            if end > start && width + unit.advance > limit {
                overflow = true;
                break;
            }
            width += unit.advance;
            end += 1;
            if words && unit.soft_break && end < units.len() {
                soft_break = Some(end);
            }
        }
        if !overflow {
            lines.push(slice_line(shaped, font, size, start, units.len(), words));
            break;
        }
        // Every candidate is past `start`, so each line takes at least one cluster.
        let cut = space_break.or(soft_break).unwrap_or(end);
        lines.push(slice_line(shaped, font, size, start, cut, words));
        start = cut;
    }
}

/// The line made of clusters `from..to` of `shaped`, trailing spaces dropped if `trim`.
fn slice_line(
    shaped: &Shaped,
    font: FontId,
    size: f32,
    from: usize,
    to: usize,
    trim: bool,
) -> TextLine {
    let mut units = shaped.units.get(from..to).unwrap_or(&[]);
    if trim {
        while let Some((last, rest)) = units.split_last() {
            if !last.space {
                break;
            }
            units = rest;
        }
    }
    let (Some(first), Some(last)) = (units.first(), units.last()) else {
        return TextLine {
            font,
            size,
            text: String::new(),
            glyphs: Vec::new(),
            width: 0.0,
        };
    };
    let base = first.start;
    let text = shaped.text.get(base..last.end).unwrap_or("").to_owned();
    let glyphs: Vec<ShapedGlyph> = shaped
        .glyphs
        .get(first.glyphs.0..last.glyphs.1)
        .unwrap_or(&[])
        .iter()
        .map(|g| ShapedGlyph {
            start: g.start.saturating_sub(base).min(text.len()),
            end: g.end.saturating_sub(base).min(text.len()),
            ..*g
        })
        .collect();
    let width = glyphs.iter().map(|g| g.advance).sum::<f32>() * size;
    TextLine {
        font,
        size,
        text,
        glyphs,
        width,
    }
}

// ---------------------------------------------------------------------------------------------
// The display list: what each page holds, decided before anything is drawn.

enum Item {
    Text {
        x: f32,
        baseline: f32,
        color: Rgb,
        line: TextLine,
    },
    Rect {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        fill: Option<Rgb>,
        stroke: Option<Rgb>,
    },
    /// Filled rectangles, `[x, y, w, h]`, drawn as one path (chart bars).
    Bars { rects: Vec<[f32; 4]>, color: Rgb },
    Polyline {
        points: Vec<(f32, f32)>,
        width: f32,
        color: Rgb,
        dotted: bool,
    },
    /// The page number of a section, right-aligned at `right` (table of contents).
    PageRef {
        section: usize,
        right: f32,
        baseline: f32,
    },
    /// A link to a section's heading over `[x, y, w, h]`.
    Link { rect: [f32; 4], section: usize },
}

/// What a piece of the logical structure is (the tag tree of the tagged PDF).
#[derive(Clone, Debug, PartialEq)]
enum Role {
    /// A section of the body.
    Sect,
    /// A heading of level 1 (the cover's title), 2 (a section) or 3 (a sub-heading).
    Heading(u16, String),
    /// A paragraph.
    P,
    /// Literal text.
    Code,
    /// A table, its rows and cells.
    Table,
    Row,
    /// A header cell: of its column, or of its row (a key-value label).
    HeaderCell {
        of_row: bool,
    },
    Cell,
    Caption,
    /// A chart, with its description in words.
    Figure(String),
    /// The table of contents, an item of it, and the link that item is.
    Toc,
    TocItem,
    Link,
}

#[derive(Clone, Debug)]
struct StructNode {
    role: Role,
    parent: Option<usize>,
}

struct Layout<'f> {
    fonts: &'f Fonts,
    /// Each item with the structure node it belongs to (`None`: an artifact: rules, fills,
    /// repeated table headers).
    pages: Vec<Vec<(Item, Option<usize>)>>,
    /// The logical structure, parents before children, in reading order.
    nodes: Vec<StructNode>,
    /// The node the items placed now belong to.
    current: Option<usize>,
    y: f32,
    /// Nothing has been placed on the current page yet.
    fresh: bool,
    /// Page (index into `pages`) and y of every section heading, in order.
    anchors: Vec<(usize, f32)>,
    /// The section the blocks placed now belong to.
    parent: Option<usize>,
    /// The table being placed, its header cells, and whether its header was placed once (a
    /// header repeated on a later page is an artifact).
    table: Option<usize>,
    header_cells: Vec<usize>,
    header_placed: bool,
}

impl<'f> Layout<'f> {
    fn new(fonts: &'f Fonts) -> Self {
        Self {
            fonts,
            pages: vec![Vec::new()],
            nodes: Vec::new(),
            current: None,
            y: BODY_TOP,
            fresh: true,
            anchors: Vec::new(),
            parent: None,
            table: None,
            header_cells: Vec::new(),
            header_placed: false,
        }
    }

    /// A new node of the logical structure; returns its index.
    fn open(&mut self, role: Role, parent: Option<usize>) -> usize {
        self.nodes.push(StructNode { role, parent });
        self.nodes.len() - 1
    }

    /// A new leaf node (what is placed next belongs to it).
    fn enter(&mut self, role: Role, parent: Option<usize>) -> usize {
        let n = self.open(role, parent);
        self.current = Some(n);
        n
    }

    fn new_page(&mut self) {
        self.pages.push(Vec::new());
        self.y = BODY_TOP;
        self.fresh = true;
    }

    fn room(&self) -> f32 {
        BODY_BOTTOM - self.y
    }

    /// Starts a new page unless `h` fits on this one (or this one is still empty).
    fn need(&mut self, h: f32) {
        if !self.fresh && h > self.room() + 0.01 {
            self.new_page();
        }
    }

    /// Vertical space, dropped at the top of a page.
    fn gap(&mut self, h: f32) {
        if !self.fresh {
            self.y += h;
        }
    }

    fn page_index(&self) -> usize {
        self.pages.len().saturating_sub(1)
    }

    fn push(&mut self, item: Item) {
        self.fresh = false;
        let node = self.current;
        if let Some(page) = self.pages.last_mut() {
            page.push((item, node));
        }
    }

    /// A line whose box starts at `top` and is `lh` high: caps are centred in the box.
    fn text(&mut self, x: f32, top: f32, lh: f32, line: TextLine, color: Rgb) {
        if line.glyphs.is_empty() {
            return;
        }
        let baseline = top + lh / 2.0 + 0.36 * line.size;
        self.push(Item::Text {
            x,
            baseline,
            color,
            line,
        });
    }

    fn rule(&mut self, x0: f32, x1: f32, y: f32, width: f32, color: Rgb) {
        self.push(Item::Polyline {
            points: vec![(x0, y), (x1, y)],
            width,
            color,
            dotted: false,
        });
    }

    fn rect(&mut self, x: f32, y: f32, w: f32, h: f32, fill: Option<Rgb>, stroke: Option<Rgb>) {
        self.push(Item::Rect {
            x,
            y,
            w,
            h,
            fill,
            stroke,
        });
    }

    /// Places lines one under the other, breaking pages between lines.
    fn flow(&mut self, lines: Vec<TextLine>, x: f32, lh: f32, color: Rgb) {
        for line in lines {
            self.need(lh);
            self.text(x, self.y, lh, line, color);
            self.y += lh;
            self.fresh = false;
        }
    }

    // --- cover and table of contents -----------------------------------------------------

    fn cover(&mut self, doc: &Document) {
        let fonts = self.fonts;
        self.rect(0.0, 0.0, PAGE_W, 10.0, Some(ACCENT), None);
        self.y = 210.0;
        self.enter(Role::Heading(1, label(&doc.title, "Report")), None);
        let title = fonts.wrap(FontId::Bold, 26.0, &doc.title, TEXT_W, Wrap::Words);
        self.flow(title, MARGIN_X, 33.0, ACCENT);
        self.y += 8.0;
        self.enter(Role::P, None);
        let subtitle = fonts.wrap(FontId::Regular, 14.0, &doc.subtitle, TEXT_W, Wrap::Words);
        self.flow(subtitle, MARGIN_X, 19.0, MUTED);
        self.y += 18.0;
        self.need(4.0);
        self.rule(MARGIN_X, RIGHT, self.y, 1.5, ACCENT);
        self.y += 22.0;
        self.key_values(&doc.cover, 10.5, 16.0);
        self.y += 12.0;
        self.need(4.0);
        self.rule(MARGIN_X, RIGHT, self.y, 0.5, RULE);
        // Below the body area, so it never collides with the cover's content.
        self.enter(Role::P, None);
        let imprint = fonts.line(FontId::Regular, CHROME_SIZE, "Produced by Blackbox");
        self.text(MARGIN_X, PAGE_H - 66.0, 12.0, imprint, MUTED);
    }

    fn contents(&mut self, sections: &[Section]) {
        let fonts = self.fonts;
        self.enter(Role::Heading(2, "Contents".into()), None);
        let title = fonts.line(FontId::Bold, 18.0, "Contents");
        self.text(MARGIN_X, self.y, 24.0, title, ACCENT);
        self.y += 28.0;
        self.rule(MARGIN_X, RIGHT, self.y, 0.75, RULE);
        self.y += 14.0;
        if sections.is_empty() {
            self.enter(Role::P, None);
            let none = fonts.line(FontId::Regular, BODY_SIZE, "This report has no sections.");
            self.text(MARGIN_X, self.y, BODY_LH, none, MUTED);
            return;
        }
        const SIZE: f32 = 10.5;
        const LH: f32 = 15.0;
        const PAGE_COL: f32 = 40.0;
        let number_w = fonts
            .line(FontId::Regular, SIZE, &format!("{}.", sections.len()))
            .width
            + 10.0;
        let title_x = MARGIN_X + number_w;
        let title_w = TEXT_W - number_w - PAGE_COL;
        let toc = self.open(Role::Toc, None);
        for (index, section) in sections.iter().enumerate() {
            let item = self.open(Role::TocItem, Some(toc));
            self.enter(Role::Link, Some(item));
            let lines = fonts.wrap(FontId::Regular, SIZE, &section.title, title_w, Wrap::Words);
            let untitled = lines.is_empty();
            let count = lines.len().max(1);
            let h = count as f32 * LH;
            self.need(h.min(BODY_H));
            let top = self.y;
            let number = fonts.line(FontId::Regular, SIZE, &format!("{}.", index + 1));
            self.text(MARGIN_X, top, LH, number, INK);
            let mut last_end = title_x;
            for line in lines {
                self.need(LH);
                last_end = title_x + line.width;
                self.text(title_x, self.y, LH, line, INK);
                self.y += LH;
            }
            if untitled {
                self.y += LH;
            }
            let baseline = self.y - LH / 2.0 + 0.36 * SIZE;
            let (from, to) = (last_end + 6.0, RIGHT - PAGE_COL + 8.0);
            if to > from {
                self.push(Item::Polyline {
                    points: vec![(from, baseline), (to, baseline)],
                    width: 0.9,
                    color: RULE,
                    dotted: true,
                });
            }
            self.push(Item::PageRef {
                section: index,
                right: RIGHT,
                baseline,
            });
            let link_top = if self.y - top > 0.0 { top } else { self.y - LH };
            self.push(Item::Link {
                rect: [MARGIN_X, link_top, TEXT_W, self.y - link_top],
                section: index,
            });
            self.y += 5.0;
        }
    }

    // --- sections and blocks -----------------------------------------------------------

    fn section(&mut self, number: usize, section: &Section) {
        let fonts = self.fonts;
        self.gap(16.0);
        let heading = format!("{number}. {}", section.title);
        let lines = fonts.wrap(FontId::Bold, H1_SIZE, &heading, TEXT_W, Wrap::Words);
        // Keep the heading with the start of its content.
        self.need(lines.len() as f32 * H1_LH + 60.0);
        let sect = self.open(Role::Sect, None);
        self.parent = Some(sect);
        self.enter(Role::Heading(2, label(&heading, "Section")), Some(sect));
        self.anchors.push((self.page_index(), self.y));
        self.flow(lines, MARGIN_X, H1_LH, ACCENT);
        self.y += 3.0;
        self.rule(MARGIN_X, RIGHT, self.y, 0.75, RULE);
        self.y += 6.0;
        for block in &section.blocks {
            self.block(block);
        }
    }

    fn block(&mut self, block: &Block) {
        let fonts = self.fonts;
        self.gap(BLOCK_GAP);
        match block {
            Block::Paragraph(text) => {
                self.enter(Role::P, self.parent);
                let lines = fonts.wrap(FontId::Regular, BODY_SIZE, text, TEXT_W, Wrap::Words);
                if lines.len() >= 2 {
                    self.need(2.0 * BODY_LH);
                }
                self.flow(lines, MARGIN_X, BODY_LH, INK);
            }
            Block::Subheading(text) => {
                self.gap(4.0);
                self.enter(Role::Heading(3, label(text, "Subheading")), self.parent);
                let lines = fonts.wrap(FontId::Bold, H2_SIZE, text, TEXT_W, Wrap::Words);
                self.need(lines.len() as f32 * H2_LH + 40.0);
                self.flow(lines, MARGIN_X, H2_LH, ACCENT);
            }
            Block::KeyValues(pairs) => self.key_values(pairs, BODY_SIZE, BODY_LH),
            Block::Table {
                columns,
                rows,
                caption,
            } => self.table(columns, rows, caption.as_deref()),
            Block::Chart {
                title,
                days,
                series,
            } => {
                let alt = label(&chart_description(title, days, series), "A chart");
                self.enter(Role::Figure(alt), self.parent);
                self.chart(title, days, series);
            }
            Block::Code(text) => {
                self.enter(Role::Code, self.parent);
                self.code(text);
            }
        }
    }

    fn key_values(&mut self, pairs: &[(String, String)], size: f32, lh: f32) {
        let fonts = self.fonts;
        let label_w = pairs
            .iter()
            .map(|(label, _)| fonts.extents(FontId::Bold, size, label).0)
            .fold(0.0f32, f32::max)
            .min(0.38 * TEXT_W)
            + 0.5;
        let value_x = MARGIN_X + label_w + 14.0;
        let value_w = RIGHT - value_x;
        let table = self.open(Role::Table, self.parent);
        for (label, value) in pairs {
            let row = self.open(Role::Row, Some(table));
            let label_cell = self.open(Role::HeaderCell { of_row: true }, Some(row));
            let value_cell = self.open(Role::Cell, Some(row));
            let labels = fonts.wrap(FontId::Bold, size, label, label_w, Wrap::Words);
            let values = fonts.wrap(FontId::Regular, size, value, value_w, Wrap::Words);
            let count = labels.len().max(values.len()).max(1);
            let h = count as f32 * lh;
            if h <= BODY_H {
                self.need(h);
            }
            let mut labels = labels.into_iter();
            let mut values = values.into_iter();
            for _ in 0..count {
                self.need(lh);
                if let Some(line) = labels.next() {
                    self.current = Some(label_cell);
                    self.text(MARGIN_X, self.y, lh, line, MUTED);
                }
                if let Some(line) = values.next() {
                    self.current = Some(value_cell);
                    self.text(value_x, self.y, lh, line, INK);
                }
                self.y += lh;
                self.fresh = false;
            }
            self.y += 1.5;
        }
    }

    fn code(&mut self, text: &str) {
        let fonts = self.fonts;
        let lines = fonts.wrap(
            FontId::Mono,
            CODE_SIZE,
            text,
            TEXT_W - 2.0 * CODE_PAD,
            Wrap::Chars,
        );
        let total = lines.len();
        let mut lines = lines.into_iter();
        let mut done = 0;
        while done < total {
            let left = total - done;
            let fits = |room: f32| ((room - 2.0 * CODE_PAD) / CODE_LH).floor().max(0.0) as usize;
            if fits(self.room()) < left.min(2) {
                self.new_page();
            }
            let take = fits(self.room()).max(1).min(left);
            let h = take as f32 * CODE_LH + 2.0 * CODE_PAD;
            let top = self.y;
            self.rect(MARGIN_X, top, TEXT_W, h, Some(CODE_FILL), Some(CODE_BORDER));
            for (k, line) in lines.by_ref().take(take).enumerate() {
                let line_top = top + CODE_PAD + k as f32 * CODE_LH;
                self.text(MARGIN_X + CODE_PAD, line_top, CODE_LH, line, INK);
            }
            self.y = top + h;
            done += take;
            if done < total {
                self.new_page();
            }
        }
    }

    // --- tables --------------------------------------------------------------------------

    fn table(&mut self, columns: &[String], rows: &[Vec<String>], caption: Option<&str>) {
        let fonts = self.fonts;
        self.table = None;
        let count = rows
            .iter()
            .map(Vec::len)
            .max()
            .unwrap_or(0)
            .max(columns.len());
        if count > 0 {
            let (widths, numeric) = self.column_widths(columns, rows, count);
            let header: Vec<Vec<TextLine>> = widths
                .iter()
                .enumerate()
                .map(|(c, w)| {
                    let title = columns.get(c).map_or("", String::as_str);
                    let mut lines = fonts.wrap(
                        FontId::Bold,
                        TABLE_SIZE,
                        title,
                        w - 2.0 * CELL_PAD_X,
                        Wrap::Words,
                    );
                    lines.truncate(HEADER_MAX_LINES);
                    lines
                })
                .collect();
            let header_h = row_height(&header);
            let grid = TableGrid {
                widths: &widths,
                numeric: &numeric,
                header: &header,
                header_h,
            };
            let wrap_row = |row: &Vec<String>| -> Vec<Vec<TextLine>> {
                widths
                    .iter()
                    .enumerate()
                    .map(|(c, w)| {
                        let text = row.get(c).map_or("", String::as_str);
                        let inner = w - 2.0 * CELL_PAD_X;
                        fonts.wrap(FontId::Regular, TABLE_SIZE, text, inner, Wrap::Words)
                    })
                    .collect()
            };
            // The header row never ends a page alone: it stays with the first row, or with
            // the first lines of a row too tall for any page.
            let first_h = rows.first().map_or(TABLE_LH + 2.0 * CELL_PAD_Y, |row| {
                row_height(&wrap_row(row))
            });
            let keep = if first_h <= BODY_H - header_h {
                first_h
            } else {
                3.0 * TABLE_LH + 2.0 * CELL_PAD_Y
            };
            self.need(header_h + keep);
            let table = self.open(Role::Table, self.parent);
            let header_row = self.open(Role::Row, Some(table));
            self.header_cells = (0..count)
                .map(|_| self.open(Role::HeaderCell { of_row: false }, Some(header_row)))
                .collect();
            self.header_placed = false;
            self.table = Some(table);
            self.table_header(&grid);
            if rows.is_empty() {
                self.enter(Role::P, self.parent);
                let none = fonts.line(FontId::Regular, TABLE_SIZE, "No rows.");
                let y = self.y + CELL_PAD_Y;
                self.text(MARGIN_X + CELL_PAD_X, y, TABLE_LH, none, MUTED);
                self.y += TABLE_LH + 2.0 * CELL_PAD_Y;
            }
            for (r, row) in rows.iter().enumerate() {
                self.table_row(&grid, wrap_row(row), r % 2 == 1);
            }
            self.rule(MARGIN_X, RIGHT, self.y, 0.75, RULE);
        }
        if let Some(caption) = caption {
            self.y += 4.0;
            match self.table.take() {
                Some(table) => self.enter(Role::Caption, Some(table)),
                None => self.enter(Role::P, self.parent),
            };
            let lines = fonts.wrap(FontId::Regular, CAPTION_SIZE, caption, TEXT_W, Wrap::Words);
            self.flow(lines, MARGIN_X, CAPTION_LH, MUTED);
        }
    }

    /// Column widths summing to the text width: each at least its widest word (within
    /// limits), the rest shared in proportion to what each column needs to avoid wrapping.
    fn column_widths(
        &self,
        columns: &[String],
        rows: &[Vec<String>],
        count: usize,
    ) -> (Vec<f32>, Vec<bool>) {
        let fonts = self.fonts;
        let mut natural = vec![0.0f32; count];
        let mut minimum = vec![0.0f32; count];
        let mut numeric = vec![true; count];
        let mut filled = vec![false; count];
        // Every cell is a single word (identifiers, timestamps, hashes): breaking one hurts.
        let mut atomic = vec![true; count];
        for (c, title) in columns.iter().enumerate().take(count) {
            let (line, word) = fonts.extents(FontId::Bold, TABLE_SIZE, title);
            natural[c] = line;
            minimum[c] = word;
        }
        for row in rows {
            for (c, cell) in row.iter().enumerate().take(count) {
                if cell.is_empty() {
                    continue;
                }
                let (line, word) = fonts.extents(FontId::Regular, TABLE_SIZE, cell);
                natural[c] = natural[c].max(line);
                minimum[c] = minimum[c].max(word);
                filled[c] = true;
                numeric[c] = numeric[c] && is_number(cell);
                atomic[c] = atomic[c] && line <= word + 0.01;
            }
        }
        let pad = 2.0 * CELL_PAD_X;
        let floor = (TEXT_W / count as f32).min(28.0);
        // What a column of identifiers needs to keep each whole (a UUID, a SHA-256).
        let whole: Vec<f32> = (0..count)
            .map(|c| (minimum[c] + pad).min(0.75 * TEXT_W))
            .collect();
        for c in 0..count {
            // A column of identifiers keeps each whole up to 40% of the width, and more below
            // when the other columns leave room; a word of prose gives way at a quarter.
            let cap = if atomic[c] && filled[c] { 0.4 } else { 0.25 };
            minimum[c] = (minimum[c].min(cap * TEXT_W) + pad).max(floor);
            numeric[c] = numeric[c] && filled[c];
        }
        let mut spare = TEXT_W - minimum.iter().sum::<f32>();
        for c in 0..count {
            if atomic[c] && filled[c] && whole[c] > minimum[c] && spare > 0.0 {
                let grow = (whole[c] - minimum[c]).min(spare);
                minimum[c] += grow;
                spare -= grow;
            }
        }
        for c in 0..count {
            natural[c] = (natural[c].min(0.6 * TEXT_W) + pad).max(minimum[c]);
        }
        let min_sum: f32 = minimum.iter().sum();
        let natural_sum: f32 = natural.iter().sum();
        let widths = if min_sum >= TEXT_W {
            // Too narrow for every word: the widest columns of prose give way first (their
            // words break), down to a common cap; failing that, the widest of all columns.
            let atomic_sum: f32 = minimum
                .iter()
                .zip(&atomic)
                .filter(|(_, a)| **a)
                .map(|(m, _)| m)
                .sum();
            let prose: Vec<f32> = minimum
                .iter()
                .zip(&atomic)
                .filter(|(_, a)| !**a)
                .map(|(m, _)| *m)
                .collect();
            let prose_cap = water_level(&prose, TEXT_W - atomic_sum);
            if !prose.is_empty() && prose_cap >= 48.0 {
                minimum
                    .iter()
                    .zip(&atomic)
                    .map(|(m, a)| if *a { *m } else { m.min(prose_cap) })
                    .collect()
            } else {
                let cap = water_level(&minimum, TEXT_W);
                minimum.iter().map(|m| m.min(cap)).collect()
            }
        } else if natural_sum <= TEXT_W {
            // Everything fits on one line: share out the spare width.
            natural.iter().map(|n| n * TEXT_W / natural_sum).collect()
        } else {
            let spare = TEXT_W - min_sum;
            let wanted = natural_sum - min_sum;
            minimum
                .iter()
                .zip(&natural)
                .map(|(m, n)| m + (n - m) * spare / wanted)
                .collect()
        };
        (widths, numeric)
    }

    fn table_header(&mut self, grid: &TableGrid<'_>) {
        let top = self.y;
        self.rect(
            MARGIN_X,
            top,
            TEXT_W,
            grid.header_h,
            Some(HEADER_FILL),
            None,
        );
        let mut x = MARGIN_X;
        let repeated = std::mem::replace(&mut self.header_placed, true);
        for (c, ((lines, w), numeric)) in grid
            .header
            .iter()
            .zip(grid.widths)
            .zip(grid.numeric)
            .enumerate()
        {
            // A header repeated on a later page is pagination, not content.
            self.current = if repeated {
                None
            } else {
                self.header_cells.get(c).copied()
            };
            for (k, line) in lines.iter().enumerate() {
                let line_top = top + CELL_PAD_Y + k as f32 * TABLE_LH;
                let lx = cell_x(x, *w, line.width, *numeric);
                self.text(lx, line_top, TABLE_LH, line.clone(), INK);
            }
            x += w;
        }
        self.y = top + grid.header_h;
        self.rule(MARGIN_X, RIGHT, self.y, 0.75, ACCENT);
    }

    /// One row; a row taller than what is left moves to the next page (under a repeated
    /// header), or, taller than a page, is split between lines.
    fn table_row(&mut self, grid: &TableGrid<'_>, cells: Vec<Vec<TextLine>>, shaded: bool) {
        let count = cells.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let h = row_height(&cells);
        if h > self.room() && h <= BODY_H - grid.header_h {
            self.new_page();
            self.table_header(grid);
        }
        let row = self.open(Role::Row, self.table);
        let cell_nodes: Vec<usize> = (0..cells.len())
            .map(|_| self.open(Role::Cell, Some(row)))
            .collect();
        let mut cells: Vec<std::vec::IntoIter<TextLine>> =
            cells.into_iter().map(Vec::into_iter).collect();
        let mut done = 0;
        while done < count {
            let mut fits = ((self.room() - 2.0 * CELL_PAD_Y) / TABLE_LH)
                .floor()
                .max(0.0) as usize;
            if fits == 0 {
                self.new_page();
                self.table_header(grid);
                fits = ((self.room() - 2.0 * CELL_PAD_Y) / TABLE_LH)
                    .floor()
                    .max(1.0) as usize;
            }
            let take = fits.min(count - done);
            let chunk_h = take as f32 * TABLE_LH + 2.0 * CELL_PAD_Y;
            let top = self.y;
            if shaded {
                self.rect(MARGIN_X, top, TEXT_W, chunk_h, Some(ZEBRA), None);
            }
            let mut x = MARGIN_X;
            for (c, ((lines, w), numeric)) in cells
                .iter_mut()
                .zip(grid.widths)
                .zip(grid.numeric)
                .enumerate()
            {
                self.current = cell_nodes.get(c).copied();
                for (k, line) in lines.by_ref().take(take).enumerate() {
                    let line_top = top + CELL_PAD_Y + k as f32 * TABLE_LH;
                    let lx = cell_x(x, *w, line.width, *numeric);
                    self.text(lx, line_top, TABLE_LH, line, INK);
                }
                x += w;
            }
            self.y = top + chunk_h;
            self.fresh = false;
            self.rule(MARGIN_X, RIGHT, self.y, 0.4, HAIRLINE);
            done += take;
            if done < count {
                self.new_page();
                self.table_header(grid);
            }
        }
    }

    // --- charts --------------------------------------------------------------------------

    fn chart(&mut self, title: &str, days: &[String], series: &[(String, Vec<u64>)]) {
        let fonts = self.fonts;
        let n = days.len();
        let title_lines = fonts.wrap(FontId::Bold, 10.0, title, TEXT_W, Wrap::Words);
        let title_h = title_lines.len() as f32 * 14.0;

        // Legend entries flow left to right, wrapping.
        let mut legend = Vec::new();
        let (mut lx, mut rows) = (MARGIN_X, 0usize);
        for (index, (name, _)) in series.iter().enumerate() {
            let label = fonts.fit(FontId::Regular, 8.0, name, TEXT_W - 20.0);
            let w = 16.0 + label.width;
            if lx > MARGIN_X && lx + w > RIGHT {
                lx = MARGIN_X;
                rows += 1;
            }
            legend.push((lx, rows, index, label));
            lx += w + 14.0;
        }
        let legend_h = if legend.is_empty() {
            0.0
        } else {
            (rows + 1) as f32 * 12.0 + 4.0
        };

        let max = series
            .iter()
            .flat_map(|(_, values)| values.iter().take(n))
            .copied()
            .max()
            .unwrap_or(0);
        let (step, top_value) = nice_scale(max);
        let ticks: Vec<(u128, TextLine)> = (0..=top_value / step)
            .map(|k| {
                let value = k * step;
                let label = group_digits(value);
                (value, fonts.line(FontId::Regular, CHART_LABEL_SIZE, &label))
            })
            .collect();
        let label_w = ticks.iter().map(|(_, l)| l.width).fold(0.0f32, f32::max);
        let x0 = MARGIN_X + label_w + 6.0;
        let plot_w = RIGHT - x0;

        self.need(title_h + legend_h + CHART_PLOT_H + 34.0);
        self.flow(title_lines, MARGIN_X, 14.0, INK);
        let mut row_drawn = None;
        for (x, row, index, label) in legend {
            if row_drawn != Some(row) {
                if row_drawn.is_some() {
                    self.y += 12.0;
                }
                self.need(16.0);
                row_drawn = Some(row);
            }
            let color = SERIES[index % SERIES.len()];
            let top = self.y + 2.0;
            if index == 0 {
                self.rect(x, top + 2.0, 8.0, 8.0, Some(color), None);
            } else {
                self.push(Item::Polyline {
                    points: vec![(x - 1.0, top + 6.0), (x + 10.0, top + 6.0)],
                    width: 1.6,
                    color,
                    dotted: false,
                });
            }
            self.text(x + 14.0, top, 12.0, label, INK);
        }
        if row_drawn.is_some() {
            self.y += 16.0;
        }
        self.y += 6.0;
        // Only a pathological title or legend pushes the plot to a page of its own.
        self.need(CHART_PLOT_H + 26.0);

        let plot_top = self.y;
        let plot_bottom = plot_top + CHART_PLOT_H;
        let y_of = |value: u128| -> f32 {
            let share = value as f64 / top_value as f64;
            plot_bottom - (share as f32) * CHART_PLOT_H
        };
        for (value, label) in ticks {
            let y = y_of(value);
            if value > 0 {
                self.rule(x0, RIGHT, y, 0.4, GRID);
            }
            let x = x0 - 5.0 - label.width;
            self.push(Item::Text {
                x,
                baseline: y + 0.36 * CHART_LABEL_SIZE,
                color: MUTED,
                line: label,
            });
        }

        if n == 0 || series.is_empty() {
            let none = fonts.line(FontId::Regular, BODY_SIZE, "No data for this period.");
            let x = x0 + (plot_w - none.width) / 2.0;
            self.text(x, plot_top + CHART_PLOT_H / 2.0 - 7.0, 14.0, none, MUTED);
        } else {
            let slot = plot_w / n as f32;
            let center = |i: usize| x0 + (i as f32 + 0.5) * slot;
            for (index, (_, values)) in series.iter().enumerate() {
                let color = SERIES[index % SERIES.len()];
                if index == 0 {
                    // Dense charts get touching bars (slightly overlapping, so that no
                    // hairline seams show between them), sparse ones separated bars.
                    let bar_w = if slot < 3.0 {
                        slot + 0.1
                    } else {
                        (slot * 0.72).min(28.0)
                    };
                    let rects = values
                        .iter()
                        .take(n)
                        .enumerate()
                        .filter(|(_, v)| **v > 0)
                        .map(|(i, v)| {
                            let y = y_of(u128::from(*v));
                            [center(i) - bar_w / 2.0, y, bar_w, plot_bottom - y]
                        })
                        .collect();
                    self.push(Item::Bars { rects, color });
                } else {
                    let points: Vec<(f32, f32)> = values
                        .iter()
                        .take(n)
                        .enumerate()
                        .map(|(i, v)| (center(i), y_of(u128::from(*v))))
                        .collect();
                    if let [(x, y)] = points.as_slice() {
                        self.rect(x - 2.0, y - 2.0, 4.0, 4.0, Some(color), None);
                    } else if points.len() > 1 {
                        self.push(Item::Polyline {
                            points,
                            width: 1.3,
                            color,
                            dotted: false,
                        });
                    }
                }
            }
            let widest = days
                .iter()
                .map(|d| fonts.line(FontId::Regular, CHART_LABEL_SIZE, d).width)
                .fold(0.0f32, f32::max);
            for i in date_ticks(days, widest + 10.0, slot) {
                let Some(day) = days.get(i) else { continue };
                let label = fonts.line(FontId::Regular, CHART_LABEL_SIZE, day);
                let cx = center(i);
                let x = (cx - label.width / 2.0)
                    .min(RIGHT - label.width)
                    .max(MARGIN_X);
                self.push(Item::Polyline {
                    points: vec![(cx, plot_bottom), (cx, plot_bottom + 3.0)],
                    width: 0.6,
                    color: MUTED,
                    dotted: false,
                });
                self.push(Item::Text {
                    x,
                    baseline: plot_bottom + 12.0,
                    color: MUTED,
                    line: label,
                });
            }
        }
        self.rule(x0, RIGHT, plot_bottom, 0.8, MUTED);
        self.y = plot_bottom + 20.0;
    }
}

/// The cap `c` with `sum(min(w, c)) == total` (given `sum(w) >= total`).
fn water_level(widths: &[f32], total: f32) -> f32 {
    let mut sorted = widths.to_vec();
    sorted.sort_by(f32::total_cmp);
    let mut left = total;
    let mut count = sorted.len();
    for w in sorted {
        if w * count as f32 > left {
            break;
        }
        left -= w;
        count -= 1;
    }
    if count == 0 {
        total
    } else {
        left / count as f32
    }
}

struct TableGrid<'a> {
    widths: &'a [f32],
    numeric: &'a [bool],
    header: &'a [Vec<TextLine>],
    header_h: f32,
}

fn row_height(cells: &[Vec<TextLine>]) -> f32 {
    let lines = cells.iter().map(Vec::len).max().unwrap_or(0).max(1);
    lines as f32 * TABLE_LH + 2.0 * CELL_PAD_Y
}

/// Left edge of a line in a cell: numbers are right-aligned.
fn cell_x(x: f32, w: f32, line_w: f32, right: bool) -> f32 {
    if right {
        (x + w - CELL_PAD_X - line_w).max(x + CELL_PAD_X)
    } else {
        x + CELL_PAD_X
    }
}

/// A count, amount or percentage: `1,234`, `-5`, `12.5 %`.
fn is_number(text: &str) -> bool {
    let text = text.trim();
    let text = text.strip_suffix('%').unwrap_or(text).trim_end();
    let text = text.strip_prefix(['-', '+', '−']).unwrap_or(text);
    text.len() <= 32
        && text.starts_with(|c: char| c.is_ascii_digit())
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ',' | '.' | '\u{2009}' | '\u{202f}'))
}

/// The axis step and top: 1, 2 or 5 × 10^k, at most five steps up to the top.
fn nice_scale(max: u64) -> (u128, u128) {
    let max = u128::from(max);
    if max == 0 {
        return (1, 1);
    }
    let mut magnitude: u128 = 1;
    for _ in 0..21 {
        for m in [1, 2, 5] {
            let step = m * magnitude;
            let steps = max.div_ceil(step);
            if steps <= 5 {
                return (step, steps * step);
            }
        }
        magnitude *= 10;
    }
    (max, max)
}

/// `1234567` as `1,234,567`.
fn group_digits(value: u128) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Which days get a date label under the chart, `need` points apart at least: every day if
/// they fit, else first days of months (every k-th month), else every k-th day.
fn date_ticks(days: &[String], need: f32, slot: f32) -> Vec<usize> {
    let n = days.len();
    if n == 0 || slot <= 0.0 {
        return Vec::new();
    }
    if slot >= need {
        return (0..n).collect();
    }
    let months: Vec<usize> = days
        .iter()
        .enumerate()
        .filter(|(_, day)| is_iso_date(day) && day.ends_with("-01"))
        .map(|(i, _)| i)
        .collect();
    if n > 45 && months.len() >= 2 {
        for k in 1..=months.len() {
            let picked: Vec<usize> = months.iter().step_by(k).copied().collect();
            if picked.windows(2).all(|w| match w {
                [a, b] => (b - a) as f32 * slot >= need,
                _ => true,
            }) {
                return picked;
            }
        }
    }
    let least = (need / slot).ceil().max(1.0) as usize;
    let step = [
        1, 2, 3, 5, 7, 10, 14, 15, 20, 25, 30, 50, 60, 90, 100, 120, 180, 200, 250, 365,
    ]
    .into_iter()
    .find(|&s| s >= least)
    .unwrap_or(least)
    .max(1);
    (0..n).step_by(step).collect()
}

fn is_iso_date(day: &str) -> bool {
    let b = day.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

// ---------------------------------------------------------------------------------------------
// Drawing the display list with krilla.

struct Painter<'a, 'p> {
    surface: Surface<'p>,
    fonts: &'a Fonts,
}

impl Painter<'_, '_> {
    /// Draws `item` as content of the structure node of `role` (text as a span; the
    /// graphics of a chart as part of its figure) or, without one, as an artifact. Returns the
    /// identifier of tagged content.
    fn draw(
        &mut self,
        item: &Item,
        role: Option<&Role>,
        anchors: &[(usize, f32)],
    ) -> Option<Identifier> {
        if matches!(item, Item::Link { .. }) {
            return None;
        }
        let is_text = matches!(item, Item::Text { .. } | Item::PageRef { .. });
        let tag = match role {
            Some(_) if is_text => Some(ContentTag::Span(SpanTag::empty())),
            Some(Role::Figure(_)) => Some(ContentTag::Other),
            _ => None,
        };
        let id = match tag {
            Some(t) => Some(self.surface.start_tagged(t)),
            None => {
                self.surface
                    .start_tagged(ContentTag::Artifact(Artifact::with_kind(
                        ArtifactType::Layout,
                    )));
                None
            }
        };
        self.paint(item, anchors);
        self.surface.end_tagged();
        id
    }

    fn paint(&mut self, item: &Item, anchors: &[(usize, f32)]) {
        match item {
            Item::Text {
                x,
                baseline,
                color,
                line,
            } => self.text(*x, *baseline, *color, line),
            Item::Rect {
                x,
                y,
                w,
                h,
                fill,
                stroke,
            } => {
                let mut path = PathBuilder::new();
                rect_path(&mut path, *x, *y, *w, *h);
                let Some(path) = path.finish() else { return };
                self.surface.set_fill(fill.map(Rgb::fill));
                self.surface
                    .set_stroke(stroke.map(|color| stroke_of(color, 0.5, false)));
                self.surface.draw_path(&path);
            }
            Item::Bars { rects, color } => {
                let mut path = PathBuilder::new();
                for [x, y, w, h] in rects {
                    rect_path(&mut path, *x, *y, *w, *h);
                }
                let Some(path) = path.finish() else { return };
                self.surface.set_fill(Some(color.fill()));
                self.surface.set_stroke(None);
                self.surface.draw_path(&path);
            }
            Item::Polyline {
                points,
                width,
                color,
                dotted,
            } => {
                if *width <= 0.0 {
                    return;
                }
                let mut path = PathBuilder::new();
                let mut points = points.iter();
                let Some((x, y)) = points.next() else { return };
                path.move_to(*x, *y);
                for (x, y) in points {
                    path.line_to(*x, *y);
                }
                let Some(path) = path.finish() else { return };
                self.surface.set_fill(None);
                self.surface
                    .set_stroke(Some(stroke_of(*color, *width, *dotted)));
                self.surface.draw_path(&path);
            }
            Item::PageRef {
                section,
                right,
                baseline,
            } => {
                let Some((page, _)) = anchors.get(*section) else {
                    return;
                };
                let line = self
                    .fonts
                    .line(FontId::Regular, 10.5, &(page + 1).to_string());
                self.text(right - line.width, *baseline, INK, &line);
            }
            Item::Link { .. } => {}
        }
    }

    fn text(&mut self, x: f32, baseline: f32, color: Rgb, line: &TextLine) {
        if line.glyphs.is_empty() {
            return;
        }
        self.surface.set_fill(Some(color.fill()));
        self.surface.set_stroke(None);
        self.surface.draw_glyphs(
            Point::from_xy(x, baseline),
            &line.glyphs,
            self.fonts.face(line.font).pdf.clone(),
            &line.text,
            line.size,
            false,
        );
    }

    /// Running header and footer.
    fn chrome(&mut self, header: &TextLine, title: &TextLine, page: usize, total: usize) {
        let artifact = |kind| ContentTag::Artifact(Artifact::with_kind(kind));
        self.surface.start_tagged(artifact(ArtifactType::Header));
        self.text(MARGIN_X, HEADER_BASELINE, MUTED, header);
        self.surface.end_tagged();
        let number = self.fonts.line(
            FontId::Regular,
            CHROME_SIZE,
            &format!("Page {page} of {total}"),
        );
        self.surface.start_tagged(artifact(ArtifactType::Footer));
        self.text(MARGIN_X, FOOTER_BASELINE, MUTED, title);
        self.text(RIGHT - number.width, FOOTER_BASELINE, MUTED, &number);
        self.surface.end_tagged();
        self.surface.start_tagged(artifact(ArtifactType::Layout));
        for y in [HEADER_RULE, FOOTER_RULE] {
            let mut path = PathBuilder::new();
            path.move_to(MARGIN_X, y);
            path.line_to(RIGHT, y);
            if let Some(path) = path.finish() {
                self.surface.set_fill(None);
                self.surface.set_stroke(Some(stroke_of(RULE, 0.5, false)));
                self.surface.draw_path(&path);
            }
        }
        self.surface.end_tagged();
    }
}

/// A chart in words, for the tagged PDF's figure (what a screen reader says instead).
fn chart_description(title: &str, days: &[String], series: &[(String, Vec<u64>)]) -> String {
    let (Some(first), Some(last)) = (days.first(), days.last()) else {
        return format!("{}: no data.", one_line(title));
    };
    let mut out = format!(
        "{}: one value per day from {first} to {last} ({} days).",
        one_line(title),
        days.len()
    );
    for (name, values) in series {
        let total = values.iter().fold(0u64, |a, v| a.saturating_add(*v));
        let peak = values
            .iter()
            .enumerate()
            .max_by_key(|(i, v)| (**v, std::cmp::Reverse(*i)));
        match peak {
            Some((i, v)) if *v > 0 => out.push_str(&format!(
                " {}: {total} in all, at most {v} on {}.",
                one_line(name),
                days.get(i).map_or("", String::as_str)
            )),
            _ => out.push_str(&format!(" {}: none.", one_line(name))),
        }
    }
    out
}

fn rect_path(path: &mut PathBuilder, x: f32, y: f32, w: f32, h: f32) {
    if !(w > 0.0 && h > 0.0) {
        return;
    }
    path.move_to(x, y);
    path.line_to(x + w, y);
    path.line_to(x + w, y + h);
    path.line_to(x, y + h);
    path.close();
}

fn stroke_of(color: Rgb, width: f32, dotted: bool) -> Stroke {
    Stroke {
        paint: rgb::Color::new(color.0, color.1, color.2).into(),
        width,
        line_cap: if dotted {
            LineCap::Round
        } else {
            LineCap::Butt
        },
        dash: dotted.then(|| StrokeDash {
            array: vec![0.0, 3.0],
            offset: 0.0,
        }),
        ..Stroke::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fonts() -> Fonts {
        Fonts::load().unwrap()
    }

    #[test]
    fn wrapping_respects_the_width_and_keeps_every_character() {
        let fonts = fonts();
        let text = "The quick brown fox jumps over the lazy dog — naïve café ≥ 5 § 3. ".repeat(8);
        let lines = fonts.wrap(FontId::Regular, 10.0, &text, 200.0, Wrap::Words);
        assert!(lines.len() > 3);
        for line in &lines {
            assert!(
                line.width <= 200.0 + 0.01,
                "{} is {} wide",
                line.text,
                line.width
            );
        }
        let joined: String = lines
            .iter()
            .map(|l| l.text.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(joined, text.trim_end());
    }

    #[test]
    fn long_words_are_broken_and_progress_is_guaranteed() {
        let fonts = fonts();
        let word = "x".repeat(5_000);
        let lines = fonts.wrap(FontId::Regular, 10.0, &word, 100.0, Wrap::Words);
        assert!(lines.len() > 10);
        assert_eq!(lines.iter().map(|l| l.text.len()).sum::<usize>(), 5_000);
        // Narrower than one glyph: one glyph per line, no endless loop.
        let lines = fonts.wrap(FontId::Regular, 10.0, "abc", 0.0, Wrap::Words);
        assert_eq!(lines.len(), 3);
        let lines = fonts.wrap(FontId::Mono, 8.0, "a/b/c/d", -5.0, Wrap::Chars);
        assert_eq!(lines.len(), 7);
    }

    #[test]
    fn long_paths_break_after_slashes() {
        let fonts = fonts();
        let path = "/var/lib/blackbox/tenants/acme/segments/000042/entries.jsonl";
        let lines = fonts.wrap(FontId::Regular, 10.0, path, 120.0, Wrap::Words);
        assert!(lines.len() > 1);
        for line in &lines[..lines.len() - 1] {
            assert!(line.text.ends_with('/'), "{:?}", line.text);
        }
    }

    #[test]
    fn code_keeps_indentation_and_expands_tabs() {
        let fonts = fonts();
        let lines = fonts.wrap(FontId::Mono, 8.0, "a\n\tb\n  c", 400.0, Wrap::Chars);
        let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["a", "    b", "  c"]);
    }

    #[test]
    fn fit_cuts_with_an_ellipsis() {
        let fonts = fonts();
        let line = fonts.fit(FontId::Regular, 8.0, &"header ".repeat(100), 100.0);
        assert!(line.width <= 100.0);
        assert!(line.text.ends_with('…'));
    }

    #[test]
    fn only_the_widest_columns_give_way() {
        let level = water_level(&[50.0, 60.0, 300.0, 400.0], 500.0);
        assert!((level - 195.0).abs() < 0.01, "{level}");
        let level = water_level(&[10.0; 4], 20.0);
        assert!((level - 5.0).abs() < 0.01, "{level}");
        assert_eq!(water_level(&[], 20.0), 20.0);
    }

    #[test]
    fn nice_scales() {
        assert_eq!(nice_scale(0), (1, 1));
        assert_eq!(nice_scale(1), (1, 1));
        assert_eq!(nice_scale(7), (2, 8));
        assert_eq!(nice_scale(100), (20, 100));
        assert_eq!(nice_scale(1234), (500, 1500));
        let (step, top) = nice_scale(u64::MAX);
        assert!(top >= u128::from(u64::MAX) && top / step <= 5);
        assert_eq!(group_digits(1_234_567), "1,234,567");
        assert_eq!(group_digits(12), "12");
    }

    #[test]
    fn numbers_are_recognised() {
        for yes in ["1", "1,234", "-5", "12.5 %", "99%"] {
            assert!(is_number(yes), "{yes}");
        }
        for no in ["2025-01-01", "abc", "", "1a", "%"] {
            assert!(!is_number(no), "{no}");
        }
    }

    #[test]
    fn date_labels_are_thinned() {
        let days: Vec<String> = (0..365)
            .map(|i| {
                let month = i / 31 + 1;
                let day = i % 31 + 1;
                format!("2025-{month:02}-{day:02}")
            })
            .collect();
        let ticks = date_ticks(&days, 50.0, 1.2);
        assert!(ticks.len() >= 3 && ticks.len() <= 9, "{ticks:?}");
        assert!(ticks.iter().all(|&i| days[i].ends_with("-01")));
        assert_eq!(date_ticks(&days[..3], 50.0, 100.0), [0, 1, 2]);
        assert!(date_ticks(&[], 50.0, 1.0).is_empty());
        let odd: Vec<String> = (0..100).map(|i| format!("d{i}")).collect();
        let ticks = date_ticks(&odd, 30.0, 4.0);
        assert!(ticks.windows(2).all(|w| (w[1] - w[0]) as f32 * 4.0 >= 30.0));
    }
}
