//! Tables drawn in time linear in their input. Every cell is one line (control
//! characters read as spaces) cut to its column's width with a marker (`…`) when it
//! is longer; `--json` gives full values. Column widths come from the first
//! [`SAMPLE_ROWS`] rows, so a table can be written while its rows are still arriving
//! and memory is bounded by those rows, each already cut to the table's width.

use std::io::{self, Write};

use unicode_width::UnicodeWidthChar;

/// The rows that set the column widths; later rows are cut to them.
pub const SAMPLE_ROWS: usize = 100;

/// The table width off a terminal, unless `COLUMNS` or `--wide` says otherwise.
pub const DEFAULT_WIDTH: usize = 100;

/// The narrowest a column is cut to (two characters and the marker).
const MIN_COLUMN: usize = 3;

/// The marker that ends a cut cell.
pub const CUT: char = '…';

/// The width tables must fit: none with `--wide`; else `COLUMNS` when it holds a
/// number; else the terminal's width on a terminal; else [`DEFAULT_WIDTH`].
pub fn width(wide: bool) -> Option<usize> {
    if wide {
        return None;
    }
    if let Some(n) = std::env::var("COLUMNS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
    {
        return Some(n);
    }
    match terminal_size::terminal_size_of(io::stdout()) {
        Some((terminal_size::Width(w), _)) if w > 0 => Some(usize::from(w)),
        _ => Some(DEFAULT_WIDTH),
    }
}

/// A cell as one line, cut to `max` display columns (with [`CUT`] as the last one
/// when cut). Reads at most `max + 1` characters' worth of `text`.
pub fn fit(text: &str, max: Option<usize>) -> String {
    let Some(max) = max else {
        return text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
    };
    let mut out = String::with_capacity(max.min(text.len()) + CUT.len_utf8());
    let mut used = 0;
    // Where the text would be cut if it turns out too long: the longest prefix that
    // leaves room for the marker.
    let mut keep = (0, 0);
    for c in text.chars() {
        let c = if c.is_control() { ' ' } else { c };
        let w = c.width().unwrap_or(0);
        if used + w > max {
            out.truncate(keep.0);
            let room = max.saturating_sub(keep.1);
            if room >= 1 {
                out.push(CUT);
            }
            return out;
        }
        used += w;
        out.push(c);
        if used < max {
            keep = (out.len(), used);
        }
    }
    out
}

/// Display columns of a fitted cell.
fn columns(cell: &str) -> usize {
    cell.chars().map(|c| c.width().unwrap_or(0)).sum()
}

/// Column widths for natural widths `natural` in a table at most `max` wide: as
/// natural when they fit, else the widest columns are narrowed, fairly, to fit.
pub fn layout(natural: &[usize], max: Option<usize>) -> Vec<usize> {
    let n = natural.len();
    let Some(max) = max else {
        return natural.to_vec();
    };
    let frame = 2 * n + 2;
    let available = max.saturating_sub(frame);
    if natural.iter().sum::<usize>() <= available {
        return natural.to_vec();
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| natural[i]);
    let mut widths = vec![0; n];
    let mut left = available;
    for (k, &i) in order.iter().enumerate() {
        let share = left / (n - k);
        let w = natural[i].min(share).max(MIN_COLUMN.min(natural[i]));
        widths[i] = w;
        left = left.saturating_sub(w);
    }
    widths
}

/// A table being written: a header (or none, for name/value pairs), then rows.
pub struct TableWriter<W: Write> {
    out: W,
    max: Option<usize>,
    header: Option<Vec<String>>,
    sample: Vec<Vec<String>>,
    widths: Option<Vec<usize>>,
    rows: u64,
}

impl<W: Write> TableWriter<W> {
    /// A table at most `max` columns wide (none: as wide as its cells).
    pub fn new(out: W, header: Option<&[String]>, max: Option<usize>) -> Self {
        TableWriter {
            out,
            max,
            header: header.map(|h| h.iter().map(|c| fit(c, max)).collect()),
            sample: Vec::new(),
            widths: None,
            rows: 0,
        }
    }

    /// Adds a row; after the sample, it is written at once.
    pub fn row<S: AsRef<str>>(&mut self, cells: &[S]) -> io::Result<()> {
        self.rows += 1;
        match &self.widths {
            None => {
                let cells = cells.iter().map(|c| fit(c.as_ref(), self.max)).collect();
                self.sample.push(cells);
                if self.sample.len() >= SAMPLE_ROWS {
                    self.start()?;
                }
                Ok(())
            }
            Some(widths) => {
                let cells: Vec<String> = cells
                    .iter()
                    .zip(widths)
                    .map(|(c, w)| fit(c.as_ref(), Some(*w)))
                    .collect();
                self.line(&cells)
            }
        }
    }

    /// The rows added so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Writes what is left and the bottom border; `(no rows)` for an empty table.
    pub fn finish(mut self) -> io::Result<W> {
        if self.rows == 0 {
            writeln!(self.out, "(no rows)")?;
            return Ok(self.out);
        }
        if self.widths.is_none() {
            self.start()?;
        }
        let total = self.total();
        writeln!(self.out, "└{}┘", "─".repeat(total))?;
        Ok(self.out)
    }

    /// Fixes the widths from the header and the sample, and writes them.
    fn start(&mut self) -> io::Result<()> {
        let n = self
            .header
            .as_ref()
            .map(Vec::len)
            .into_iter()
            .chain(self.sample.iter().map(Vec::len))
            .max()
            .unwrap_or(0);
        let mut natural = vec![0; n];
        for cells in self.header.iter().chain(&self.sample) {
            for (i, c) in cells.iter().enumerate() {
                natural[i] = natural[i].max(columns(c));
            }
        }
        let widths = layout(&natural, self.max);
        self.widths = Some(widths);
        let total = self.total();
        writeln!(self.out, "┌{}┐", "─".repeat(total))?;
        if let Some(header) = self.header.take() {
            let header = self.cut(header);
            self.line(&header)?;
            writeln!(self.out, "╞{}╡", "═".repeat(total))?;
        }
        for cells in std::mem::take(&mut self.sample) {
            let cells = self.cut(cells);
            self.line(&cells)?;
        }
        Ok(())
    }

    /// Cells fitted to the fixed widths.
    fn cut(&self, cells: Vec<String>) -> Vec<String> {
        let widths = self.widths.as_deref().unwrap_or_default();
        cells
            .into_iter()
            .zip(widths)
            .map(|(c, w)| {
                if columns(&c) > *w {
                    fit(&c, Some(*w))
                } else {
                    c
                }
            })
            .collect()
    }

    /// The width inside the border.
    fn total(&self) -> usize {
        let widths = self.widths.as_deref().unwrap_or_default();
        widths.iter().sum::<usize>() + 2 * widths.len()
    }

    fn line(&mut self, cells: &[String]) -> io::Result<()> {
        let widths = self.widths.as_deref().unwrap_or_default();
        write!(self.out, "│")?;
        for (i, w) in widths.iter().enumerate() {
            let cell = cells.get(i).map_or("", String::as_str);
            let pad = w.saturating_sub(columns(cell));
            write!(self.out, " {cell}{} ", " ".repeat(pad))?;
        }
        writeln!(self.out, "│")
    }
}

/// A whole table as text (for tables built in memory).
pub fn render<S: AsRef<str>>(
    header: Option<&[String]>,
    rows: &[Vec<S>],
    max: Option<usize>,
) -> String {
    let mut t = TableWriter::new(Vec::new(), header, max);
    for r in rows {
        // Writing to a Vec cannot fail.
        let _ = t.row(r);
    }
    let bytes = t.finish().unwrap_or_default();
    String::from_utf8_lossy(&bytes).trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The reference: the whole cell one character at a time.
    fn fit_reference(text: &str, max: usize) -> String {
        let line: Vec<char> = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let width = |cs: &[char]| cs.iter().map(|c| c.width().unwrap_or(0)).sum::<usize>();
        if width(&line) <= max {
            return line.into_iter().collect();
        }
        let mut n = line.len();
        while n > 0 && width(&line[..n]) + 1 > max {
            n -= 1;
        }
        let mut out: String = line[..n].iter().collect();
        if max >= 1 {
            out.push(CUT);
        }
        out
    }

    proptest! {
        #[test]
        fn fitting_matches_the_reference(text in "\\PC{0,40}|[a\\t\\n界e\u{301}]{0,40}", max in 0usize..30) {
            let got = fit(&text, Some(max));
            prop_assert_eq!(&got, &fit_reference(&text, max));
            prop_assert!(columns(&got) <= max.max(1));
        }

        #[test]
        fn layouts_fit_the_width(natural in proptest::collection::vec(0usize..300, 1..8), max in 20usize..200) {
            let widths = layout(&natural, Some(max));
            let n = natural.len();
            for (w, nat) in widths.iter().zip(&natural) {
                prop_assert!(w <= nat);
            }
            if natural.iter().sum::<usize>() + 2 * n + 2 <= max {
                prop_assert_eq!(&widths, &natural);
            } else if n * (MIN_COLUMN + 2) + 2 <= max {
                prop_assert!(widths.iter().sum::<usize>() + 2 * n + 2 <= max);
            }
        }
    }

    #[test]
    fn a_long_cell_is_cut_with_a_marker() {
        let long = "x".repeat(1_000_000);
        let text = render(Some(&["a".to_string()]), &[vec![long]], Some(20));
        for line in text.lines() {
            assert!(columns(line) <= 20, "{line}");
        }
        assert!(text.contains("xxx…"), "{text}");
    }

    #[test]
    fn tables_keep_their_frame() {
        let text = render(
            Some(&["id".to_string(), "name".to_string()]),
            &[vec!["1", "bot"], vec!["22", "a\nb"]],
            Some(100),
        );
        assert_eq!(
            text,
            "┌──────────┐\n│ id  name │\n╞══════════╡\n│ 1   bot  │\n│ 22  a b  │\n└──────────┘"
        );
    }

    #[test]
    fn an_empty_table_says_so() {
        assert_eq!(render::<&str>(None, &[], Some(100)), "(no rows)");
    }

    #[test]
    fn rows_after_the_sample_are_cut_to_its_widths() {
        let mut rows: Vec<Vec<String>> = vec![vec!["ab".into()]; SAMPLE_ROWS];
        rows.push(vec!["abcdef".into()]);
        let text = render(Some(&["h".to_string()]), &rows, Some(100));
        assert!(text.contains("│ a… │"), "{text}");
    }
}
