//! The line list shared by the session level and each media section, with the
//! attribute operations both levels offer (RFC 8866 §5.13: attributes appear at either
//! level with the same syntax).
//!
//! Every operation touches only the lines it names: a rewrite replaces one line's text
//! and keeps its terminator; an insertion gives the new line the description's line
//! ending; a removal drops whole lines.

use crate::attribute::{Attribute, Direction};
use crate::connection::{self, Connection};
use crate::error::{RewriteError, ValueError};
use crate::line::{check_attribute_name, check_field, check_text, Line, LineEnding};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Section {
    pub(crate) lines: Vec<Line>,
    /// The terminator given to inserted lines: the body's first line ending.
    pub(crate) style: LineEnding,
}

impl Section {
    pub(crate) fn new(style: LineEnding) -> Self {
        Self {
            lines: Vec::new(),
            style,
        }
    }

    pub(crate) fn first_of(&self, kind: char) -> Option<(usize, &Line)> {
        self.lines
            .iter()
            .enumerate()
            .find(|(_, l)| l.kind() == kind)
    }

    pub(crate) fn attributes(&self) -> impl Iterator<Item = Attribute<'_>> {
        self.lines.iter().filter_map(Attribute::from_line)
    }

    pub(crate) fn attribute(&self, name: &str) -> Option<Attribute<'_>> {
        self.attributes().find(|a| a.is(name))
    }

    pub(crate) fn attribute_value(&self, name: &str) -> Option<&str> {
        self.attribute(name).and_then(|a| a.value())
    }

    pub(crate) fn has_attribute(&self, name: &str) -> bool {
        self.attribute(name).is_some()
    }

    fn attribute_index(&self, pred: impl Fn(&Attribute<'_>) -> bool) -> Option<usize> {
        self.lines
            .iter()
            .position(|l| Attribute::from_line(l).is_some_and(|a| pred(&a)))
    }

    /// Inserts `text` (a whole `x=value` line) before `index`. When the line before it
    /// was the body's unterminated last line, that line gets a terminator so the two
    /// do not run together.
    pub(crate) fn insert_line(&mut self, index: usize, text: Vec<u8>) {
        let index = index.min(self.lines.len());
        if let Some(prev) = index.checked_sub(1).and_then(|i| self.lines.get_mut(i)) {
            if prev.ending() == LineEnding::None {
                prev.set_ending(self.style);
            }
        }
        self.lines.insert(index, Line::new(text, self.style));
    }

    pub(crate) fn push_line(&mut self, text: Vec<u8>) {
        self.insert_line(self.lines.len(), text);
    }

    pub(crate) fn add_attribute(
        &mut self,
        name: &str,
        value: Option<&str>,
    ) -> Result<(), RewriteError> {
        let text = attribute_text(name, value)?;
        self.push_line(text);
        Ok(())
    }

    /// Replaces the first attribute called `name` and removes any later ones; appends
    /// the attribute when there is none.
    pub(crate) fn set_attribute(
        &mut self,
        name: &str,
        value: Option<&str>,
    ) -> Result<(), RewriteError> {
        let text = attribute_text(name, value)?;
        self.replace_first_matching(text, |a| a.is(name));
        Ok(())
    }

    pub(crate) fn remove_attributes(&mut self, name: &str) -> usize {
        self.remove_attributes_where(|a| a.is(name))
    }

    pub(crate) fn remove_attributes_where(
        &mut self,
        pred: impl Fn(&Attribute<'_>) -> bool,
    ) -> usize {
        let before = self.lines.len();
        self.lines
            .retain(|l| !Attribute::from_line(l).is_some_and(|a| pred(&a)));
        before - self.lines.len()
    }

    pub(crate) fn direction(&self) -> Option<Direction> {
        self.attributes()
            .find_map(|a| Direction::from_name(a.name()))
    }

    /// Writes `a=<direction>` in place of the first direction attribute and removes the
    /// others (more than one is contradictory); appends one when there is none.
    pub(crate) fn set_direction(&mut self, direction: Direction) {
        let text = format!("a={direction}").into_bytes();
        self.replace_first_matching(text, |a| Direction::from_name(a.name()).is_some());
    }

    fn replace_first_matching(&mut self, text: Vec<u8>, pred: impl Fn(&Attribute<'_>) -> bool) {
        match self.attribute_index(&pred) {
            Some(first) => {
                let mut index = 0;
                self.lines.retain(|l| {
                    let keep = index <= first || !Attribute::from_line(l).is_some_and(|a| pred(&a));
                    index += 1;
                    keep
                });
                if let Some(line) = self.lines.get_mut(first) {
                    line.set_text(text);
                }
            }
            None => self.push_line(text),
        }
    }

    pub(crate) fn connection(&self) -> Option<Connection<'_>> {
        let (_, line) = self.first_of('c')?;
        Connection::parse(line.value_str()?).ok()
    }

    /// Rewrites the addrtype and bare address of the first `c=` line (keeping any
    /// `/ttl/count`), or, when there is none, inserts `c=IN <addrtype> <address>` before
    /// the first line (after the leading one) whose type is in `insert_before`, which is
    /// where RFC 8866 §5 orders it.
    pub(crate) fn set_connection_address(
        &mut self,
        addrtype: &str,
        address: &str,
        insert_before: &[char],
    ) -> Result<(), RewriteError> {
        check_field("addrtype", addrtype)?;
        check_field("address", address)?;
        let Some((index, line)) = self.first_of('c') else {
            let index = self
                .lines
                .iter()
                .skip(1)
                .position(|l| insert_before.contains(&l.kind()))
                .map_or(self.lines.len(), |i| i + 1);
            self.insert_line(index, format!("c=IN {addrtype} {address}").into_bytes());
            return Ok(());
        };
        let value = line
            .value_str()
            .ok_or(RewriteError::MalformedConnection(ValueError::new(
                0,
                "not valid UTF-8",
            )))?;
        let (_, spans) =
            connection::parse_with_spans(value).map_err(RewriteError::MalformedConnection)?;
        let mut new_line = line.clone();
        // The address lies after the addrtype: splice it first so the addrtype span
        // is still valid.
        new_line.splice_value(spans.address, address);
        new_line.splice_value(spans.addrtype, addrtype);
        if new_line
            .value_str()
            .map(Connection::parse)
            .is_none_or(|r| r.is_err())
        {
            return Err(RewriteError::InvalidValue {
                field: "address",
                value: address.to_owned(),
                reason: "the rewritten c= line would be invalid (an IP6 address keeps no TTL)",
            });
        }
        if let Some(slot) = self.lines.get_mut(index) {
            *slot = new_line;
        }
        Ok(())
    }

    pub(crate) fn write_to(&self, out: &mut Vec<u8>) {
        for line in &self.lines {
            line.write_to(out);
        }
    }

    pub(crate) fn encoded_len(&self) -> usize {
        self.lines
            .iter()
            .fold(0usize, |n, l| n.saturating_add(l.encoded_len()))
    }
}

/// Builds `a=<name>[:<value>]` after checking both parts cannot break the line.
fn attribute_text(name: &str, value: Option<&str>) -> Result<Vec<u8>, RewriteError> {
    check_attribute_name(name)?;
    let mut text = format!("a={name}");
    if let Some(value) = value {
        check_text("attribute value", value)?;
        text.push(':');
        text.push_str(value);
    }
    Ok(text.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(lines: &[&str], last: LineEnding) -> Section {
        let mut s = Section::new(LineEnding::CrLf);
        for (i, l) in lines.iter().enumerate() {
            let ending = if i + 1 == lines.len() {
                last
            } else {
                LineEnding::CrLf
            };
            s.lines.push(Line::new(l.as_bytes().to_vec(), ending));
        }
        s
    }

    fn text(s: &Section) -> String {
        let mut out = Vec::new();
        s.write_to(&mut out);
        assert_eq!(out.len(), s.encoded_len());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn set_attribute_replaces_first_and_drops_duplicates() {
        let mut s = section(
            &[
                "m=video 0 RTP/AVP 96",
                "a=control:a",
                "a=x:1",
                "a=CONTROL:b",
            ],
            LineEnding::CrLf,
        );
        s.set_attribute("control", Some("trackID=1")).unwrap();
        assert_eq!(
            text(&s),
            "m=video 0 RTP/AVP 96\r\na=control:trackID=1\r\na=x:1\r\n"
        );
    }

    #[test]
    fn append_after_unterminated_last_line_terminates_it() {
        let mut s = section(&["m=audio 0 RTP/AVP 0", "a=x"], LineEnding::None);
        s.add_attribute("rtcp-mux", None).unwrap();
        assert_eq!(text(&s), "m=audio 0 RTP/AVP 0\r\na=x\r\na=rtcp-mux\r\n");
    }

    #[test]
    fn bad_names_and_values_are_refused_without_change() {
        let mut s = section(&["m=audio 0 RTP/AVP 0"], LineEnding::CrLf);
        assert!(s.add_attribute("a b", None).is_err());
        assert!(s.set_attribute("x", Some("1\r\na=evil")).is_err());
        assert_eq!(text(&s), "m=audio 0 RTP/AVP 0\r\n");
    }

    #[test]
    fn direction_set_replaces_first_removes_rest() {
        let mut s = section(
            &[
                "m=audio 0 RTP/AVP 0",
                "a=sendonly",
                "a=ptime:20",
                "a=inactive",
            ],
            LineEnding::Lf,
        );
        assert_eq!(s.direction(), Some(Direction::SendOnly));
        s.set_direction(Direction::RecvOnly);
        assert_eq!(
            text(&s),
            "m=audio 0 RTP/AVP 0\r\na=recvonly\r\na=ptime:20\r\n"
        );
        assert_eq!(s.remove_attributes("PTIME"), 1);
        assert_eq!(s.remove_attributes("ptime"), 0);
    }
}
