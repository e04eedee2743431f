//! One metric family in Prometheus' text format, written as samples are
//! pushed.

use std::fmt::Write as _;

/// One metric family, written straight in the text format as samples are
/// pushed, its header first: the buffers are the family's part of the body,
/// sent as they are. Building `prometheus` crate objects first (a struct and
/// owned strings per label) took most of a scrape at 10,000 hosts and
/// several times the body's size in transient memory.
///
/// The text goes into chunks of [`CHUNK_BYTES`] rather than one string:
/// a string grown to a family's 10–20 MiB (at 50,000 hosts) doubles its
/// way there, copying everything written at each step and holding up to
/// twice the text while it does, all of it in fresh pages of a mapping
/// the allocator unmaps after the scrape: page faults and TLB shootdowns
/// that stalled the threads answering agents on the same cores.
pub(super) struct Family {
    name: &'static str,
    /// Full chunks, in order, before `text`.
    done: Vec<String>,
    text: String,
    header_len: usize,
}

/// Largest size of a family's text chunks: large enough that a scrape
/// sends few parts, small enough for the allocator to keep in its arenas.
const CHUNK_BYTES: usize = 256 * 1024;
/// A chunk is closed once less than this is left in it: room for any
/// sample line without growing the chunk (a longer one only grows it).
const LINE_ROOM: usize = 2 * 1024;

impl Family {
    pub(super) fn gauge(name: &'static str, help: &'static str) -> Self {
        Self::new(name, help, "gauge")
    }

    pub(super) fn counter(name: &'static str, help: &'static str) -> Self {
        Self::new(name, help, "counter")
    }

    pub(super) fn new(name: &'static str, help: &'static str, kind: &'static str) -> Self {
        let mut text = String::with_capacity(name.len() * 2 + help.len() + 32);
        text.push_str("# HELP ");
        text.push_str(name);
        text.push(' ');
        escape_into(&mut text, help, false);
        text.push_str("\n# TYPE ");
        text.push_str(name);
        text.push(' ');
        text.push_str(kind);
        text.push('\n');
        Self {
            name,
            done: Vec::new(),
            header_len: text.len(),
            text,
        }
    }

    pub(super) fn push(&mut self, labels: &[(&str, &str)], value: f64) {
        if self.text.capacity() - self.text.len() < LINE_ROOM {
            // Doubling up to the chunk size keeps a family of a few series
            // small, and copies nothing.
            let next = (self.text.capacity() * 2).clamp(8 * LINE_ROOM, CHUNK_BYTES);
            let full = std::mem::replace(&mut self.text, String::with_capacity(next));
            self.done.push(full);
        }
        let out = &mut self.text;
        out.push_str(self.name);
        for (i, (k, v)) in labels.iter().enumerate() {
            out.push(if i == 0 { '{' } else { ',' });
            out.push_str(k);
            out.push_str("=\"");
            escape_into(out, v, true);
            out.push('"');
        }
        if !labels.is_empty() {
            out.push('}');
        }
        out.push(' ');
        write_value(out, value);
        out.push('\n');
    }

    pub(super) fn push_opt<T: Into<f64>>(&mut self, labels: &[(&str, &str)], value: Option<T>) {
        if let Some(v) = value {
            self.push(labels, v.into());
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.done.is_empty() && self.text.len() == self.header_len
    }

    /// The family's text, as consecutive parts of the body.
    pub(super) fn into_parts(self) -> impl Iterator<Item = String> {
        self.done.into_iter().chain(std::iter::once(self.text))
    }
}

/// The text format's escapes: backslash and newline everywhere, the double
/// quote inside label values.
fn escape_into(out: &mut String, v: &str, in_label: bool) {
    if !v.contains(['\\', '\n', '"']) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if in_label => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// Go's spelling of the special values, Rust's shortest round-trip digits
/// otherwise (integers without a fraction, as the text format's own
/// encoders write them).
fn write_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        write!(out, "{v}").expect("writing into a String cannot fail");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_escape_label_values_and_spell_special_values_as_prometheus_does() {
        let mut f = Family::gauge("x_ratio", "A \\ help\nline \"quoted\".");
        f.push(&[], 1.0);
        f.push(&[("site", "a\"b\\c\nd"), ("k", "v")], 0.25);
        f.push(&[("v", "inf")], f64::INFINITY);
        f.push(&[("v", "-inf")], f64::NEG_INFINITY);
        f.push(&[("v", "nan")], f64::NAN);
        f.push(&[("v", "big")], 12_345_678_901.0);
        f.push(&[("v", "small")], 1e-7);
        assert_eq!(
            f.into_parts().collect::<String>(),
            "# HELP x_ratio A \\\\ help\\nline \"quoted\".\n\
             # TYPE x_ratio gauge\n\
             x_ratio 1\n\
             x_ratio{site=\"a\\\"b\\\\c\\nd\",k=\"v\"} 0.25\n\
             x_ratio{v=\"inf\"} +Inf\n\
             x_ratio{v=\"-inf\"} -Inf\n\
             x_ratio{v=\"nan\"} NaN\n\
             x_ratio{v=\"big\"} 12345678901\n\
             x_ratio{v=\"small\"} 0.0000001\n"
        );
    }

    #[test]
    fn a_family_larger_than_a_chunk_is_sent_in_chunks_that_join_into_its_text() {
        let mut f = Family::gauge("campanile_x", "X.");
        let mut want = String::from("# HELP campanile_x X.\n# TYPE campanile_x gauge\n");
        for i in 0..20_000 {
            let host = format!("pc-{i:05}");
            f.push(&[("host", &host), ("site", "site-a")], f64::from(i));
            want.push_str(&format!(
                "campanile_x{{host=\"{host}\",site=\"site-a\"}} {i}\n"
            ));
        }
        assert!(!f.is_empty());
        let parts: Vec<String> = f.into_parts().collect();
        assert!(parts.len() > 2, "{} parts", parts.len());
        for p in &parts {
            assert!(p.ends_with('\n'), "a part ends mid-line");
            assert!(
                p.capacity() <= CHUNK_BYTES,
                "a chunk grew: {}",
                p.capacity()
            );
        }
        assert_eq!(parts.concat(), want);
    }
}
