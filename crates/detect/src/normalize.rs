//! Content normalisation for pattern matching: the text a rule's patterns are matched against.
//!
//! Prompt-injection text is easy to disguise: a zero-width space inside a keyword, fullwidth or
//! Cyrillic look-alike letters, odd spacing, or a base64 / percent-encoded copy. This module turns
//! a raw string into one or more canonical *views* so that a literal written once in the rules
//! file catches those variants.
//!
//! - [`normalize_text`] canonicalises one string (rules below).
//! - [`for_each_view`] yields the normalised string plus normalised decodings of the encoded
//!   segments inside it (rules below); [`scan_views`] collects the same views into a `Vec`.
//!
//! Raw content is inspected in memory only: nothing here stores, logs or returns raw text
//! beyond the views handed to the caller's callback.
//!
//! # Normalisation rules ([`normalize_text`])
//!
//! Applied in this order:
//!
//! 1. **Invisible characters removed**: every `Default_Ignorable_Code_Point` of Unicode 16
//!    (see [`is_ignorable`]). That covers zero-width characters (U+200B–U+200F), bidi
//!    embeddings and overrides (U+202A–U+202E), word joiner and bidi isolates (U+2060–U+206F),
//!    tag characters and variation selectors (U+E0000–U+E0FFF), U+FEFF, the soft hyphen U+00AD,
//!    U+061C, the combining grapheme joiner U+034F, Mongolian and standard variation selectors
//!    (U+180B–U+180F, U+FE00–U+FE0F) and the Hangul fillers. They are removed *before* NFKC so
//!    they cannot block a composition.
//! 2. **Unicode NFKC** (compatibility decomposition, canonical composition): fullwidth
//!    `ｉｇｎｏｒｅ` becomes `ignore`, ligatures and super/subscripts become plain letters, the
//!    no-break and other typographic spaces become U+0020. ASCII runs skip it: NFKC leaves ASCII
//!    as it is, and no character composes with an ASCII character that follows it.
//! 3. **Homoglyphs folded to Latin** with the table in [`fold_homoglyph`] (Cyrillic and Greek
//!    letters that look like Latin ones, plus the Turkish dotted capital / dotless `i`). Uppercase
//!    look-alikes are folded before lowercasing, because e.g. Cyrillic `Н` looks like `H` while its
//!    lowercase `н` does not look like `h`.
//! 4. **Lowercased**: full Unicode lowercase ([`char::to_lowercase`]); the lowercase forms are
//!    folded again through the homoglyph table (Cyrillic `Ѕ` → `ѕ` → `s`).
//! 5. **Whitespace collapsed**: every run of Unicode whitespace ([`char::is_whitespace`]: tabs,
//!    newlines, U+0085, U+2028, ideographic space, …) becomes one ASCII space; leading and
//!    trailing whitespace is removed.
//!
//! Not handled (by design, to keep false positives and cost low): combining marks are kept
//! (`i\u{0301}gnore` stays distinct), letters are not transliterated beyond the table, and HTML
//! entities or `\uXXXX` escapes are not decoded.
//!
//! # Decoded views ([`for_each_view`])
//!
//! The first view is always `normalize_text(s)`. Then, from the *raw* text (decoding needs the
//! original case), with the text at depth 0 and every decoding one level deeper:
//!
//! - **Percent-encoding**: if the text contains at least one `%XX` sequence (`X` a hex digit), the
//!   whole text is decoded: `+` becomes a space, every `%XX` becomes its byte, other bytes are
//!   kept; invalid UTF-8 in the result is replaced with U+FFFD.
//! - **Base64**: the text is split into segments at every byte outside the base64 alphabets
//!   (`A–Z a–z 0–9 + / - _`; `=` padding is a separator, so padded and unpadded input both
//!   work). Each segment of at least [`MIN_BASE64_LEN`] characters is decoded with the standard
//!   alphabet, or with the URL-safe one if it contains `-` or `_` (a segment mixing `+`/`/` with
//!   `-`/`_` is not base64). Non-canonical encodings (non-zero trailing bits, a length of 1
//!   modulo 4) are rejected. If a segment containing `/` does not decode to text, its
//!   `/`-separated parts of at least [`MIN_BASE64_LEN`] characters are tried instead (base64
//!   inside a URL path). The decoded bytes are kept only if they are UTF-8 (an incomplete
//!   character at the very end is dropped) and look like text: not empty, and at most one
//!   character in ten a control character other than tab, LF or CR. The same segment is decoded
//!   at most once per input.
//! - Every accepted decoding yields its normalised text as a view (if not empty) and is itself
//!   decoded the same way, down to depth [`MAX_DECODE_DEPTH`] (so base64 of a percent-encoded
//!   string, or percent-encoding inside base64, are both seen).
//! - All decoded text of one input counts against [`DECODE_BUDGET`] bytes. A decoding that would
//!   exceed the remaining budget is truncated to fit (base64 at a 4-character boundary), and
//!   once the budget is spent nothing more is decoded. Work is therefore linear in the input
//!   length plus the budget, whatever the input.

use std::borrow::Cow;
use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};

use base64::Engine as _;
use base64::engine::GeneralPurpose;
use base64::engine::general_purpose::{NO_PAD_INDIFFERENT, STANDARD_NO_PAD_INDIFFERENT};
use unicode_normalization::UnicodeNormalization as _;

/// Deepest level of nested encodings decoded: the raw text is depth 0, its decodings depth 1.
pub const MAX_DECODE_DEPTH: usize = 3;

/// Total decoded bytes, over all levels, that one input may produce (64 KiB).
pub const DECODE_BUDGET: usize = 64 * 1024;

/// Shortest base64 segment (in characters, padding excluded) that is decoded.
pub const MIN_BASE64_LEN: usize = 16;

/// URL-safe alphabet, padding optional; the standard one is `STANDARD_NO_PAD_INDIFFERENT`.
const URL_SAFE_INDIFFERENT: GeneralPurpose =
    GeneralPurpose::new(&base64::alphabet::URL_SAFE, NO_PAD_INDIFFERENT);

/// Normalises `s` for pattern matching (see the [module docs](self) for the exact rules).
///
/// ASCII runs skip the Unicode steps, and ASCII input that is already normal (no uppercase, no
/// whitespace other than single inner spaces) is returned borrowed, without allocating.
#[must_use]
pub fn normalize_text(s: &str) -> Cow<'_, str> {
    if s.is_ascii() && ascii_is_normal(s.as_bytes()) {
        return Cow::Borrowed(s);
    }
    let mut out = Normalized::with_capacity(s.len());
    let mut rest = s;
    while !rest.is_empty() {
        // ASCII runs take the fast path. The last ASCII character before a non-ASCII one goes
        // with it through NFKC, since a combining mark may compose with it (`e` + U+0301); no
        // character composes with a following ASCII one, so NFKC can restart at every ASCII
        // character.
        let ascii_len = rest.bytes().position(|b| !b.is_ascii());
        let split = ascii_len.map_or(rest.len(), |n| n.saturating_sub(1));
        let Some((ascii, tail)) = rest.split_at_checked(split) else {
            // Unreachable (`split` is at an ASCII byte), but the slow path is always correct.
            out.push_unicode(rest);
            break;
        };
        out.push_ascii(ascii);
        let first = tail.chars().next().map_or(0, char::len_utf8);
        let unicode_len = tail
            .as_bytes()
            .get(first..)
            .and_then(|after| after.iter().position(u8::is_ascii))
            .map_or(tail.len(), |n| n + first);
        let Some((unicode, next)) = tail.split_at_checked(unicode_len) else {
            out.push_unicode(tail);
            break;
        };
        out.push_unicode(unicode);
        rest = next;
    }
    Cow::Owned(out.finish())
}

/// Calls `f` with every view of `s`: first `normalize_text(s)`, then the normalised decodings of
/// its percent-encoded and base64 segments, depth first (rules in the [module docs](self)).
///
/// Views are borrowed for the duration of the call only: already-normal ASCII text without
/// encoded-looking segments is scanned without allocating. Decoded views that normalise to an
/// empty string are skipped; the first view is always produced, even if empty.
pub fn for_each_view(s: &str, mut f: impl FnMut(&str)) {
    f(&normalize_text(s));
    let mut state = DecodeState {
        budget: DECODE_BUDGET,
        seen: HashSet::new(),
        hasher: RandomState::new(),
        buf: Vec::new(),
    };
    decode_views(s, 1, &mut state, &mut f);
}

/// Appends every view of `s` (as [`for_each_view`] yields them) to `out`.
///
/// Convenient for tests and diagnostics; matching code should prefer [`for_each_view`], which
/// does not copy the views.
pub fn scan_views(s: &str, out: &mut Vec<String>) {
    for_each_view(s, |view| out.push(view.to_owned()));
}

/// Whether `c` is a `Default_Ignorable_Code_Point` (Unicode 16): invisible characters that
/// [`normalize_text`] removes.
#[must_use]
pub fn is_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// The Latin lowercase letter that `c` is commonly mistaken for, if `c` is in the homoglyph
/// table.
///
/// | Script | Characters | Latin |
/// |---|---|---|
/// | Cyrillic lowercase | а е о р с у х і ј ѕ ԁ ԛ ԝ һ ӏ | a e o p c y x i j s d q w h l |
/// | Cyrillic uppercase | А В Е К М Н О Р С Т Х Ӏ | a b e k m h o p c t x i |
/// | Greek lowercase | α ε ι κ ν ο ρ τ υ χ | a e i k v o p t u x |
/// | Greek uppercase | Α Β Ε Ζ Η Ι Κ Μ Ν Ο Ρ Τ Υ Χ | a b e z h i k m n o p t y x |
/// | Latin | İ ı (dotted capital I, dotless i) | i i |
///
/// Other uppercase Cyrillic look-alikes (Ѕ І Ј У Ԁ Ԛ Ԝ Һ) reach the table through their
/// lowercase forms.
#[must_use]
pub fn fold_homoglyph(c: char) -> Option<char> {
    // By Latin letter; in each arm Cyrillic first, then Greek, then Latin.
    let latin = match c {
        'а' | 'А' | 'α' | 'Α' => 'a',
        'В' | 'Β' => 'b',
        'с' | 'С' => 'c',
        'ԁ' => 'd',
        'е' | 'Е' | 'ε' | 'Ε' => 'e',
        'һ' | 'Н' | 'Η' => 'h',
        // Capital palochka looks like `I`; the Turkish i's otherwise lowercase to `i` plus a
        // combining dot, or stay dotless.
        'і' | 'Ӏ' | 'ι' | 'Ι' | 'İ' | 'ı' => 'i',
        'ј' => 'j',
        'К' | 'κ' | 'Κ' => 'k',
        'ӏ' => 'l',
        'М' | 'Μ' => 'm',
        'Ν' => 'n',
        'о' | 'О' | 'ο' | 'Ο' => 'o',
        'р' | 'Р' | 'ρ' | 'Ρ' => 'p',
        'ԛ' => 'q',
        'ѕ' => 's',
        'Т' | 'τ' | 'Τ' => 't',
        'υ' => 'u',
        'ν' => 'v',
        'ԝ' => 'w',
        'х' | 'Х' | 'χ' | 'Χ' => 'x',
        'у' | 'Υ' => 'y',
        'Ζ' => 'z',
        _ => return None,
    };
    Some(latin)
}

/// The ASCII bytes [`char::is_whitespace`] accepts (note: includes VT, unlike
/// [`u8::is_ascii_whitespace`]).
fn is_ascii_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

/// Whether this ASCII text is already normal: no uppercase, no whitespace but single spaces
/// between other characters.
fn ascii_is_normal(bytes: &[u8]) -> bool {
    // Starting "after a space" rejects a leading space.
    let mut after_space = true;
    for &b in bytes {
        if b == b' ' {
            if after_space {
                return false;
            }
            after_space = true;
        } else if b.is_ascii_uppercase() || is_ascii_ws(b) {
            return false;
        } else {
            after_space = false;
        }
    }
    !after_space || bytes.is_empty()
}

/// The output of [`normalize_text`] under construction: collapses whitespace runs and trims as
/// text is pushed. ASCII letters are lowercased once, at the end.
struct Normalized {
    out: String,
    pending_space: bool,
}

impl Normalized {
    fn with_capacity(n: usize) -> Self {
        Self {
            out: String::with_capacity(n),
            pending_space: false,
        }
    }

    fn space(&mut self) {
        // A space before any text is leading whitespace: dropped.
        self.pending_space = !self.out.is_empty();
    }

    fn flush_space(&mut self) {
        if self.pending_space {
            self.out.push(' ');
            self.pending_space = false;
        }
    }

    fn push(&mut self, c: char) {
        self.flush_space();
        self.out.push(c);
    }

    /// ASCII text: no NFKC, no invisible characters, no homoglyphs; words are copied whole.
    fn push_ascii(&mut self, ascii: &str) {
        let mut words = ascii.split(char::is_whitespace);
        if let Some(word) = words.next() {
            self.push_word(word);
        }
        for word in words {
            self.space();
            self.push_word(word);
        }
    }

    fn push_word(&mut self, word: &str) {
        if !word.is_empty() {
            self.flush_space();
            self.out.push_str(word);
        }
    }

    /// Any text: rules 1 to 5.
    fn push_unicode(&mut self, s: &str) {
        for c in s.chars().filter(|&c| !is_ignorable(c)).nfkc() {
            // No ignorable character can come out of NFKC once they are removed from its input
            // (checked over all of Unicode in the tests), so they are not filtered again here.
            if c.is_whitespace() {
                self.space();
            } else if c.is_ascii() {
                self.push(c);
            } else if let Some(latin) = fold_homoglyph(c) {
                self.push(latin);
            } else if c.is_lowercase() {
                // Lowercase letters lowercase to themselves (checked over all of Unicode in the
                // tests), and this check is much cheaper than `to_lowercase`.
                self.push(c);
            } else {
                for lower in c.to_lowercase() {
                    self.push(fold_homoglyph(lower).unwrap_or(lower));
                }
            }
        }
    }

    /// The text; a pending (trailing) space is dropped.
    fn finish(mut self) -> String {
        // Only ASCII letters from the input or from NFKC can still be uppercase: folded and
        // lowercased characters are lowercase already.
        self.out.make_ascii_lowercase();
        self.out
    }
}

/// Decoding state shared by all levels of one [`for_each_view`] call.
struct DecodeState {
    /// Decoded bytes still allowed.
    budget: usize,
    /// Hashes of base64 segments already tried, so a segment that appears again in a decoded
    /// view (typically the percent-decoded copy of the same text) is not decoded twice. The
    /// hasher is randomly keyed so input cannot be crafted to collide with another segment.
    seen: HashSet<u64>,
    hasher: RandomState,
    /// Scratch buffer for base64 output.
    buf: Vec<u8>,
}

fn decode_views<F: FnMut(&str)>(text: &str, depth: usize, st: &mut DecodeState, f: &mut F) {
    if depth > MAX_DECODE_DEPTH {
        return;
    }
    if let Some(decoded) = percent_decode_text(text.as_bytes(), st) {
        emit(&decoded, depth, st, f);
    }
    for segment in text.as_bytes().split(|&b| !is_base64_byte(b)) {
        if st.budget == 0 {
            return;
        }
        if segment.len() < MIN_BASE64_LEN || !st.seen.insert(st.hasher.hash_one(segment)) {
            continue;
        }
        if let Some(decoded) = base64_decode_text(segment, st) {
            emit(&decoded, depth, st, f);
        } else if segment.contains(&b'/') {
            for part in segment.split(|&b| b == b'/') {
                if part.len() >= MIN_BASE64_LEN
                    && let Some(decoded) = base64_decode_text(part, st)
                {
                    emit(&decoded, depth, st, f);
                }
            }
        }
    }
}

/// Yields the view of one decoded text and decodes it further.
fn emit<F: FnMut(&str)>(decoded: &str, depth: usize, st: &mut DecodeState, f: &mut F) {
    let view = normalize_text(decoded);
    if !view.is_empty() {
        f(&view);
    }
    decode_views(decoded, depth + 1, st, f);
}

fn is_base64_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_')
}

fn is_hex_escape(w: &[u8]) -> bool {
    matches!(w, [b'%', h, l] if h.is_ascii_hexdigit() && l.is_ascii_hexdigit())
}

/// Percent-decodes `bytes` (with `+` as space) if it contains a `%XX` escape, within budget.
fn percent_decode_text(bytes: &[u8], st: &mut DecodeState) -> Option<String> {
    if st.budget == 0 || !bytes.windows(3).any(is_hex_escape) {
        return None;
    }
    let plus_as_space: Vec<u8> = bytes
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    let decoded: Vec<u8> = percent_encoding::percent_decode(&plus_as_space)
        .take(st.budget)
        .collect();
    st.budget = st.budget.saturating_sub(decoded.len());
    Some(String::from_utf8_lossy(&decoded).into_owned())
}

/// Decodes one base64 segment (no padding) into text, within budget; `None` if it is not
/// base64 of text.
fn base64_decode_text(segment: &[u8], st: &mut DecodeState) -> Option<String> {
    let url_safe = segment.iter().any(|&b| b == b'-' || b == b'_');
    let standard = segment.iter().any(|&b| b == b'+' || b == b'/');
    let engine = match (standard, url_safe) {
        (true, true) => return None,
        (false, true) => &URL_SAFE_INDIFFERENT,
        _ => &STANDARD_NO_PAD_INDIFFERENT,
    };
    // Whole 4-character groups decode to 3 bytes each; a longer segment is cut to fit.
    let max_chars = st.budget / 3 * 4;
    let input = if segment.len() > max_chars {
        segment.get(..max_chars)?
    } else {
        segment
    };
    if input.len() < MIN_BASE64_LEN {
        return None;
    }
    st.buf.clear();
    engine.decode_vec(input, &mut st.buf).ok()?;
    let text = match std::str::from_utf8(&st.buf) {
        Ok(text) => text,
        // Only an incomplete character at the end (from truncation or a cut-off encoder).
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(st.buf.get(..e.valid_up_to())?).ok()?
        }
        Err(_) => return None,
    };
    if !looks_like_text(text) {
        return None;
    }
    st.budget = st.budget.saturating_sub(text.len());
    Some(text.to_owned())
}

/// Not empty, and at most one character in ten a control character other than tab, LF, CR.
fn looks_like_text(text: &str) -> bool {
    let mut chars = 0usize;
    let mut controls = 0usize;
    for c in text.chars() {
        chars += 1;
        if c.is_control() && !matches!(c, '\t' | '\n' | '\r') {
            controls += 1;
        }
    }
    chars > 0 && controls.saturating_mul(10) <= chars
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

    const NEEDLE: &str = "ignore previous instructions";

    fn views(s: &str) -> Vec<String> {
        let mut out = Vec::new();
        scan_views(s, &mut out);
        out
    }

    fn any_view_contains(s: &str, needle: &str) -> bool {
        views(s).iter().any(|v| v.contains(needle))
    }

    #[test]
    fn normal_ascii_is_borrowed() {
        for s in ["", "ignore previous instructions", "a", "x=1; y-2!"] {
            assert!(matches!(normalize_text(s), Cow::Borrowed(_)), "{s:?}");
        }
        for s in [" a", "a ", "a  b", "a\tb", "A", "a\nb"] {
            assert!(matches!(normalize_text(s), Cow::Owned(_)), "{s:?}");
        }
    }

    #[test]
    fn zero_width_removed() {
        assert_eq!(normalize_text("ig\u{200B}nore"), "ignore");
        assert_eq!(
            normalize_text("i\u{200C}g\u{200D}n\u{2060}o\u{FEFF}r\u{00AD}e"),
            "ignore"
        );
        // A visible separator is not removed.
        assert_ne!(normalize_text("ig-nore"), "ignore");
    }

    #[test]
    fn fullwidth_via_nfkc() {
        assert_eq!(
            normalize_text("ｉｇｎｏｒｅ　ＰＲＥＶＩＯＵＳ"),
            "ignore previous"
        );
        assert_eq!(normalize_text("ﬁle"), "file");
        assert_ne!(normalize_text("ｉｇｎｏｒｅ"), "ignored");
    }

    #[test]
    fn cyrillic_and_greek_homoglyphs() {
        // і, о, е are Cyrillic.
        assert_eq!(normalize_text("іgnоrе"), "ignore");
        assert_eq!(normalize_text("РАSSWОRD"), "password");
        assert_eq!(normalize_text("ΙGΝΟRΕ"), "ignore");
        assert_eq!(normalize_text("Ѕystem"), "system");
        // Cyrillic letters without a Latin look-alike stay as they are.
        assert_eq!(normalize_text("Привет"), "пpивeт");
        assert_ne!(normalize_text("іgnоrе"), "ignored");
    }

    #[test]
    fn homoglyph_table_is_reachable() {
        let mut entries = 0;
        for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
            if let Some(latin) = fold_homoglyph(c) {
                entries += 1;
                assert!(latin.is_ascii_lowercase() && !c.is_ascii(), "{c}");
                // NFKC leaves it alone, so normalisation actually reaches the table.
                assert!(c.nfkc().eq([c]), "{c}");
                assert_eq!(normalize_text(&c.to_string()), latin.to_string(), "{c}");
            }
        }
        assert_eq!(entries, 53);
    }

    #[test]
    fn turkish_i_folds() {
        assert_eq!(normalize_text("İGNORE"), "ignore");
        assert_eq!(normalize_text("ıgnore"), "ignore");
    }

    #[test]
    fn nfkc_never_produces_ignorables() {
        for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
            if !is_ignorable(c) {
                assert!(!c.nfkc().any(is_ignorable), "{:04X}", u32::from(c));
            }
        }
    }

    #[test]
    fn lowercase_letters_are_their_own_lowercase() {
        for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
            if c.is_lowercase() {
                assert!(c.to_lowercase().eq([c]), "{:04X}", u32::from(c));
            }
        }
    }

    #[test]
    fn mixed_case_lowercased() {
        assert_eq!(normalize_text("IgNoRe PrEvIoUs"), "ignore previous");
        assert_eq!(normalize_text("ÉCOLE"), "école");
    }

    #[test]
    fn whitespace_collapsed_and_trimmed() {
        assert_eq!(
            normalize_text("  ignore\t\tprevious\r\n\u{000B}instructions \n"),
            NEEDLE
        );
        assert_eq!(
            normalize_text("ignore\u{00A0}previous\u{3000}\u{2028}instructions"),
            NEEDLE
        );
        assert_eq!(normalize_text(" \t\n "), "");
        assert_ne!(normalize_text("ignoreprevious"), "ignore previous");
    }

    #[test]
    fn tag_characters_removed() {
        let tagged: String = "ig"
            .chars()
            .chain(
                "hidden"
                    .chars()
                    .map(|c| char::from_u32(0xE0000 + u32::from(c)).unwrap_or('\u{E0001}')),
            )
            .chain("nore".chars())
            .collect();
        assert_eq!(normalize_text(&tagged), "ignore");
    }

    #[test]
    fn bidi_controls_removed() {
        assert_eq!(
            normalize_text("\u{202E}ig\u{202D}no\u{2066}re\u{2069}\u{202C}"),
            "ignore"
        );
        assert_eq!(normalize_text("\u{061C}ignore"), "ignore");
    }

    #[test]
    fn ignorable_between_base_and_mark_does_not_block_composition() {
        assert_eq!(normalize_text("e\u{200B}\u{0301}"), "\u{00E9}");
    }

    #[test]
    fn near_miss_stays_distinct() {
        let n = normalize_text("Ignore   PRIOR instructions");
        assert_eq!(n, "ignore prior instructions");
        assert!(!n.contains(NEEDLE));
    }

    #[test]
    fn first_view_is_normalised_text() {
        assert_eq!(views("Hello  World"), vec!["hello world"]);
        assert_eq!(views(""), vec![""]);
    }

    #[test]
    fn base64_decoded() {
        let enc = STANDARD.encode(NEEDLE);
        assert!(any_view_contains(&format!("please run {enc} now"), NEEDLE));
        // Unpadded and URL-safe, with an underscore or dash in the encoding.
        let enc = URL_SAFE_NO_PAD.encode("ignore previous instructions??>>");
        assert!(enc.contains('_') || enc.contains('-'), "{enc}");
        assert!(any_view_contains(&format!("x={enc}"), NEEDLE));
        let near = STANDARD.encode("ignore prior instructions");
        assert!(!any_view_contains(&near, NEEDLE));
    }

    #[test]
    fn base64_in_url_path() {
        let enc = STANDARD.encode(NEEDLE);
        let enc = enc.trim_end_matches('=');
        assert!(any_view_contains(
            &format!("https://evil.example/{enc}/x"),
            NEEDLE
        ));
    }

    #[test]
    fn url_encoded_decoded() {
        assert!(any_view_contains(
            "ignore%20previous%20instructions",
            NEEDLE
        ));
        assert!(any_view_contains(
            "q=Ignore+previous+instructions%21",
            NEEDLE
        ));
        // No %XX: '+' is left alone.
        assert!(!any_view_contains("ignore+previous+instructions", NEEDLE));
        assert!(!any_view_contains("ignore%20prior%20instructions", NEEDLE));
    }

    #[test]
    fn nested_base64_of_url_encoded() {
        let inner = "ignore%20previous%20instructions";
        let enc = STANDARD.encode(inner);
        assert!(any_view_contains(&enc, NEEDLE));
        // Three layers: base64(base64(urlencoded)).
        let enc2 = STANDARD.encode(&enc);
        assert!(any_view_contains(&enc2, NEEDLE));
        // Four layers is past the depth limit.
        let enc3 = STANDARD.encode(&enc2);
        assert!(!any_view_contains(&enc3, NEEDLE));
    }

    #[test]
    fn url_encoded_base64_decoded() {
        let enc = STANDARD.encode(NEEDLE).replace('=', "%3D");
        assert!(any_view_contains(&format!("p={enc}"), NEEDLE));
    }

    #[test]
    fn binary_base64_yields_no_view() {
        // Random bytes, and bytes 0..16: invalid UTF-8 / control characters.
        for token in ["q83vEjRWeJCrze8SNFZ4kA==", "AAECAwQFBgcICQoLDA0ODw=="] {
            assert_eq!(views(token).len(), 1, "{token}");
        }
        // Long words and identifiers are not mistaken for base64 text.
        assert_eq!(
            views("internationalization ThisIsAVeryLongIdentifierName").len(),
            1
        );
        // Below the minimum length.
        let short = STANDARD.encode("ignore!!");
        assert_eq!(views(&short).len(), 1);
    }

    #[test]
    fn repeated_segment_decoded_once() {
        let enc = STANDARD.encode(NEEDLE);
        let v = views(&format!("{enc} %41 {enc}"));
        assert_eq!(v.iter().filter(|v| v.contains(NEEDLE)).count(), 1);
    }

    #[test]
    fn budget_bounds_decoding() {
        let enc = STANDARD.encode("a harmless sentence. ".repeat(10_000));
        let decoded: usize = views(&enc).iter().skip(1).map(String::len).sum();
        assert!(decoded <= DECODE_BUDGET, "{decoded}");
        assert!(decoded > DECODE_BUDGET / 2, "{decoded}");
        // Many small segments share one budget.
        let many = format!("{} ", STANDARD.encode("a harmless sentence!")).repeat(20_000);
        let total: usize = views(&many).iter().skip(1).map(String::len).sum();
        assert!(total <= DECODE_BUDGET, "{total}");
    }

    /// The whole string through the Unicode path, without the ASCII shortcuts.
    fn reference(s: &str) -> String {
        let mut out = Normalized::with_capacity(0);
        out.push_unicode(s);
        out.finish()
    }

    proptest::proptest! {
        #[test]
        fn ascii_shortcuts_change_nothing(
            s in "[a-zA-Z .\t\n\u{0B}\u{0300}-\u{0310}\u{0327}\u{200B}\u{00A0}\u{00AD}\
                  \u{FF21}-\u{FF3A}\u{0410}-\u{044F}\u{0391}-\u{03C9}\u{1100}-\u{1112}\
                  \u{1161}-\u{1175}\u{0130}\u{2028}\u{3000}\u{FB01}éÅ]{0,40}"
        ) {
            proptest::prop_assert_eq!(normalize_text(&s), reference(&s));
        }

        #[test]
        fn ascii_shortcuts_change_nothing_on_any_string(s in proptest::prelude::any::<String>()) {
            proptest::prop_assert_eq!(normalize_text(&s), reference(&s));
        }
    }

    #[test]
    fn hostile_input_does_not_panic() {
        for s in [
            "%",
            "%%%%",
            "%zz%4",
            "====",
            "////////////////////////",
            "-_-_-_-_-_-_-_-_-_-_+/+/",
            "AAAAAAAAAAAAAAAAA",
            "\u{0301}\u{200B}",
            "\u{E0FFF}",
        ] {
            let _ = views(s);
        }
    }
}
