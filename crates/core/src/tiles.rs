//! C2SP tlog-tiles resource paths (<https://c2sp.org/tlog-tiles>): which tile a URL names.
//!
//! ```text
//! tile/<L>/<N>[.p/<W>]        Merkle tree hashes at level L (0..=63), tile N, W of 256 wide
//! tile/entries/<N>[.p/<W>]    entry bundle N (uint16 length-prefixed entries)
//! ```
//!
//! `<N>` is written in 3-digit groups, all but the last prefixed with `x` (1234067 is
//! `x001/x234/067`); `.p/<W>` (1..=255, no leading zeros) marks a partial tile. Parsing is strict:
//! only the canonical spelling of a tile is accepted, so one tile has one path.

use std::fmt;

/// Hashes (or entries) per full tile.
pub const TILE_WIDTH: u64 = 256;
/// The highest level.
pub const MAX_LEVEL: u8 = 63;

/// A tile of Merkle tree hashes at a level, or an entry bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TileKind {
    /// Hashes of subtrees of 256^level leaves.
    Hashes {
        /// 0..=63.
        level: u8,
    },
    /// The entries themselves (level 0's leaves' data).
    Entries,
}

/// One tile resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TilePath {
    /// Hashes at a level, or entries.
    pub kind: TileKind,
    /// The tile's index within its level.
    pub index: u64,
    /// Hashes (entries) in it: 256 for a full tile, 1..=255 for a partial one.
    pub width: u16,
}

/// Why a path names no tile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "not a C2SP tlog-tiles path ({reason}): expected tile/<level 0-63>/<N>[.p/<width 1-255>] or tile/entries/<N>[.p/<width>], N in 3-digit groups such as x001/x234/067"
)]
pub struct TilePathError {
    /// What is wrong.
    pub reason: &'static str,
}

fn bad(reason: &'static str) -> TilePathError {
    TilePathError { reason }
}

fn three_digits(s: &str) -> Option<u64> {
    (s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

impl TilePath {
    /// Parses what follows `<prefix>/` (`tile/...`).
    ///
    /// # Errors
    /// [`TilePathError`].
    pub fn parse(path: &str) -> Result<Self, TilePathError> {
        let rest = path.strip_prefix("tile/").ok_or(bad("no tile/ prefix"))?;
        let (level, rest) = rest.split_once('/').ok_or(bad("no index"))?;
        let kind = if level == "entries" {
            TileKind::Entries
        } else {
            let canonical = !level.is_empty()
                && level.bytes().all(|b| b.is_ascii_digit())
                && (level == "0" || !level.starts_with('0'));
            let l: u8 = level
                .parse()
                .ok()
                .filter(|l| canonical && *l <= MAX_LEVEL)
                .ok_or(bad("bad level"))?;
            TileKind::Hashes { level: l }
        };
        let (index_part, width) = match rest.split_once(".p/") {
            Some((i, w)) => {
                let canonical =
                    !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit()) && !w.starts_with('0');
                let w: u16 = w
                    .parse()
                    .ok()
                    .filter(|w| canonical && (1..=255).contains(w))
                    .ok_or(bad("bad partial width"))?;
                (i, w)
            }
            None => (rest, 256),
        };
        let groups: Vec<&str> = index_part.split('/').collect();
        let mut index: u64 = 0;
        for (i, g) in groups.iter().enumerate() {
            let last = i + 1 == groups.len();
            let digits = if last {
                *g
            } else {
                g.strip_prefix('x')
                    .ok_or(bad("index groups but the last start with x"))?
            };
            let v = three_digits(digits).ok_or(bad("index groups are 3 digits"))?;
            if i == 0 && !last && v == 0 {
                return Err(bad("the index has a leading zero group"));
            }
            index = index
                .checked_mul(1000)
                .and_then(|x| x.checked_add(v))
                .ok_or(bad("index too large"))?;
        }
        Ok(Self { kind, index, width })
    }

    /// Whether it is a partial tile.
    #[must_use]
    pub const fn is_partial(&self) -> bool {
        self.width < 256
    }

    /// The tree size needed for this tile to exist: every subtree it holds complete.
    /// `None` when that exceeds 2^64.
    #[must_use]
    pub fn needs_tree_size(&self) -> Option<u64> {
        let level = match self.kind {
            TileKind::Hashes { level } => level,
            TileKind::Entries => 0,
        };
        let count = self
            .index
            .checked_mul(TILE_WIDTH)?
            .checked_add(u64::from(self.width))?;
        let shift = 8 * u32::from(level);
        if shift >= 64 {
            return (count == 0).then_some(0);
        }
        let size = count.checked_shl(shift)?;
        (size >> shift == count).then_some(size)
    }
}

impl fmt::Display for TilePath {
    /// `tile/<L>/<N>[.p/<W>]` or `tile/entries/<N>[.p/<W>]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            TileKind::Hashes { level } => write!(f, "tile/{level}/")?,
            TileKind::Entries => f.write_str("tile/entries/")?,
        }
        let mut groups = Vec::new();
        let mut n = self.index;
        loop {
            groups.push(n % 1000);
            n /= 1000;
            if n == 0 {
                break;
            }
        }
        for (i, g) in groups.iter().rev().enumerate() {
            if i + 1 < groups.len() {
                write!(f, "x{g:03}/")?;
            } else {
                write!(f, "{g:03}")?;
            }
        }
        if self.is_partial() {
            write!(f, ".p/{}", self.width)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_specs_examples() {
        let t = TilePath::parse("tile/0/x001/x234/067").unwrap();
        assert_eq!(
            t,
            TilePath {
                kind: TileKind::Hashes { level: 0 },
                index: 1_234_067,
                width: 256
            }
        );
        assert_eq!(t.to_string(), "tile/0/x001/x234/067");
        // A tree of 70,000: 273 full level-0 tiles, a partial of 112, a partial level-1 of 17,
        // a partial level-2 of 1.
        let p0 = TilePath::parse("tile/0/273.p/112").unwrap();
        assert_eq!(p0.needs_tree_size(), Some(70_000));
        let p1 = TilePath::parse("tile/1/000.p/17").unwrap();
        assert_eq!(p1.needs_tree_size(), Some(17 * 256));
        let p2 = TilePath::parse("tile/2/000.p/1").unwrap();
        assert_eq!(p2.needs_tree_size(), Some(65_536));
        let e = TilePath::parse("tile/entries/x001/000").unwrap();
        assert_eq!((e.kind, e.index, e.width), (TileKind::Entries, 1000, 256));
        assert_eq!(e.to_string(), "tile/entries/x001/000");
    }

    #[test]
    fn only_the_canonical_spelling() {
        for bad in [
            "tile/00/000",
            "tile/64/000",
            "tile/0/0",
            "tile/0/x000/001",
            "tile/0/001/002",
            "tile/0/x1/000",
            "tile/0/000.p/0",
            "tile/0/000.p/256",
            "tile/0/000.p/012",
            "tile/0/",
            "tiles/0/000",
            "tile/data/000",
            "tile/0/x018/x446/x744/x073/x709/x551/616",
        ] {
            assert!(TilePath::parse(bad).is_err(), "{bad}");
        }
        for good in [
            "tile/0/000",
            "tile/63/999",
            "tile/0/x018/x446/x744/x073/x709/x551/615.p/255",
        ] {
            let t = TilePath::parse(good).unwrap();
            assert_eq!(t.to_string(), good);
        }
    }
}
